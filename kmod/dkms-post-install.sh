#!/bin/sh
# DKMS POST_INSTALL hook (dkms.conf): install the udev rule for /dev/csdN.
# Runs from the DKMS copy of the source tree.
set -e
dir=$(dirname "$0")
install -D -m 0644 "$dir/60-csd.rules" /etc/udev/rules.d/60-csd.rules
if command -v udevadm >/dev/null 2>&1; then
	udevadm control --reload-rules 2>/dev/null || true
	udevadm trigger --subsystem-match=csd 2>/dev/null || true
fi
