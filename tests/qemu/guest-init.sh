#!/bin/sh
# /init of the csd QEMU test guest (busybox), built by tests/qemu/run.sh.
# Every check prints "GUEST PASS: ..." or "GUEST FAIL: ..."; the conformance
# suite's CUnit counts are folded in; the last line is
# "GUEST RESULT: N passed, N failed, N skipped".  The result also goes to
# the host through isa-debug-exit (I/O port 0xf4): byte 0 = pass, 1 = fail.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp
chmod 1777 /tmp

fails=0
passes=0
skips=0
ok() { passes=$((passes + 1)); echo "GUEST PASS: $*"; }
bad() { fails=$((fails + 1)); echo "GUEST FAIL: $*"; }

report() {
	echo "GUEST RESULT: $passes passed, $fails failed, $skips skipped"
	if [ "$fails" -eq 0 ]; then v='\000'; else v='\001'; fi
	printf "$v" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	poweroff -f
}

# Run a test program (output to the console and $1.log), then fold its
# GUEST PASS/FAIL lines into the counts.  $1 = log name, $2 = timeout (s).
run_prog() {
	name=$1
	tmo=$2
	shift 2
	timeout "$tmo" "$@" > "/tmp/$name.log" 2>&1
	rc=$?
	cat "/tmp/$name.log"
	p=$(grep -c '^GUEST PASS' "/tmp/$name.log")
	f=$(grep -c '^GUEST FAIL' "/tmp/$name.log")
	passes=$((passes + p))
	fails=$((fails + f))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		bad "$name exited with status $rc"
	fi
}

# The conformance suite through libcsd's kernel transport; its CUnit counts
# are added to the totals.  $1 = label, rest = command prefix (runas ...).
run_conformance() {
	label=$1
	shift
	CSD_DEVICE=${CSD_DEVICE_SPEC:-/dev/csd0} timeout 300 "$@" \
		/bin/csd-conformance > "/tmp/conf.log" 2>&1
	rc=$?
	grep -E 'FAILED|SKIP|Assertion|CSDTEST|cannot open|^ +[0-9]+\. ' \
		/tmp/conf.log
	line=$(grep '^CSDTEST' /tmp/conf.log | tail -1)
	p=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1/p')
	f=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\2/p')
	s=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\3/p')
	if [ -z "$p" ]; then
		tail -20 /tmp/conf.log
		bad "conformance ($label): no result line (exit $rc)"
		return
	fi
	# the suite's tests count one each; this line is not counted again
	passes=$((passes + p))
	fails=$((fails + f))
	skips=$((skips + s))
	if [ "$f" -eq 0 ] && [ "$rc" -eq 0 ]; then
		echo "GUEST INFO: conformance ($label): $p passed, $f failed, $s skipped"
	else
		[ "$f" -eq 0 ] && bad "conformance ($label): exit status $rc"
		echo "GUEST INFO: conformance ($label): $p passed, $f failed, $s skipped (exit $rc)"
	fi
}

