#!/usr/bin/env bash
# Runs one command (make test-encore, encore run, ...) with an Encore daemon that has a
# Postgres, on a machine without Docker, and cleans up after it:
#
#   scripts/with-encore-postgres.sh make test-encore
#
# The realtime service declares a database, so the Encore daemon needs Docker or a
# Postgres named by ENCORE_SQLDB_HOST, read when the daemon starts. When none is
# configured (no ENCORE_SQLDB_HOST, no Docker) and no daemon runs yet, this starts a
# Postgres (scripts/encore-postgres.sh, in a temporary directory on a free port) and a
# daemon (encore daemon -f) that knows it, runs the command, then stops both: what it
# started is gone when it exits, also on failure or Ctrl-C. Otherwise it just runs the
# command: a daemon already running keeps the environment it was started with (it is
# never restarted here: other `encore run`s may depend on it). Without the encore CLI
# it runs the command as is (make test-encore then says it skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# = 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi
sock="${XDG_CACHE_HOME:-$HOME/.cache}/encore/encored.sock"
if ! command -v encore >/dev/null 2>&1 || [ -n "${ENCORE_SQLDB_HOST:-}" ] || docker info >/dev/null 2>&1; then
	exec "$@"
fi
# live reports whether a daemon listens on the socket (a killed daemon leaves the file).
live() {
	[ -S "$sock" ] || return 1
	if command -v ss >/dev/null 2>&1; then
		ss -Hxl | grep -qF " $sock "
	fi
}
if live; then
	echo "with-encore-postgres: an Encore daemon is already running ($sock); it uses the Postgres it was" \
		"started with (ENCORE_SQLDB_HOST) or Docker. Without either the database step fails: stop it, or start" \
		"it with the variables of scripts/encore-postgres.sh." >&2
	exec "$@"
fi

pg=$(mktemp -d "${TMPDIR:-/tmp}/encore-pg.XXXXXX")
daemon_pid=
cmd_pid=
cleanup() {
	if [ -n "$cmd_pid" ]; then
		kill "$cmd_pid" 2>/dev/null || true
		wait "$cmd_pid" 2>/dev/null || true
	fi
	if [ -n "$daemon_pid" ]; then
		kill "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
		rm -f "$sock" # ours, and it leaves it behind
	fi
	scripts/encore-postgres.sh stop "$pg"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

vars=$(scripts/encore-postgres.sh start "$pg")
eval "$vars"
echo "with-encore-postgres: Postgres on $ENCORE_SQLDB_HOST for the Encore daemon" >&2
# The daemon the CLI would start by itself outlives this script; this one is ours to stop.
# Its log is shown only when something fails.
encore daemon -f >"$pg/daemon.log" 2>&1 &
daemon_pid=$!
# Ready when it serves the socket, not when it listens: it listens first, then opens its
# database, and a CLI that cannot talk to it within half a second removes the socket
# (which stops it) and starts a daemon of its own.
up() { live && grep -q 'serving daemon' "$pg/daemon.log"; }
for _ in $(seq 1 600); do
	up && break
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		tail -20 "$pg/daemon.log" >&2
		echo "with-encore-postgres: the Encore daemon exited" >&2
		exit 1
	fi
	sleep 0.1
done
if ! up; then
	tail -20 "$pg/daemon.log" >&2
	echo "with-encore-postgres: the Encore daemon does not serve $sock after 60 s" >&2
	exit 1
fi
status=0
# In the background so that a TERM reaches the script at once (cleanup stops the command).
"$@" &
cmd_pid=$!
wait "$cmd_pid" || status=$?
cmd_pid=
if [ "$status" != 0 ]; then
	echo "with-encore-postgres: '$*' failed ($status); the daemon's last log lines:" >&2
	tail -20 "$pg/daemon.log" >&2
fi
exit "$status"
