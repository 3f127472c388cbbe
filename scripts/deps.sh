#!/bin/sh
# Install the Debian 12 packages csd needs (idempotent; quick when all are
# present).  Usage: scripts/deps.sh [--fuzz] [--lint] [--plot]
set -eu

pkgs="gcc make pkg-config python3 meson ninja-build libcunit1-dev liburing-dev"
for arg in "$@"; do
	case "$arg" in
	--fuzz) pkgs="$pkgs clang libclang-rt-dev" ;;
	--lint) pkgs="$pkgs clang-tidy cppcheck clang-format" ;;
	--plot) pkgs="$pkgs gnuplot-nox" ;;
	--kmod) pkgs="$pkgs linux-headers-amd64 linux-image-amd64 busybox-static nvme-cli qemu-system-x86 cpio dkms" ;;
	*) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps.sh: need root (or sudo) to install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
