#!/bin/sh
# /init of the csd QEMU test guest (busybox).  Reports the result to the host
# through isa-debug-exit (I/O port 0xf4): byte 0 = pass, 1 = fail.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp

fails=0
passes=0
ok() { passes=$((passes + 1)); echo "GUEST PASS: $*"; }
bad() { fails=$((fails + 1)); echo "GUEST FAIL: $*"; }

report() {
	echo "GUEST RESULT: $passes passed, $fails failed"
	if [ "$fails" -eq 0 ]; then v='\000'; else v='\001'; fi
	printf "$v" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	poweroff -f
}

if insmod /csd.ko; then ok "insmod"; else bad "insmod"; report; fi
i=0
while [ ! -c /dev/csd0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -c /dev/csd0 ]; then ok "/dev/csd0"; else bad "/dev/csd0"; dmesg | tail -20; report; fi

echo "sysfs: model=$(cat /sys/class/csd/csd0/model)" \
	"fw=$(cat /sys/class/csd/csd0/firmware_rev)" \
	"if=$(cat /sys/class/csd/csd0/interface_version)"
grep -q "CSD-SIM" /sys/class/csd/csd0/model && ok "sysfs model" || bad "sysfs model"

nvme id-ctrl /dev/csd0 > /tmp/idctrl.txt 2>&1
cat /tmp/idctrl.txt | head -8
grep -q "^mn .*CSD-SIM attention CSD" /tmp/idctrl.txt && ok "nvme id-ctrl model" ||
	bad "nvme id-ctrl model"

# CTX_CREATE (0x81): 64-byte struct csd_ctx_desc, NDT = 16 dwords
nvme io-passthru /dev/csd0 --opcode=0x81 --namespace-id=1 --data-len=64 \
	--write --cdw10=16 --input-file=/ctx.bin > /tmp/create.txt 2>&1
cat /tmp/create.txt
ctx=$(sed -n 's/.*NVMe command result:\([0-9a-fA-F]*\).*/\1/p' /tmp/create.txt)
if [ -n "$ctx" ] && [ "$((0x$ctx))" -ge 1 ]; then
	ok "io-passthru CTX_CREATE -> context $((0x$ctx))"
	# CTX_QUERY (0x8a): struct csd_ctx_info + one seq entry = 72 bytes
	nvme io-passthru /dev/csd0 --opcode=0x8a --namespace-id=1 \
		--data-len=72 --read --cdw10=18 --cdw12=$((0x$ctx)) \
		> /tmp/query.txt 2>&1
	cat /tmp/query.txt | head -8
	grep -q "NVMe command result" /tmp/query.txt && ok "io-passthru CTX_QUERY" ||
		bad "io-passthru CTX_QUERY"
	nvme io-passthru /dev/csd0 --opcode=0x84 --namespace-id=1 \
		--cdw12=$((0x$ctx)) > /tmp/destroy.txt 2>&1
	grep -q "NVMe command result" /tmp/destroy.txt &&
		ok "io-passthru CTX_DESTROY" || bad "io-passthru CTX_DESTROY"
else
	bad "io-passthru CTX_CREATE"
fi

# A foreign context id is rejected by the device (CTX_INVALID), not a crash.
nvme io-passthru /dev/csd0 --opcode=0x84 --namespace-id=1 --cdw12=4242 \
	> /tmp/bad.txt 2>&1
grep -qi "status" /tmp/bad.txt && ok "CTX_DESTROY of unknown context fails" ||
	{ cat /tmp/bad.txt; bad "CTX_DESTROY of unknown context"; }

cat /sys/class/csd/csd0/stats
if rmmod csd; then ok "rmmod"; else bad "rmmod"; fi

dmesg > /tmp/dmesg.txt
if grep -E 'BUG|WARNING|Oops|general protection|refcount' /tmp/dmesg.txt; then
	bad "dmesg clean"
else
	ok "dmesg clean"
fi
grep -i csd /tmp/dmesg.txt
report
