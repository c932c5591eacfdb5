#!/usr/bin/env bash
# A throwaway PostgreSQL server for the backend tests: one cluster from nothing, on 127.0.0.1 only,
# on a private port, stopped by PID. Not for data you want to keep (fsync is off).
#
#   Tools/services/postgres.sh install   install Debian's `postgresql` package when missing (root only)
#   Tools/services/postgres.sh start     install when missing, initdb, start, wait until it answers,
#                                        write $DIR/env and print it
#   Tools/services/postgres.sh stop      stop the server by its PID and delete $DIR (KEEP=1 keeps it)
#   Tools/services/postgres.sh status    exit 0 when the server of $DIR is running
#
# Environment:
#   CKSTORE_PG_DIR   state folder (default ${TMPDIR:-/tmp}/ckstore-pg-$UID): data/, sock/, server.log, env
#   CKSTORE_PG_PORT  TCP port (default: the first free port from 54339 up)
#
# The env file exports CKSTORE_TEST_PG_URL (postgresql://ckstore@127.0.0.1:PORT/ckstore, no password
# in it) and PGPASSWORD, a fixed test password: TCP connections use scram-sha-256, so the tests
# exercise password authentication from the environment. Exit status: 0 ok, 1 failed,
# 2 usage, 3 the server binaries are missing and cannot be installed.
set -euo pipefail

DIR=${CKSTORE_PG_DIR:-${TMPDIR:-/tmp}/ckstore-pg-$(id -u)}
ROLE=ckstore
DATABASE=ckstore
PASSWORD=ckstore-test-password-7f3a
ENVFILE=$DIR/env
PIDFILE=$DIR/data/postmaster.pid

say() { echo "postgres.sh: $*"; }
fail() { echo "postgres.sh: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.1f\", $(now)-$1}"; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
server_pid() { [ -s "$PIDFILE" ] && head -1 "$PIDFILE"; }

install() {
    local bin; bin=$(bindir)
    [ -n "$bin" ] && [ -x "$bin/initdb" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: error: PostgreSQL is not installed and this is not root: apt-get install -y postgresql" >&2
        return 3
    fi
    local t0; t0=$(now)
    say "installing postgresql (apt-get)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; }; }; then
        echo "postgres.sh: error: apt-get install postgresql failed" >&2
        return 3
    fi
    bin=$(bindir)
    [ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "postgres.sh: error: postgresql installed but initdb not found" >&2; return 3; }
    say "installed in $(since "$t0")s"
}

start() {
    install || exit $?
    local bin t0 port as=() owner
    bin=$(bindir)
    t0=$(now)
    if pid=$(server_pid) && kill -0 "$pid" 2>/dev/null; then fail "already running (pid $pid, $DIR); stop it first"; fi
    rm -rf "$DIR"
    mkdir -p "$DIR/sock"
    chmod 700 "$DIR"
    # initdb and postgres refuse to run as root: run them as the `postgres` user the package creates.
    if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); owner=postgres; else owner=$(id -un); fi
    chown "$owner" "$DIR" "$DIR/sock"
    "${as[@]}" test -w "$DIR/sock" || fail "user $owner cannot write $DIR (is a parent folder not searchable by $owner?)"

    port=${CKSTORE_PG_PORT:-}
    if [ -z "$port" ]; then
        port=54339
        while listening "$port"; do port=$((port + 1)); done
    elif listening "$port"; then
        fail "port $port on 127.0.0.1 is already in use"
    fi

    # The superuser is `postgres` (trust on the Unix socket only); the tests connect over TCP as
    # `ckstore` with a password. --no-sync and fsync=off: fast, not crash-safe, fine for tests.
    local pwfile=$DIR/pwfile
    printf '%s\n' "$PASSWORD" >"$pwfile"
    chown "$owner" "$pwfile"
    chmod 600 "$pwfile"
    "${as[@]}" "$bin/initdb" -D "$DIR/data" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; fail "initdb failed"; }
    rm -f "$pwfile"
    "${as[@]}" "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $port -k $DIR/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { tail -20 "$DIR/server.log" >&2; fail "the server did not start"; }
    local i
    for i in $(seq 1 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || fail "the server does not answer on 127.0.0.1:$port"

    # A login role with a password and a database it owns (the superuser stays local-only); it may
    # create databases, so that end-to-end tests can give each test a database of its own.
    "${as[@]}" "$bin/psql" -q -X -v ON_ERROR_STOP=1 -h "$DIR/sock" -p "$port" -U postgres -d postgres >/dev/null <<SQL ||
CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
CREATE DATABASE $DATABASE OWNER $ROLE;
SQL
        fail "cannot create the test role and database"

    cat >"$ENVFILE" <<ENV
export CKSTORE_TEST_PG_URL=postgresql://$ROLE@127.0.0.1:$port/$DATABASE
export PGPASSWORD=$PASSWORD
ENV
    say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port in $(since "$t0")s (pid $(server_pid), $DIR)"
    cat "$ENVFILE"
}

stop() {
    local pid
    if pid=$(server_pid) && kill -0 "$pid" 2>/dev/null; then
        # SIGINT is PostgreSQL's "fast shutdown"; wait up to 20 s, then SIGKILL that PID only.
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "postgres.sh: pid $pid did not stop; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped (pid $pid)"
    else
        say "not running ($DIR)"
    fi
    [ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
}

status() {
    local pid
    if pid=$(server_pid) && kill -0 "$pid" 2>/dev/null; then
        say "running (pid $pid, $DIR)"
        [ -s "$ENVFILE" ] && cat "$ENVFILE"
        return 0
    fi
    say "not running ($DIR)"
    return 1
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
