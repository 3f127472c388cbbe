#!/bin/sh
# `make lint`: clang-tidy and cppcheck over the userspace sources, and a
# clang-format check of changed lines.  Exit status non-zero when any tool reports a problem.
set -u
cd "$(dirname "$0")/.." || exit 1
scripts/deps.sh --lint || exit 1

BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=debugoptimized >/dev/null
ninja -C "$BUILD" >/dev/null || exit 1
status=0
srcs=$(git ls-files 'firmware-sim/*.c' 'libcsd/*.c' 'tools/*.c' 'runtime/*.c')

echo "== clang-tidy =="
# One clang-tidy process per file: clang-tidy 14 given several files leaks
# static-analyzer state from one translation unit to the next (the valist
# checker then no longer recognises va_start and reports
# valist.Uninitialized on correct code in every file but the first).
# shellcheck disable=SC2086
printf '%s\n' $srcs | xargs -n1 clang-tidy -quiet -p "$BUILD" 2>/dev/null |
	grep -E 'warning:|error:' && status=1

echo "== cppcheck =="
# invalidPointerCast: byte buffers (KV pages, GGUF tensor data, scratch
# arenas) are viewed as float arrays on purpose, and the project builds
# with -fno-strict-aliasing.
# shellcheck disable=SC2086
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	--inline-suppr --suppress=missingIncludeSystem \
	--suppress=invalidPointerCast -Iinclude -Ifirmware-sim \
	--std=c11 $srcs || status=1

echo "== clang-format (changed lines) =="
# Advisory, as in the kernel: the tree predates parts of .clang-format
# and is not reformatted wholesale (that would bury history), so only the
# lines changed against LINT_BASE (default: the upstream branch if there
# is one, else HEAD, i.e. uncommitted work) are checked.
base=${LINT_BASE:-$(git rev-parse -q --verify '@{upstream}' 2>/dev/null || echo HEAD)}
# shellcheck disable=SC2046
out=$(git clang-format --quiet --diff "$base" -- $(git ls-files \
	'firmware-sim/*.[ch]' 'libcsd/*.[ch]' 'tools/*.c' 'runtime/*.[ch]' \
	'include/*.h') 2>&1)
if [ -n "$out" ] && [ "$out" != "no modified files to format" ] &&
   [ "$out" != "clang-format did not modify any files" ]; then
	printf '%s\n' "$out"
	echo "(advisory: clang-format would change the lines above)"
fi

[ -d kmod ] && [ -x scripts/checkpatch.sh ] && { scripts/checkpatch.sh || status=1; }
exit $status
