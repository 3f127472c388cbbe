#!/bin/sh
# tests/qemu/run.sh - boot Debian's kernel under QEMU (TCG) with csd-fw serving
# an ivshmem-doorbell device and the guest's RAM shared with csd-fw
# (--dma-file), load csd.ko and test it from inside the guest
# (tests/qemu/guest-init.sh): nvme-cli, the conformance suite through
# libcsd's kernel transport as root and as an unprivileged user, the
# cross-process isolation test, the ioctl/uring_cmd fuzzer, H4a's driver
# checks (guest-kmod.sh), and last the daemon-kill test: when the guest
# prints CSD-KILL-READY this script SIGKILLs csd-fw.  The guest reports
# pass/fail through isa-debug-exit; every guest check prints a
# "GUEST PASS:" / "GUEST FAIL:" line (scripts/check.sh counts them).
#
# Needs: linux-image-amd64 linux-headers-amd64 busybox-static nvme-cli
# qemu-system-x86 cpio liburing-dev (scripts/deps.sh --kmod), a C compiler
# with static glibc, and a meson build (csd-fw, libcsd.a, csd-conformance).
# Env: CSD_FW (csd-fw binary), CSD_BUILD (meson build dir; default: the one
# CSD_FW is in), KVER (kernel version; default: newest with both
# /boot/vmlinuz-<ver> and headers), QEMU_TIMEOUT (seconds, 600),
# FUZZ_ITERS (ioctl fuzzer operations, 12000), FUZZ_SEED (its seed; printed
# by every run), UDEV_RULE (the rule the guest
# applies by hand; default kmod/*.rules), KEEP=1 (keep the work dir).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CSD_FW=${CSD_FW:-$ROOT/build/firmware-sim/csd-fw}
CSD_BUILD=${CSD_BUILD:-$(cd "$(dirname "$CSD_FW")/.." && pwd)}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
FUZZ_ITERS=${FUZZ_ITERS:-12000}
CC=${CC:-cc}

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
CONF=$CSD_BUILD/tests/conformance/csd-conformance
LIBCSD=$CSD_BUILD/libcsd/libcsd.a
for f in "$CONF" "$LIBCSD"; do
	[ -f "$f" ] || { echo "run.sh: $f missing (build $CSD_BUILD first)" >&2; exit 1; }
done
for t in qemu-system-x86_64 busybox nvme cpio "$CC"; do
	command -v "$t" >/dev/null || { echo "run.sh: $t missing" >&2; exit 1; }
done

echo "run.sh: kernel $KVER, build $CSD_BUILD"

