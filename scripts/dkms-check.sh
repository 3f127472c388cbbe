#!/bin/sh
# scripts/dkms-check.sh - check that `dkms build` builds csd.ko from this
# tree against the installed Debian kernel headers, without touching the
# system's DKMS tree (private --sourcetree/--dkmstree/--installtree), and
# that modinfo documents every module parameter.  Prints "dkms: PASS ..." /
# "dkms: FAIL ..." / "dkms: SKIP ..." lines; exit 0 on pass or skip, 1 on
# failure, 77 when skipped.
# Env: KVER (default: newest /usr/src/linux-headers-*-amd64 with a
# /boot/vmlinuz), KEEP=1 keeps the work dir.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v dkms >/dev/null 2>&1; then
	echo "dkms: SKIP dkms not installed (scripts/deps.sh --kmod)"
	exit 77
fi
if [ -z "${KVER:-}" ]; then
	for h in $(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V); do
		v=${h#/usr/src/linux-headers-}
		[ -r "/boot/vmlinuz-$v" ] && KVER=$v
	done
fi
if [ -z "${KVER:-}" ]; then
	echo "dkms: SKIP no kernel headers (scripts/deps.sh --kmod)"
	exit 77
fi
KDIR=/usr/src/linux-headers-$KVER
VER=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$ROOT/dkms.conf")

W=$(mktemp -d /tmp/csd-dkms.XXXXXX)
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "dkms: kept $W" || rm -rf "$W"; }
trap cleanup EXIT
SRC=$W/src/csd-$VER
mkdir -p "$SRC/include" "$W/tree" "$W/install"
# what a source tarball for DKMS must contain
cp "$ROOT/dkms.conf" "$ROOT/Kbuild" "$SRC/"
cp -r "$ROOT/kmod" "$SRC/kmod"
cp -r "$ROOT/include/csd" "$SRC/include/csd"
find "$SRC/kmod" \( -name '*.o' -o -name '*.cmd' -o -name '.*.cmd' \) -delete

status=0
if dkms build -m csd -v "$VER" -k "$KVER" --kernelsourcedir "$KDIR" \
	--sourcetree "$W/src" --dkmstree "$W/tree" --installtree "$W/install" \
	> "$W/dkms.log" 2>&1; then
	ko=$(find "$W/tree/csd/$VER/$KVER" -name csd.ko 2>/dev/null | head -1)
	if [ -n "$ko" ]; then
		echo "dkms: PASS dkms build csd/$VER for $KVER"
	else
		echo "dkms: FAIL dkms build produced no csd.ko"
		status=1
	fi
else
	echo "dkms: FAIL dkms build (log follows)"
	cat "$W/dkms.log"
	find "$W/tree" -name make.log -exec cat {} \;
	status=1
	ko=
fi
if [ -n "$ko" ] && command -v modinfo >/dev/null 2>&1; then
	missing=
	for p in io_timeout admin_timeout guest_dma; do
		modinfo -F parm "$ko" | grep -q "^$p:.\{10,\}" || missing="$missing $p"
	done
	if [ -z "$missing" ]; then
		echo "dkms: PASS modinfo documents every module parameter"
	else
		echo "dkms: FAIL modinfo lacks descriptions of:$missing"
		status=1
	fi
fi
exit $status
