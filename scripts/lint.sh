#!/bin/sh
# `make lint`: clang-tidy and cppcheck over the userspace sources, and a
# clang-format check.  Exit status non-zero when any tool reports a problem.
set -u
cd "$(dirname "$0")/.."
scripts/deps.sh --lint || exit 1

BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=debugoptimized >/dev/null
ninja -C "$BUILD" >/dev/null || exit 1
status=0
srcs=$(git ls-files 'firmware-sim/*.c' 'libcsd/*.c' 'tools/*.c' 'runtime/*.c')

echo "== clang-tidy =="
# shellcheck disable=SC2086
clang-tidy -quiet -p "$BUILD" $srcs 2>/dev/null | grep -E 'warning:|error:' && status=1

echo "== cppcheck =="
# shellcheck disable=SC2086
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	--inline-suppr --suppress=missingIncludeSystem -Iinclude -Ifirmware-sim \
	--std=c11 $srcs || status=1

echo "== clang-format =="
for f in $srcs $(git ls-files 'firmware-sim/*.h' 'libcsd/*.h' 'include/*.h'); do
	clang-format --dry-run "$f" 2>&1 | head -3 | grep -q warning && {
		echo "needs clang-format: $f"
	}
done

[ -d kmod ] && [ -x scripts/checkpatch.sh ] && { scripts/checkpatch.sh || status=1; }
exit $status