WORK=$(mktemp -d /tmp/csd-qemu.XXXXXX)
SOCK=$WORK/csd.sock
# guest RAM, shared with csd-fw for PRPs that point into guest memory
MEMFILE=/dev/shm/csd-qemu-$$-$(basename "$WORK")
QPID=
cleanup() {
	if [ -n "$QPID" ]; then
		kill "$QPID" 2>/dev/null || true
	fi
	if [ -f "$WORK/csd-fw.pid" ]; then
		kill "$(cat "$WORK/csd-fw.pid")" 2>/dev/null || true
	fi
	rm -f "$MEMFILE"
	if [ "${KEEP:-0}" = 1 ]; then
		echo "run.sh: kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# csd.ko, built from a copy of the sources (no objects in the tree, no race
# with a concurrent `make kmod`)
mkdir -p "$WORK/src"
cp -r "$ROOT/Kbuild" "$ROOT/kmod" "$ROOT/include" "$WORK/src/"
rm -f "$WORK/src/kmod/"*.o "$WORK/src/kmod/".*.cmd
make -s -C "/usr/src/linux-headers-$KVER" M="$WORK/src" W=1 modules >/dev/null

# initramfs
R=$WORK/root
mkdir -p "$R/bin" "$R/sbin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/lib64" \
	"$R/lib/x86_64-linux-gnu" "$R/etc"
cp "$(command -v busybox)" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp "$WORK/src/csd.ko" "$R/csd.ko"
copy_with_libs() {	# binary, destination in the initramfs
	cp "$1" "$R$2"
	for lib in $(ldd "$1" | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
		mkdir -p "$R$(dirname "$lib")"
		cp -L "$lib" "$R$lib"
	done
}
copy_with_libs "$(command -v nvme)" /bin/nvme
# the conformance suite of the meson build (libcsd linked in)
copy_with_libs "$CONF" /bin/csd-conformance
# guest test programs: static, warning-free with the project's flags
GCFLAGS="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
	-Wmissing-prototypes -Wvla -Wformat=2 -D_GNU_SOURCE -I$ROOT/include"
# shellcheck disable=SC2086
{
	$CC $GCFLAGS -static -o "$R/bin/runas" "$ROOT/tests/qemu/runas.c"
	$CC $GCFLAGS -static -o "$R/bin/isolation" \
		"$ROOT/tests/qemu/isolation.c" -luring
	$CC $GCFLAGS -static -o "$R/bin/ioctl_fuzz" \
		"$ROOT/tests/qemu/ioctl_fuzz.c" -luring
	$CC $GCFLAGS -static -o "$R/bin/killtest" "$ROOT/tests/qemu/killtest.c" \
		"$LIBCSD" -luring -lpthread -lm
	# H4a's io_uring/removal checks (run by guest-kmod.sh)
	if [ -f "$ROOT/tests/qemu/uring_test.c" ]; then
		$CC $GCFLAGS -static -o "$R/bin/uring_test" \
			"$ROOT/tests/qemu/uring_test.c" -luring
	fi
}
cp "$ROOT/tests/qemu/guest-init.sh" "$R/init"
chmod +x "$R/init"
# H4a's in-guest driver checks and udev rule, when present
if [ -f "$ROOT/tests/qemu/guest-kmod.sh" ]; then
	cp "$ROOT/tests/qemu/guest-kmod.sh" "$R/guest-kmod.sh"
fi
for rule in ${UDEV_RULE:-"$ROOT"/kmod/*.rules}; do
	[ -f "$rule" ] && cp "$rule" "$R/etc/csd.rules"
done
echo "root:x:0:0:root:/:/bin/sh" > "$R/etc/passwd"
echo "csduser:x:1000:1000::/tmp:/bin/sh" >> "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"
echo "csd:x:990:" >> "$R/etc/group"
echo "csduser:x:1000:" >> "$R/etc/group"
# struct csd_ctx_desc: layers 1, kv_heads 1, q_heads 1, head_dim 64, f32,
# max_seqs 1, max_tokens 16, flags 0, reserved zero (64 bytes)
{
	printf '\001\000\001\000\001\000\100\000\000\000\000\000'
	printf '\001\000\000\000\020\000\000\000\000\000\000\000'
	head -c 40 /dev/zero
} > "$R/ctx.bin"
printf '%s\n' "$FUZZ_ITERS" > "$R/etc/fuzz_iters"
printf '%s\n' "${FUZZ_SEED:-}" > "$R/etc/fuzz_seed"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

truncate -s 1G "$MEMFILE"
QUEUES=2
# read_ns=2 s: a flash page read is modeled at 2 s.  Without pacing (the
# default) that only changes the modeled time in CQE dw1; guest-kmod.sh's
# controller-reset test switches pacing on to get a command that outlives
# io_timeout=1, and off again.
"$CSD_FW" --socket "$SOCK" --shm-size 64M --max-clients 1 --queues $QUEUES \
	--device-opts read_ns=2000000000 \
	--dma-file "$MEMFILE" --pidfile "$WORK/csd-fw.pid" 2> "$WORK/csd-fw.log"

set +e
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -accel tcg -m 1G -smp 2 \
	-object memory-backend-file,id=mem,size=1G,mem-path="$MEMFILE",share=on \
	-machine q35,memory-backend=mem \
	-nodefaults -display none -serial stdio -no-reboot \
	-kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
	-append 'console=ttyS0 panic=-1 oops=panic quiet' \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-chardev socket,path="$SOCK",id=ivsh \
	-device ivshmem-doorbell,chardev=ivsh,vectors=$((QUEUES + 1)) \
	< /dev/null > "$WORK/console.log" 2>&1 &
QPID=$!
# the daemon-kill test: SIGKILL csd-fw when the guest says so
killed=0
while kill -0 "$QPID" 2>/dev/null; do
	if [ $killed = 0 ] && grep -q '^CSD-KILL-READY' "$WORK/console.log"; then
		kill -9 "$(cat "$WORK/csd-fw.pid")"
		killed=1
		echo "run.sh: csd-fw killed (guest marker seen)" >> "$WORK/host.log"
	fi
	sleep 0.2
done
wait "$QPID"
rc=$?
QPID=
set -e
cat "$WORK/console.log"
[ -f "$WORK/host.log" ] && cat "$WORK/host.log"
echo "--- csd-fw log"
cat "$WORK/csd-fw.log"
# kernel trouble that reached the console (the guest scans dmesg itself)
if grep -E 'BUG:|Oops|general protection|Kernel panic|refcount_t' \
	"$WORK/console.log" | grep -v '^GUEST' ; then
	echo "run.sh: kernel errors on the guest console"
	rc=3
fi
case $rc in
1) echo "run.sh: guest reported PASS"; exit 0 ;;
3) echo "run.sh: guest reported FAIL"; exit 1 ;;
124) echo "run.sh: timeout after ${QEMU_TIMEOUT}s"; exit 1 ;;
*) echo "run.sh: guest did not report (qemu exit $rc)"; exit 1 ;;
esac
