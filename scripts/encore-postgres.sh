#!/usr/bin/env bash
# A local PostgreSQL for the Encore daemon on a machine without Docker.
#
# The realtime service declares a database (sqldb.NewDatabase "realtime"), so `encore run`
# and `encore test` need a Postgres: Docker's by default, or the server ENCORE_SQLDB_HOST
# names (the daemon then creates its databases and roles there with the superuser
# ENCORE_SQLDB_USER / ENCORE_SQLDB_PASSWORD). This starts one from Debian's binaries
# (apt-get install postgresql) in DIR and prints the variables:
#
#   eval "$(scripts/encore-postgres.sh start /tmp/encore-pg [PORT])"   # PORT default 55432
#   encore test ./...
#   scripts/encore-postgres.sh stop /tmp/encore-pg
#
# The daemon reads them when it starts: export them before the first encore command
# (a daemon already running keeps the environment it started with).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-55432}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
	echo "no PostgreSQL server binaries: apt-get install -y postgresql" >&2
	exit 1
fi
# initdb and postgres refuse to run as root: run them as the postgres user then.
as() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

case $cmd in
start)
	password=encore-local-$RANDOM$RANDOM
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$dir"
		if ! su postgres -s /bin/sh -c "test -w '$dir'"; then
			echo "$dir: not reachable for the postgres user (a parent directory is private?)" >&2
			exit 1
		fi
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		echo "$password" >"$dir/password"
		if [ "$(id -u)" = 0 ]; then chown postgres "$dir/password"; fi
		as "'$bin/initdb' -D '$dir/data' -U postgres --pwfile='$dir/password' --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-instructions" >&2
		cat >>"$dir/data/postgresql.conf" <<-EOF
			listen_addresses = '127.0.0.1'
			port = $port
			unix_socket_directories = '$dir'
			max_connections = 300
		EOF
	fi
	as "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w start" >&2
	echo "export ENCORE_SQLDB_HOST=127.0.0.1:$port ENCORE_SQLDB_USER=postgres ENCORE_SQLDB_PASSWORD=$(cat "$dir/password")"
	;;
stop)
	as "'$bin/pg_ctl' -D '$dir/data' -m fast stop" >&2 || true
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
	;;
esac