insmod_csd() {
	if insmod /csd.ko "$@"; then ok "insmod $*"; else bad "insmod $*"; report; fi
	i=0
	while [ ! -c /dev/csd0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	if [ -c /dev/csd0 ]; then ok "/dev/csd0"; else bad "/dev/csd0"; dmesg | tail -20; report; fi
}

# busybox has no udev: apply the shipped rule (kmod/*.rules, copied to
# /etc/csd.rules) by hand - its MODE and GROUP for every /dev/csdN.
UNPRIV_UID=1000
UNPRIV_GID=1000
apply_udev_rule() {
	if [ ! -f /etc/csd.rules ]; then
		bad "udev rule shipped (kmod/*.rules): none, node left as created"
		return
	fi
	grep -v '^[[:space:]]*#' /etc/csd.rules | grep csd > /tmp/rule
	cat /tmp/rule
	mode=$(sed -n 's/.*MODE[:]*="\([0-7]*\)".*/\1/p' /tmp/rule | head -1)
	group=$(sed -n 's/.*GROUP[:]*="\([^"]*\)".*/\1/p' /tmp/rule | head -1)
	for n in /dev/csd[0-9]*; do
		[ -n "$group" ] && chgrp "$group" "$n"
		[ -n "$mode" ] && chmod "$mode" "$n"
	done
	ls -l /dev/csd*
	if [ -n "$group" ]; then
		gid=$(sed -n "s/^$group:x:\([0-9]*\):.*/\1/p" /etc/group)
		# the unprivileged user is a member of the rule's group
		[ -n "$gid" ] && UNPRIV_GID=$gid
	fi
	ok "udev rule applied (MODE=${mode:-unset} GROUP=${group:-unset})"
}

insmod_csd
apply_udev_rule

echo "sysfs: model=$(cat /sys/class/csd/csd0/model)" \
	"fw=$(cat /sys/class/csd/csd0/firmware_rev)" \
	"if=$(cat /sys/class/csd/csd0/interface_version)"
grep -q "CSD-SIM" /sys/class/csd/csd0/model && ok "sysfs model" || bad "sysfs model"

# ---- nvme-cli -------------------------------------------------------------
nvme id-ctrl /dev/csd0 > /tmp/idctrl.txt 2>&1
head -8 /tmp/idctrl.txt
grep -q "^mn .*CSD-SIM attention CSD" /tmp/idctrl.txt && ok "nvme id-ctrl model" ||
	bad "nvme id-ctrl model"

# CTX_CREATE (0x81): 64-byte struct csd_ctx_desc, NDT = 16 dwords
nvme io-passthru /dev/csd0 --opcode=0x81 --namespace-id=1 --data-len=64 \
	--write --cdw10=16 --input-file=/ctx.bin > /tmp/create.txt 2>&1
cat /tmp/create.txt
ctx=$(sed -n 's/.* is Success and result: 0x\([0-9a-fA-F]*\).*/\1/p' /tmp/create.txt)
if [ -n "$ctx" ] && [ "$((0x$ctx))" -ge 1 ]; then
	ok "nvme io-passthru CTX_CREATE -> context $((0x$ctx))"
	# Contexts belong to the open file: nvme closed /dev/csd0, so the
	# driver destroyed it and CTX_QUERY (0x8a, 64 + 8 bytes) must answer
	# CTX_INVALID (SCT 7h SC 01h, DNR: 0x4701).
	nvme io-passthru /dev/csd0 --opcode=0x8a --namespace-id=1 \
		--data-len=72 --read --cdw10=18 --cdw12=$((0x$ctx)) \
		> /tmp/query.txt 2>&1
	head -3 /tmp/query.txt
	grep -q "0x4701" /tmp/query.txt &&
		ok "nvme io-passthru CTX_QUERY: context released with its file" ||
		bad "nvme io-passthru CTX_QUERY after release"
else
	bad "nvme io-passthru CTX_CREATE"
fi

# Get Log Page 0xC1 (contexts), 64 bytes: count must be 0 again.
nvme admin-passthru /dev/csd0 --opcode=0x02 --data-len=64 --read \
	--cdw10=$(((15 << 16) | 0xc1)) --raw-binary > /tmp/log.bin 2>/tmp/log.err
n=$(od -An -tu4 -N4 /tmp/log.bin | tr -d ' ')
[ "$n" = "0" ] && ok "nvme admin-passthru log 0xC1: 0 contexts" ||
	{ cat /tmp/log.err; bad "nvme admin-passthru log 0xC1 (count '$n')"; }

# Validation: reserved/metadata fields are refused before the device.
nvme io-passthru /dev/csd0 --opcode=0x8a --namespace-id=1 --data-len=72 \
	--read --cdw10=18 --metadata-len=8 > /tmp/inval.txt 2>&1
head -3 /tmp/inval.txt
grep -q "is Success" /tmp/inval.txt && bad "nvme io-passthru: metadata refused" ||
	ok "nvme io-passthru: metadata refused"

# ---- libcsd kernel transport: the conformance suite -----------------------
run_conformance "root, io_uring"
CSD_DEVICE_SPEC=/dev/csd0,ioctl run_conformance "root, ioctl"
run_conformance "uid $UNPRIV_UID gid $UNPRIV_GID, io_uring" \
	runas $UNPRIV_UID $UNPRIV_GID

# which path libcsd took (CSD_DEBUG=1 prints it at open)
CSD_DEBUG=1 CSD_DEVICE=/dev/csd0 csd-conformance admin > /tmp/dbg.log 2>&1
grep 'kernel: /dev/csd0 nsid' /tmp/dbg.log
grep -q 'kernel: /dev/csd0 nsid 1, admin io_uring, I/O io_uring' /tmp/dbg.log &&
	ok "libcsd /dev/csd0: io_uring uring_cmd for admin and I/O" ||
	bad "libcsd /dev/csd0: io_uring uring_cmd for admin and I/O"
CSD_DEBUG=1 CSD_DEVICE=/dev/csd0,ioctl csd-conformance admin > /tmp/dbg.log 2>&1
grep 'kernel: /dev/csd0 nsid' /tmp/dbg.log
grep -q 'kernel: /dev/csd0 nsid 1, admin ioctl, I/O ioctl' /tmp/dbg.log &&
	ok "libcsd /dev/csd0,ioctl: ioctls for admin and I/O" ||
	bad "libcsd /dev/csd0,ioctl: ioctls for admin and I/O"

# ---- isolation, fuzzer ------------------------------------------------------
run_prog isolation 120 isolation /dev/csd0
run_prog isolation-user 120 runas $UNPRIV_UID $UNPRIV_GID isolation /dev/csd0
run_prog ioctl_fuzz 300 ioctl_fuzz /dev/csd0 "$(cat /etc/fuzz_iters)" $(cat /etc/fuzz_seed)
run_prog ioctl_fuzz-user 300 runas $UNPRIV_UID $UNPRIV_GID ioctl_fuzz \
	/dev/csd0 2000
grep -q live /sys/class/csd/csd0/state 2>/dev/null && ok "device live after the fuzzer" ||
	bad "device live after the fuzzer ($(cat /sys/class/csd/csd0/state))"
cat /sys/class/csd/csd0/stats

# ---- H4a's driver checks ----------------------------------------------------
if [ -f /guest-kmod.sh ]; then
	run_prog guest-kmod 300 sh /guest-kmod.sh
	if [ ! -c /dev/csd0 ]; then
		insmod_csd
		apply_udev_rule
	fi
fi

# ---- daemon killed mid-stream (last: the device cannot come back) --------
echo "GUEST INFO: daemon-kill test (the host kills csd-fw on CSD-KILL-READY)"
timeout 300 killtest /dev/csd0 2>&1 | tee /tmp/kill.log
p=$(grep -c '^GUEST PASS' /tmp/kill.log)
f=$(grep -c '^GUEST FAIL' /tmp/kill.log)
passes=$((passes + p))
fails=$((fails + f))
[ "$p" -gt 0 ] || bad "killtest produced no results"
cat /sys/class/csd/csd0/state 2>/dev/null
# the files are closed now: the module must go
if rmmod csd; then ok "rmmod after the daemon died"; else bad "rmmod after the daemon died"; fi

dmesg > /tmp/dmesg.txt
if grep -E 'BUG|WARNING|Oops|general protection|refcount' /tmp/dmesg.txt; then
	bad "dmesg clean"
else
	ok "dmesg clean (no BUG/WARNING/Oops/general protection/refcount)"
fi
grep -i csd /tmp/dmesg.txt | tail -40
report
