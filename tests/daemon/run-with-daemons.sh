#!/bin/sh
# SPDX-License-Identifier: MIT
# run-with-daemons.sh CSD_FW N [csd-fw options...] -- COMMAND [ARGS...]
#
# Starts N csd-fw daemons, each on its own private socket, runs COMMAND
# with CSD_TEST_GROUP, CSD_TEST_DEVICE and CSD_DEVICE set to the device
# group string "shm:SOCK1,shm:SOCK2,...", then stops every daemon with
# SIGTERM and checks each exits cleanly and removes its socket.  Every
# wait is bounded.  Exit status: COMMAND's, or 1 if a daemon misbehaved,
# 99 if one did not start.
set -u
fw=$1
n=$2
shift 2
dargs=
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	dargs="$dargs $1"
	shift
done
[ $# -gt 0 ] && shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/csd-fws.XXXXXX") || exit 99
pids=
group=

stop_all() {
	rc_stop=0
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $pids; do
		i=0
		while kill -0 "$p" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -gt 100 ]; then
				echo "run-with-daemons: csd-fw $p ignored SIGTERM" >&2
				kill -KILL "$p"
				rc_stop=1
				break
			fi
			sleep 0.1
		done
		wait "$p"
		drc=$?
		if [ "$drc" -ne 0 ]; then
			echo "run-with-daemons: csd-fw $p exit status $drc" >&2
			rc_stop=1
		fi
	done
}

k=0
while [ $k -lt "$n" ]; do
	sock=$dir/sock$k
	# shellcheck disable=SC2086
	"$fw" --socket "$sock" --foreground $dargs 2>"$dir/daemon$k.log" &
	pid=$!
	pids="$pids $pid"
	i=0
	while [ ! -S "$sock" ]; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "run-with-daemons: csd-fw $k did not start" >&2
			cat "$dir/daemon$k.log" >&2
			stop_all
			rm -rf "$dir"
			exit 99
		fi
		sleep 0.1
	done
	group="$group${group:+,}shm:$sock"
	k=$((k + 1))
done

CSD_DEVICE="$group" CSD_TEST_DEVICE="$group" CSD_TEST_GROUP="$group" "$@"
rc=$?
stop_all
[ "$rc_stop" -ne 0 ] && [ "$rc" -eq 0 ] && rc=1
k=0
while [ $k -lt "$n" ]; do
	if [ -e "$dir/sock$k" ]; then
		echo "run-with-daemons: socket $k left behind" >&2
		rc=1
	fi
	k=$((k + 1))
done
if [ "$rc" -ne 0 ]; then
	for f in "$dir"/daemon*.log; do
		cat "$f" >&2
	done
fi
rm -rf "$dir"
exit $rc
