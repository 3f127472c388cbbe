#!/usr/bin/env python3
"""Sum test results from meson testlog.json files.

A test program built on tests/common/cu_main.h prints
    CSDTEST <prog>: P passed, F failed, S skipped
and contributes those counts (its CUnit tests).  Any other test counts as
one test.  A program that crashed or timed out after printing its line
adds one failure.  The last line printed is the total:
    N passed, N failed, N skipped
"""
import json
import re
import sys

LINE = re.compile(r"^CSDTEST (\S+): (\d+) passed, (\d+) failed, (\d+) skipped",
                  re.M)


def main(argv):
    passed = failed = skipped = 0
    files = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--extra-passed", "--extra-failed", "--extra-skipped"):
            n = int(argv[i + 1])
            if argv[i] == "--extra-passed":
                passed += n
            elif argv[i] == "--extra-failed":
                failed += n
            else:
                skipped += n
            i += 2
            continue
        files.append(argv[i])
        i += 1
    for path in files:
        try:
            fh = open(path)
        except OSError:
            continue
        with fh:
            for raw in fh:
                raw = raw.strip()
                if not raw:
                    continue
                t = json.loads(raw)
                res = t.get("result", "")
                out = (t.get("stdout") or "") + (t.get("stderr") or "")
                m = LINE.findall(out)
                ok = res in ("OK", "EXPECTEDFAIL")
                if m:
                    p, f, s = (int(x) for x in m[-1][1:])
                    passed += p
                    failed += f
                    skipped += s
                    if not ok and res != "SKIP" and f == 0:
                        failed += 1
                        print(f"count-tests: {t['name']}: {res} after summary")
                elif ok:
                    passed += 1
                elif res == "SKIP":
                    skipped += 1
                else:
                    failed += 1
                    print(f"count-tests: {t['name']}: {res}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
