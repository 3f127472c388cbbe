#!/bin/sh
# Run the kernel's checkpatch.pl over kmod/.  Debian's header packages do
# not ship it, so it is taken from (in order) $CHECKPATCH, a kernel tree's
# scripts/, or extracted once from the linux-source-<ver> package into
# build-checkpatch/ (apt-get download: no installation needed).
set -u
cd "$(dirname "$0")/.." || exit 1

cp=${CHECKPATCH:-}
if [ -z "$cp" ]; then
	for c in /usr/src/linux-headers-*/scripts/checkpatch.pl \
		 /usr/src/linux-source-*/scripts/checkpatch.pl \
		 build-checkpatch/linux-source-*/scripts/checkpatch.pl; do
		[ -f "$c" ] && cp=$c && break
	done
fi
if [ -z "$cp" ]; then
	pkg=$(apt-cache pkgnames linux-source- 2>/dev/null | grep -E '^linux-source-[0-9.]+$' |
	      sort -V | tail -1)
	if [ -n "$pkg" ]; then
		mkdir -p build-checkpatch
		(cd build-checkpatch && apt-get download -q "$pkg" >/dev/null 2>&1 &&
		 dpkg-deb --fsys-tarfile "$pkg"_*.deb |
			tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
			tar -xJ --wildcards '*/scripts/checkpatch.pl' \
				'*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch' \
				2>/dev/null)
		for c in build-checkpatch/linux-source-*/scripts/checkpatch.pl; do
			[ -f "$c" ] && cp=$c && break
		done
	fi
fi
if [ -z "$cp" ]; then
	echo "checkpatch.sh: checkpatch.pl not available (set CHECKPATCH=path); skipped" >&2
	exit 0
fi
echo "== checkpatch ($cp) =="
perl "$cp" --no-tree --quiet --strict -f kmod/*.c kmod/*.h
