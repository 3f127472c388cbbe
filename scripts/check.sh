#!/bin/sh
# `make check`: build with -Werror, run every test suite, then the unit and
# conformance suites again under AddressSanitizer + UBSan, and print the
# total as the last line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
NPROC=$(nproc 2>/dev/null || echo 2)
logs=""
status=0

setup() {
	dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@"
	fi
}

run_suite() {
	dir=$1
	shift
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --num-processes "$NPROC" --print-errorlogs "$@" || status=1
	logs="$logs $dir/meson-logs/testlog.json"
}

build_failed() {
	echo "check.sh: build of $1 failed" >&2
	python3 scripts/count-tests.py --extra-failed 1 $logs
	exit 1
}

echo "== build ($BUILD, -Werror) =="
setup "$BUILD" --buildtype=debugoptimized --werror || build_failed "$BUILD"
ninja -C "$BUILD" || build_failed "$BUILD"

echo "== tests ($BUILD) =="
run_suite "$BUILD"

echo "== build ($ASAN_BUILD, ASan+UBSan) =="
setup "$ASAN_BUILD" --buildtype=debugoptimized --werror \
	-Db_sanitize=address,undefined -Db_lundef=false || build_failed "$ASAN_BUILD"
ninja -C "$ASAN_BUILD" || build_failed "$ASAN_BUILD"

echo "== tests ($ASAN_BUILD) =="
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
CSD_TEST_SANITIZER=1 \
	run_suite "$ASAN_BUILD" --suite unit --suite conformance \
	--timeout-multiplier 3

echo "== summary =="
python3 scripts/count-tests.py $logs || status=1
exit $status
