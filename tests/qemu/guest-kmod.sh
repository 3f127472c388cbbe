#!/bin/sh
# tests/qemu/guest-kmod.sh - csd.ko driver checks, run inside the QEMU guest
# by guest-init.sh (as root, csd.ko loaded, /dev/csd0 present).  Prints
# "GUEST PASS: ..." / "GUEST FAIL: ..." lines and exits 1 if any failed.
# Leaves csd.ko loaded and /dev/csd0 present.
#
# Needs in the initramfs: /bin/uring_test (tests/qemu/uring_test.c, static),
# /csd.ko, busybox.
SYS=/sys/class/csd/csd0
KO=${CSD_KO:-/csd.ko}
fails=0
ok() { echo "GUEST PASS: kmod $*"; }
bad() { fails=$((fails + 1)); echo "GUEST FAIL: kmod $*"; }
stat_of() { sed -n "s/^$1 //p" $SYS/stats; }
wait_dev() {
	i=0
	while [ ! -c /dev/csd0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	[ -c /dev/csd0 ]
}

# module parameters (their descriptions are checked on the host with
# modinfo by scripts/dkms-check.sh; busybox modinfo needs /lib/modules)
for p in io_timeout admin_timeout guest_dma; do
	[ -r /sys/module/csd/parameters/$p ] &&
		ok "parameter $p = $(cat /sys/module/csd/parameters/$p)" ||
		bad "parameter $p missing"
done

# sysfs
for a in model serial firmware_rev interface_version state stats \
	contexts_in_use data_path queues max_xfer; do
	[ -r $SYS/$a ] || bad "sysfs $a missing"
done
echo "sysfs: if=$(cat $SYS/interface_version) path=$(cat $SYS/data_path)" \
	"queues=$(cat $SYS/queues) max_xfer=$(cat $SYS/max_xfer)" \
	"contexts=$(cat $SYS/contexts_in_use) state=$(cat $SYS/state)"
[ "$(cat $SYS/state)" = live ] && ok "sysfs state live" || bad "sysfs state"
[ "$(cat $SYS/contexts_in_use)" = 0 ] && ok "sysfs contexts_in_use 0" ||
	bad "sysfs contexts_in_use $(cat $SYS/contexts_in_use) (want 0)"
grep -q '^[1-9][0-9]*\.[0-9]*$' $SYS/interface_version &&
	ok "sysfs interface_version" || bad "sysfs interface_version"

# device node mode from the udev rule (applied by guest-init.sh)
m=$(stat -c %a /dev/csd0 2>/dev/null)
echo "/dev/csd0 mode $m"

if [ ! -x /bin/uring_test ]; then
	bad "uring_test missing from the initramfs"
	exit 1
fi

# io_uring passthrough on the fast path (pinned pages, guest-RAM PRPs)
if [ "$(cat $SYS/data_path)" = guest-ram ]; then
	p0=$(stat_of pinned)
	/bin/uring_test /dev/csd0 || true
	p1=$(stat_of pinned)
	[ "$p1" -gt "$p0" ] && ok "data path: $((p1 - p0)) commands used pinned pages" ||
		bad "data path: no pinned-page commands"
else
	bad "device has no guest-RAM PRPs (csd-fw --dma-file missing?)"
	/bin/uring_test /dev/csd0 || true
fi
[ "$(cat $SYS/contexts_in_use)" = 0 ] &&
	ok "contexts released with their file (contexts_in_use 0)" ||
	bad "contexts_in_use $(cat $SYS/contexts_in_use) after close"

# the same checks through the bounce path (guest_dma=N at run time)
echo N > /sys/module/csd/parameters/guest_dma
b0=$(stat_of bounced)
/bin/uring_test /dev/csd0 | sed 's/^GUEST \(PASS\|FAIL\): uring /GUEST \1: uring bounce: /'
b1=$(stat_of bounced)
echo Y > /sys/module/csd/parameters/guest_dma
[ "$b1" -gt "$b0" ] && ok "bounce path: $((b1 - b0)) commands bounced" ||
	bad "bounce path not used"
cat $SYS/stats

# An open file across removal: rmmod is refused while a file is open (the
# file pins the module); unbinding the device works, the open file then
# gets ENODEV, and after it is closed rmmod and insmod work.
bdf=$(basename "$(readlink $SYS/device)")
rm -rf /tmp/hold && mkdir -p /tmp/hold
/bin/uring_test hold /dev/csd0 /tmp/hold > /tmp/hold.log 2>&1 &
hpid=$!
i=0
while [ ! -e /tmp/hold/ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if rmmod csd 2>/dev/null; then
	bad "rmmod with a file open succeeded (module not pinned)"
	insmod "$KO"
else
	ok "rmmod with a file open refused (EBUSY), no hang"
fi
if echo "$bdf" > /sys/bus/pci/drivers/csd/unbind; then
	[ ! -e /dev/csd0 ] && ok "unbind with a file open" ||
		bad "unbind: /dev/csd0 still present"
else
	bad "unbind with a file open"
fi
touch /tmp/hold/go
wait $hpid
cat /tmp/hold.log
fails=$((fails + $(grep -c '^GUEST FAIL' /tmp/hold.log)))
if rmmod csd; then ok "rmmod after the file closed"; else bad "rmmod"; fi
if insmod "$KO" && wait_dev; then ok "insmod again: /dev/csd0"; else bad "insmod again"; fi
nvme id-ctrl /dev/csd0 2>&1 | grep -q "^mn .*CSD-SIM" &&
	ok "nvme id-ctrl after reload" || bad "nvme id-ctrl after reload"

dmesg | grep -E 'csd|ivshmem' | tail -20
[ $fails -eq 0 ]
