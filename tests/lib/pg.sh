#!/bin/sh
# pg.sh - a throwaway PostgreSQL for tests, never the system service.
#
# Source it and call the functions, or run it with the function name:
#
#   . tests/lib/pg.sh; pg_start DIR PORT; pg_psql PORT 'SELECT 1'; pg_stop DIR
#   sh tests/lib/pg.sh start DIR PORT    (also: stop DIR, psql PORT [SQL])
#
# pg_start DIR PORT  initdb in DIR/data (once; a second start reuses it) and
#		     start a server listening only on 127.0.0.1:PORT, its
#		     unix socket in DIR, trust auth, fsync off, log in
#		     DIR/postgres.log; returns once it accepts connections.
#		     initdb and postgres refuse root: as root DIR is handed to
#		     the "postgres" user (PG_USER) and both run as that user.
# pg_stop DIR	     stop it (immediate: the data is throwaway); DIR is kept.
# pg_psql PORT [SQL] run SQL (or stdin) as superuser "postgres" in database
#		     PG_DB (default "postgres"); stops at the first error;
#		     unaligned, tuples only, so `$(pg_psql P 'SELECT 1')` is 1.
# pgb_start DIR PORT PGPORT
#		     a pgbouncer in DIR/pgbouncer on 127.0.0.1:PORT in front of
#		     the server on PGPORT: pool_mode = transaction, trust auth
#		     for "postgres", 4 server connections per pool, at most 20
#		     clients, the "options" startup parameter ignored (libpq
#		     sends it; pgbouncer 1.18 refuses it otherwise); returns
#		     once it answers.  As root it runs as PG_USER.  The
#		     binary: PGBOUNCER, else PATH, else /usr/sbin/pgbouncer.
# pgb_stop DIR	     stop it (SIGTERM: at once in 1.18; SIGKILL in 2 s).
#
# PG_BINDIR overrides the server binaries (default: newest
# /usr/lib/postgresql/*/bin).  The URL is
# postgres://postgres@127.0.0.1:PORT/postgres.
#
# TLS: with PG_SSL_CERT and PG_SSL_KEY (PEM files) set, pg_start copies
# them into DIR (owned by the server's user, mode 600, as the server
# wants), starts with ssl=on and that pair, and replaces pg_hba.conf with
# hostssl lines only (127.0.0.1 and ::1, trust) plus the unix socket: a
# client that does not speak TLS over TCP is refused.  Unset (the
# default), nothing changes; a DIR started with TLS before gets its
# original pg_hba.conf back.

pg_bindir() {
	if [ -n "${PG_BINDIR:-}" ]; then
		printf '%s\n' "$PG_BINDIR"
		return 0
	fi
	for _d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null |
	    sort -t/ -k5 -n); do
		_pg_last=$_d
	done
	if [ -z "${_pg_last:-}" ]; then
		echo "pg.sh: no PostgreSQL server binaries (set PG_BINDIR)" >&2
		return 1
	fi
	printf '%s\n' "$_pg_last"
}

# Runs "$@" as the server's user when we are root, in DIR ($1) so a cwd
# the user cannot read (/root) does not matter.
_pg_as() {
	_pg_cwd=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$_pg_cwd" && runuser -u "${PG_USER:-postgres}" -- "$@")
	else
		(cd "$_pg_cwd" && "$@")
	fi
}

pg_start() {
	if [ $# -ne 2 ]; then
		echo "usage: pg_start DIR PORT" >&2
		return 2
	fi
	_pg_dir=$1
	_pg_port=$2
	_pg_bin=$(pg_bindir) || return 1
	mkdir -p "$_pg_dir" || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown "${PG_USER:-postgres}" "$_pg_dir" || return 1
	fi
	chmod 0700 "$_pg_dir" || return 1
	if [ ! -f "$_pg_dir/data/PG_VERSION" ]; then
		_pg_as "$_pg_dir" "$_pg_bin/initdb" -D "$_pg_dir/data" \
		    -U postgres -A trust -E UTF8 --locale=C --no-sync \
		    >"$_pg_dir/initdb.log" 2>&1 || {
			echo "pg.sh: initdb failed:" >&2
			tail -n 20 "$_pg_dir/initdb.log" >&2
			return 1
		}
	fi
	_pg_ssl=$(_pg_ssl_setup "$_pg_dir") || return 1
	_pg_as "$_pg_dir" "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -w -t 30 \
	    -l "$_pg_dir/postgres.log" -o "-c listen_addresses=127.0.0.1 \
	    -c port=$_pg_port -c unix_socket_directories=$_pg_dir \
	    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
	    -c max_connections=50 -c shared_buffers=16MB \
	    -c logging_collector=off$_pg_ssl" start >/dev/null 2>&1 || {
		echo "pg.sh: server did not start on port $_pg_port:" >&2
		tail -n 20 "$_pg_dir/postgres.log" >&2
		return 1
	}
}

