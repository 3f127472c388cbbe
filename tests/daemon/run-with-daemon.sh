#!/bin/sh
# SPDX-License-Identifier: MIT
# run-with-daemon.sh CSD_FW [csd-fw options...] -- COMMAND [ARGS...]
#
# Starts csd-fw on a private socket, runs COMMAND with CSD_DEVICE=shm:SOCK,
# stops the daemon with SIGTERM and checks it exits cleanly and removes its
# socket.  Every wait is bounded.  Exit status: COMMAND's, or 1 if the
# daemon misbehaved, 99 if it did not start.
set -u
fw=$1
shift
dargs=
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	dargs="$dargs $1"
	shift
done
[ $# -gt 0 ] && shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/csd-fw.XXXXXX") || exit 99
sock=$dir/sock
# shellcheck disable=SC2086
"$fw" --socket "$sock" --foreground $dargs 2>"$dir/daemon.log" &
pid=$!
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "run-with-daemon: csd-fw did not start" >&2
		cat "$dir/daemon.log" >&2
		kill -KILL "$pid" 2>/dev/null
		rm -rf "$dir"
		exit 99
	fi
	sleep 0.1
done
CSD_DEVICE="shm:$sock" CSD_TEST_DEVICE="shm:$sock" "$@"
rc=$?
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "run-with-daemon: csd-fw ignored SIGTERM" >&2
		kill -KILL "$pid"
		rc=1
		break
	fi
	sleep 0.1
done
wait "$pid"
drc=$?
if [ "$drc" -ne 0 ] && [ "$rc" -eq 0 ]; then
	echo "run-with-daemon: csd-fw exit status $drc" >&2
	rc=1
fi
if [ -e "$sock" ]; then
	echo "run-with-daemon: socket left behind" >&2
	rc=1
fi
[ "$rc" -ne 0 ] && cat "$dir/daemon.log" >&2
rm -rf "$dir"
exit $rc
