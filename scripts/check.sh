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
	run_suite "$ASAN_BUILD" --suite unit --suite conformance --suite daemon \
	--timeout-multiplier 3

# Short libFuzzer smoke runs of every fuzz target, where clang is available
# (make fuzz runs them for longer).
fz_pass=0
fz_fail=0
fz_skip=0
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SMOKE=${FUZZ_SMOKE:-20}
if command -v clang >/dev/null 2>&1 && [ "$FUZZ_SMOKE" -gt 0 ]; then
	echo "== fuzz smoke ($FUZZ_BUILD, ${FUZZ_SMOKE}s per target) =="
	if { [ -f "$FUZZ_BUILD/build.ninja" ] || CC=clang meson setup "$FUZZ_BUILD" \
		--buildtype=debugoptimized -Dfuzz=true -Dtests=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fsanitize=fuzzer-no-link >/dev/null; } &&
	   ninja -C "$FUZZ_BUILD" tests/fuzz/fuzz_cmd tests/fuzz/fuzz_gguf >/dev/null; then
		for t in "$FUZZ_BUILD"/tests/fuzz/fuzz_*; do
			case "$t" in *.p | *.log) continue ;; esac
			[ -f "$t" ] && [ -x "$t" ] || continue
			if "$t" -max_total_time="$FUZZ_SMOKE" -print_final_stats=0 \
				>"$t.log" 2>&1; then
				echo "fuzz $(basename "$t"): OK"
				fz_pass=$((fz_pass + 1))
			else
				echo "fuzz $(basename "$t"): FAILED (see $t.log)"
				tail -30 "$t.log"
				fz_fail=$((fz_fail + 1))
				status=1
			fi
		done
	else
		echo "fuzz build failed"
		fz_fail=$((fz_fail + 1))
		status=1
	fi
else
	echo "== fuzz smoke: skipped (no clang) =="
	fz_skip=1
fi

# csd.ko: `dkms build` of this tree against the Debian headers, and modinfo
# (scripts/dkms-check.sh); each "dkms: PASS/FAIL/SKIP" line counts.
echo "== dkms build (csd.ko) =="
scripts/dkms-check.sh >"$BUILD/dkms-check.log" 2>&1
cat "$BUILD/dkms-check.log"
fz_pass=$((fz_pass + $(grep -c '^dkms: PASS' "$BUILD/dkms-check.log")))
fz_fail=$((fz_fail + $(grep -c '^dkms: FAIL' "$BUILD/dkms-check.log")))
fz_skip=$((fz_skip + $(grep -c '^dkms: SKIP' "$BUILD/dkms-check.log")))
grep -q '^dkms: FAIL' "$BUILD/dkms-check.log" && status=1

# csd.ko in a QEMU guest (tests/qemu/run.sh), where the kernel packages are
# installed (scripts/deps.sh --kmod); each guest check counts as a test.
if [ -x tests/qemu/run.sh ] && command -v qemu-system-x86_64 >/dev/null 2>&1 &&
   ls /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
	echo "== qemu guest (csd.ko) =="
	if CSD_FW="$PWD/$BUILD/firmware-sim/csd-fw" tests/qemu/run.sh \
		>"$BUILD/qemu-test.log" 2>&1; then
		qrc=0
	else
		qrc=1
	fi
	grep -E 'GUEST (PASS|FAIL|RESULT|INFO)|^run.sh:' "$BUILD/qemu-test.log"
	# the guest's last line "GUEST RESULT: P passed, F failed, S skipped"
	# counts every check (conformance suite tests included); without it
	# (the guest died) count the check lines seen
	qres=$(sed -n 's/^GUEST RESULT: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/p' \
		"$BUILD/qemu-test.log" | tail -1)
	if [ -n "$qres" ]; then
		set -- $qres
		fz_pass=$((fz_pass + $1))
		fz_fail=$((fz_fail + $2))
		fz_skip=$((fz_skip + $3))
	else
		fz_pass=$((fz_pass + $(grep -c '^GUEST PASS' "$BUILD/qemu-test.log")))
		fz_fail=$((fz_fail + $(grep -c '^GUEST FAIL' "$BUILD/qemu-test.log")))
	fi
	if [ "$qrc" -ne 0 ]; then
		echo "qemu guest test FAILED (see $BUILD/qemu-test.log)"
		fz_fail=$((fz_fail + 1))
		status=1
	fi
else
	echo "== qemu guest: skipped (scripts/deps.sh --kmod not installed) =="
	fz_skip=$((fz_skip + 1))
fi

echo "== summary =="
python3 scripts/count-tests.py --extra-passed $fz_pass --extra-failed $fz_fail \
	--extra-skipped $fz_skip $logs || status=1
exit $status
