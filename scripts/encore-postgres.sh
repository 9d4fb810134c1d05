#!/usr/bin/env bash
# A local PostgreSQL for the Encore daemon on a machine without Docker.
#
# The realtime service declares a database (sqldb.NewDatabase "realtime"), so `encore run`
# and `encore test` need a Postgres: Docker's by default, or the server ENCORE_SQLDB_HOST
# names (the daemon then creates its databases and roles there with the superuser
# ENCORE_SQLDB_USER / ENCORE_SQLDB_PASSWORD). This starts one from Debian's binaries
# (apt-get install postgresql) in DIR, on 127.0.0.1 only, and prints the variables:
#
#   eval "$(scripts/encore-postgres.sh start /tmp/encore-pg [PORT])"   # PORT: the first free from 55432
#   encore test ./...
#   scripts/encore-postgres.sh stop /tmp/encore-pg                     # stops it, removes DIR
#
# The daemon reads them when it starts: export them before the first encore command
# (a daemon already running keeps the environment it started with).
# scripts/with-encore-postgres.sh does all of it around one command, daemon included.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
	echo "no PostgreSQL server binaries: apt-get install -y postgresql" >&2
	exit 1
fi
# initdb and postgres refuse to run as root: run them as the postgres user then, from a
# directory that user can enter (a clone under /root is not one).
as() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && su postgres -s /bin/sh -c "$*")
	else
		sh -c "$*"
	fi
}
# listening reports whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case $cmd in
start)
	if [ -z "$port" ]; then
		port=55432
		while listening "$port"; do
			port=$((port + 1))
			if [ "$port" -gt 55531 ]; then
				echo "no free port in 55432-55531: name one (start DIR PORT)" >&2
				exit 1
			fi
		done
	elif listening "$port"; then
		echo "127.0.0.1:$port is in use" >&2
		exit 1
	fi
	password=encore-local-$RANDOM$RANDOM$RANDOM
	mkdir -p "$dir"
	chmod 755 "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$dir"
		if ! as "test -w '$dir'"; then
			echo "$dir: not reachable for the postgres user (a parent directory is private?)" >&2
			exit 1
		fi
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		(umask 077 && echo "$password" >"$dir/password")
		if [ "$(id -u)" = 0 ]; then chown postgres "$dir/password"; fi
		if ! as "'$bin/initdb' -D '$dir/data' -U postgres --pwfile='$dir/password' --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-instructions" >"$dir/initdb.log" 2>&1; then
			cat "$dir/initdb.log" >&2
			exit 1
		fi
	fi
	# The port is chosen at each start (a kept DIR may be started again).
	cat >"$dir/data/postgresql.auto.conf" <<-EOF
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$dir'
		max_connections = 300
	EOF
	if [ "$(id -u)" = 0 ]; then chown postgres "$dir/data/postgresql.auto.conf"; fi
	if ! as "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 start" >/dev/null; then
		tail -20 "$dir/server.log" >&2
		exit 1
	fi
	echo "export ENCORE_SQLDB_HOST=127.0.0.1:$port ENCORE_SQLDB_USER=postgres ENCORE_SQLDB_PASSWORD=$(cat "$dir/password")"
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as "'$bin/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
	;;
esac