# PG_SSL_CERT/PG_SSL_KEY: the pair copied into DIR and pg_hba.conf made
# hostssl-only; prints the server options to add (empty without TLS).
_pg_ssl_setup() {
	_pg_hba=$1/data/pg_hba.conf
	if [ -z "${PG_SSL_CERT:-}" ] && [ -z "${PG_SSL_KEY:-}" ]; then
		if [ -f "$_pg_hba.orig" ]; then
			mv -f "$_pg_hba.orig" "$_pg_hba" || return 1
		fi
		return 0
	fi
	if [ ! -r "${PG_SSL_CERT:-}" ] || [ ! -r "${PG_SSL_KEY:-}" ]; then
		echo "pg.sh: PG_SSL_CERT and PG_SSL_KEY must both name" \
		    "readable files" >&2
		return 1
	fi
	cp "$PG_SSL_CERT" "$1/server.crt" &&
	    cp "$PG_SSL_KEY" "$1/server.key" &&
	    chmod 0600 "$1/server.crt" "$1/server.key" || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown "${PG_USER:-postgres}" "$1/server.crt" "$1/server.key" ||
		    return 1
	fi
	if [ ! -f "$_pg_hba.orig" ]; then
		cp -p "$_pg_hba" "$_pg_hba.orig" || return 1
	fi
	printf '%s\n' '# pg.sh: TLS only over TCP' \
	    'local all all trust' \
	    'hostssl all all 127.0.0.1/32 trust' \
	    'hostssl all all ::1/128 trust' >"$_pg_hba" || return 1
	printf ' -c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s' \
	    "$1/server.crt" "$1/server.key"
}

pg_stop() {
	if [ $# -ne 1 ]; then
		echo "usage: pg_stop DIR" >&2
		return 2
	fi
	[ -f "$1/data/postmaster.pid" ] || return 0
	_pg_bin=$(pg_bindir) || return 1
	_pg_as "$1" "$_pg_bin/pg_ctl" -D "$1/data" -m immediate -w -t 30 \
	    stop >/dev/null 2>&1
}

pg_psql() {
	if [ $# -lt 1 ] || [ $# -gt 2 ]; then
		echo "usage: pg_psql PORT [SQL]" >&2
		return 2
	fi
	if [ $# -eq 2 ]; then
		PGCONNECT_TIMEOUT=5 psql -X -q -A -t -v ON_ERROR_STOP=1 \
		    -h 127.0.0.1 -p "$1" -U postgres -d "${PG_DB:-postgres}" \
		    -c "$2"
	else
		PGCONNECT_TIMEOUT=5 psql -X -q -A -t -v ON_ERROR_STOP=1 \
		    -h 127.0.0.1 -p "$1" -U postgres -d "${PG_DB:-postgres}" \
		    -f -
	fi
}

# The pgbouncer binary: PGBOUNCER, else on PATH, else Debian's.
pgb_bin() {
	for _b in "${PGBOUNCER:-}" "$(command -v pgbouncer 2>/dev/null)" \
	    /usr/sbin/pgbouncer; do
		if [ -n "$_b" ] && [ -x "$_b" ]; then
			printf '%s\n' "$_b"
			return 0
		fi
	done
	echo "pg.sh: no pgbouncer (apt-get install pgbouncer)" >&2
	return 1
}

pgb_start() {
	if [ $# -ne 3 ]; then
		echo "usage: pgb_start DIR PORT PGPORT" >&2
		return 2
	fi
	_pgb=$1/pgbouncer
	_pgb_bin=$(pgb_bin) || return 1
	mkdir -p "$_pgb" || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown "${PG_USER:-postgres}" "$_pgb" || return 1
	fi
	printf '"postgres" ""\n' >"$_pgb/userlist.txt" || return 1
	cat >"$_pgb/pgbouncer.ini" <<-EOF || return 1
	[databases]
	* = host=127.0.0.1 port=$3
	[pgbouncer]
	listen_addr = 127.0.0.1
	listen_port = $2
	unix_socket_dir =
	auth_type = trust
	auth_file = $_pgb/userlist.txt
	pool_mode = transaction
	default_pool_size = 4
	max_client_conn = 20
	ignore_startup_parameters = options
	pidfile = $_pgb/pgbouncer.pid
	logfile = $_pgb/pgbouncer.log
	EOF
	_pg_as "$_pgb" "$_pgb_bin" -d -q "$_pgb/pgbouncer.ini" || {
		echo "pg.sh: pgbouncer did not start:" >&2
		tail -n 20 "$_pgb/pgbouncer.log" >&2
		return 1
	}
	_pgb_n=0
	until PGCONNECT_TIMEOUT=2 psql -X -q -A -t -h 127.0.0.1 -p "$2" \
	    -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; do
		_pgb_n=$((_pgb_n + 1))
		if [ "$_pgb_n" -ge 100 ]; then
			echo "pg.sh: pgbouncer does not answer on $2" >&2
			return 1
		fi
		sleep 0.1
	done
}

pgb_stop() {
	if [ $# -ne 1 ]; then
		echo "usage: pgb_stop DIR" >&2
		return 2
	fi
	[ -f "$1/pgbouncer/pgbouncer.pid" ] || return 0
	_pgb_pid=$(cat "$1/pgbouncer/pgbouncer.pid") || return 1
	kill -TERM "$_pgb_pid" 2>/dev/null || return 0
	_pgb_n=0
	while kill -0 "$_pgb_pid" 2>/dev/null && [ "$_pgb_n" -lt 20 ]; do
		_pgb_n=$((_pgb_n + 1))
		sleep 0.1
	done
	kill -KILL "$_pgb_pid" 2>/dev/null
	return 0
}

# Run as a command: `sh pg.sh start DIR PORT`.  Sourced, $0 is the
# sourcing shell's (or pg.sh, with its own $1, under sh -c); only a known
# command name in $1 dispatches, so sourcing never runs anything.
case ${0##*/}:${1:-} in
pg.sh:start|pg.sh:stop|pg.sh:psql|pg.sh:pg_start|pg.sh:pg_stop|pg.sh:pg_psql)
	_pg_cmd=${1#pg_}
	shift
	"pg_$_pg_cmd" "$@"
	exit $?
	;;
pg.sh:|pg.sh:-h|pg.sh:--help)
	echo "usage: pg.sh start DIR PORT | stop DIR | psql PORT [SQL]" >&2
	exit 2
	;;
esac
