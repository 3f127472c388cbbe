#!/bin/sh
# tests/qemu/guest-kmod.sh - csd.ko driver checks, run inside the QEMU guest
# by guest-init.sh (as root, csd.ko loaded, /dev/csd0 present).  Prints
# "GUEST PASS: ..." / "GUEST FAIL: ..." lines and exits 1 if any failed.
# Leaves csd.ko loaded (default parameters) and /dev/csd0 present.
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

# Controller reset (csd-fw runs with read_ns=2000000000, tests/qemu/run.sh:
# a KV_READ is modeled at >= 2 s, which only takes that long while pacing
# is on; uring_test switches pacing on and off).  io_timeout=1: the read
# times out, the watchdog resets the controller, the device stays live.
if rmmod csd && insmod "$KO" io_timeout=1 && wait_dev; then
	ok "reload with io_timeout=1"
else
	bad "reload with io_timeout=1"
	wait_dev || insmod "$KO"
fi
chmod 0666 /dev/csd0	# as the shipped udev rule (uid 1000 opens it below)
[ "$(cat /sys/module/csd/parameters/io_timeout)" = 1 ] &&
	ok "io_timeout = 1" || bad "io_timeout = $(cat /sys/module/csd/parameters/io_timeout)"
/bin/uring_test reset /dev/csd0 || fails=$((fails + 1))
r0=$(stat_of resets)
if nvme reset /dev/csd0; then
	[ "$(stat_of resets)" = $((r0 + 1)) ] && ok "nvme reset /dev/csd0 (root)" ||
		bad "nvme reset: resets $(stat_of resets), want $((r0 + 1))"
else
	bad "nvme reset /dev/csd0 (root) failed"
fi
[ "$(stat -c %a $SYS/reset_controller)" = 200 ] &&
	ok "sysfs reset_controller is write-only, root" ||
	bad "sysfs reset_controller mode $(stat -c %a $SYS/reset_controller)"
r0=$(stat_of resets)
if echo 1 > $SYS/reset_controller; then
	[ "$(stat_of resets)" = $((r0 + 1)) ] && ok "sysfs reset_controller" ||
		bad "sysfs reset_controller: resets $(stat_of resets), want $((r0 + 1))"
else
	bad "sysfs reset_controller write failed"
fi
runas 1000 1000 /bin/uring_test ioctl-reset /dev/csd0 || fails=$((fails + 1))
[ "$(stat_of resets)" = $((r0 + 1)) ] && ok "refused reset did not reset" ||
	bad "resets $(stat_of resets) after the refused reset"
[ "$(cat $SYS/state)" = live ] && ok "state live after the resets" ||
	bad "state $(cat $SYS/state) after the resets"
nvme id-ctrl /dev/csd0 2>&1 | grep -q "^mn .*CSD-SIM" &&
	ok "nvme id-ctrl after the resets" || bad "nvme id-ctrl after the resets"
# A reset racing removal ends in removal: a slow KV_READ in flight, an
# NVME_IOCTL_RESET waiting for it, and the device unbound meanwhile.
cat $SYS/stats
nvme set-feature /dev/csd0 -f 0xc0 -v 1 > /dev/null 2>&1 ||
	bad "nvme set-feature pacing on"
/bin/uring_test slow /dev/csd0 > /tmp/slow.log 2>&1 &
spid=$!
sleep 0.5
/bin/uring_test ioctl-reset /dev/csd0 any > /tmp/rr.log 2>&1 &
rpid=$!
sleep 0.2
if echo "$bdf" > /sys/bus/pci/drivers/csd/unbind; then
	ok "unbind during a controller reset"
else
	bad "unbind during a controller reset"
fi
wait $spid
wait $rpid
cat /tmp/slow.log /tmp/rr.log
[ ! -e $SYS ] && ok "device gone after the reset racing removal" ||
	bad "device still there after unbind"
if rmmod csd && insmod "$KO" io_timeout=1 && wait_dev; then
	ok "rebind after a reset racing removal"
else
	bad "rebind after a reset racing removal"
	wait_dev || insmod "$KO"
fi
# pacing off again (uring_test did it too), then the default io_timeout
nvme set-feature /dev/csd0 -f 0xc0 -v 0 > /dev/null 2>&1 ||
	bad "nvme set-feature pacing off"
nvme id-ctrl /dev/csd0 2>&1 | grep -q "^mn .*CSD-SIM" &&
	ok "nvme id-ctrl after the reset racing removal" ||
	bad "nvme id-ctrl after the reset racing removal"
if rmmod csd && insmod "$KO" && wait_dev; then
	ok "reload with the default io_timeout ($(cat /sys/module/csd/parameters/io_timeout))"
else
	bad "reload with the default io_timeout"
fi
dmesg | grep -E 'BUG|WARNING|Oops|general protection|refcount' &&
	bad "dmesg clean after the resets" ||
	ok "dmesg clean after the resets"

dmesg | grep -E 'csd|ivshmem' | tail -20
[ $fails -eq 0 ]
