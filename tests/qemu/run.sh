#!/bin/sh
# tests/qemu/run.sh - boot Debian's kernel under QEMU (TCG) with csd-fw serving
# an ivshmem-doorbell device, load csd.ko and exercise it with nvme-cli.
#
# Needs: linux-image-amd64 linux-headers-amd64 busybox-static nvme-cli
# qemu-system-x86 cpio (scripts/deps.sh --kmod) and a built csd-fw.
# Env: CSD_FW (csd-fw binary), KVER (kernel version; default: newest with
# both /boot/vmlinuz-<ver> and headers), QEMU_TIMEOUT (seconds, 600).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CSD_FW=${CSD_FW:-$ROOT/build/firmware-sim/csd-fw}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}

if [ -z "${KVER:-}" ]; then
	for h in $(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V); do
		v=${h#/usr/src/linux-headers-}
		[ -r "/boot/vmlinuz-$v" ] && KVER=$v
	done
fi
if [ -z "${KVER:-}" ]; then
	echo "run.sh: no kernel with headers (install linux-image-amd64 linux-headers-amd64)" >&2
	exit 1
fi
[ -x "$CSD_FW" ] || { echo "run.sh: csd-fw not found at $CSD_FW" >&2; exit 1; }
for t in qemu-system-x86_64 busybox nvme cpio; do
	command -v "$t" >/dev/null || { echo "run.sh: $t missing" >&2; exit 1; }
done

echo "run.sh: kernel $KVER"
make -s -C "/usr/src/linux-headers-$KVER" M="$ROOT" modules >/dev/null

WORK=$(mktemp -d /tmp/csd-qemu.XXXXXX)
SOCK=$WORK/csd.sock
cleanup() {
	if [ -f "$WORK/csd-fw.pid" ]; then
		kill "$(cat "$WORK/csd-fw.pid")" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# initramfs
R=$WORK/root
mkdir -p "$R/bin" "$R/sbin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/lib64" \
	"$R/lib/x86_64-linux-gnu"
cp "$(command -v busybox)" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp "$ROOT/csd.ko" "$R/csd.ko"
cp "$(command -v nvme)" "$R/bin/nvme"
for lib in $(ldd "$(command -v nvme)" | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done
cp "$ROOT/tests/qemu/guest-init.sh" "$R/init"
chmod +x "$R/init"
# struct csd_ctx_desc: layers 1, kv_heads 1, q_heads 1, head_dim 64, f32,
# max_seqs 1, max_tokens 16, flags 0, reserved zero (64 bytes)
{
	printf '\001\000\001\000\001\000\100\000\000\000\000\000'
	printf '\001\000\000\000\020\000\000\000\000\000\000\000'
	head -c 40 /dev/zero
} > "$R/ctx.bin"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

QUEUES=2
"$CSD_FW" --socket "$SOCK" --shm-size 64M --max-clients 1 --queues $QUEUES \
	--pidfile "$WORK/csd-fw.pid" 2> "$WORK/csd-fw.log"

set +e
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -machine q35 -accel tcg -m 1G -smp 2 \
	-nodefaults -display none -serial stdio -no-reboot \
	-kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
	-append 'console=ttyS0 panic=-1 oops=panic quiet' \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-chardev socket,path="$SOCK",id=ivsh \
	-device ivshmem-doorbell,chardev=ivsh,vectors=$((QUEUES + 1)) \
	< /dev/null > "$WORK/console.log" 2>&1
rc=$?
set -e
cat "$WORK/console.log"
echo "--- csd-fw log"
cat "$WORK/csd-fw.log"
case $rc in
1) echo "run.sh: guest reported PASS"; exit 0 ;;
3) echo "run.sh: guest reported FAIL"; exit 1 ;;
124) echo "run.sh: timeout after ${QEMU_TIMEOUT}s"; exit 1 ;;
*) echo "run.sh: guest did not report (qemu exit $rc)"; exit 1 ;;
esac
