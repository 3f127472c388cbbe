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
ctx=$(sed -n 's/.* is Success and result: 0x\([0-9a-fA-F]*\).*/\1/p' /tmp/create.txt)
if [ -n "$ctx" ] && [ "$((0x$ctx))" -ge 1 ]; then
	ok "io-passthru CTX_CREATE -> context $((0x$ctx))"
	# Contexts belong to the open file: nvme closed /dev/csd0, so the
	# driver destroyed it and CTX_QUERY (0x8a, 64 + 8 bytes) must answer
	# CTX_INVALID (SCT 7h SC 01h, DNR: 0x4701).
	nvme io-passthru /dev/csd0 --opcode=0x8a --namespace-id=1 \
		--data-len=72 --read --cdw10=18 --cdw12=$((0x$ctx)) \
		> /tmp/query.txt 2>&1
	cat /tmp/query.txt | head -3
	grep -q "0x4701" /tmp/query.txt &&
		ok "io-passthru CTX_QUERY: context released with its file" ||
		bad "io-passthru CTX_QUERY after release"
else
	bad "io-passthru CTX_CREATE"
fi

# Get Log Page 0xC1 (contexts), 64 bytes: count must be 0 again.
nvme admin-passthru /dev/csd0 --opcode=0x02 --data-len=64 --read \
	--cdw10=$(((15 << 16) | 0xc1)) --raw-binary > /tmp/log.bin 2>/tmp/log.err
n=$(od -An -tu4 -N4 /tmp/log.bin | tr -d ' ')
[ "$n" = "0" ] && ok "admin-passthru log 0xC1: 0 contexts" ||
	{ cat /tmp/log.err; bad "admin-passthru log 0xC1 (count '$n')"; }

# Validation: reserved/metadata fields are refused before the device.
nvme io-passthru /dev/csd0 --opcode=0x8a --namespace-id=1 --data-len=72 \
	--read --cdw10=18 --metadata-len=8 > /tmp/inval.txt 2>&1
cat /tmp/inval.txt | head -3
grep -q "is Success" /tmp/inval.txt && bad "metadata refused" ||
	ok "metadata refused"

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
