#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with the RADOS Gateway for the S3 backend tests: one monitor,
# one memstore OSD (objects in RAM), radosgw on 127.0.0.1 speaking path-style S3 with SigV4, from
# nothing, stopped by PID. Not for data you want to keep.
#
#   Tools/services/ceph.sh install   install ceph-mon ceph-osd radosgw (--no-install-recommends) when missing (root only)
#   Tools/services/ceph.sh start     install when missing, create the cluster, start mon, osd and radosgw, wait until
#                                    S3 answers, create the test user, write $DIR/env and print it
#   Tools/services/ceph.sh stop      stop the daemons by their PIDs and delete $DIR (KEEP=1 keeps it)
#   Tools/services/ceph.sh status    exit 0 when the gateway of $DIR answers
#   Tools/services/ceph.sh check     an S3 round trip with the test credentials (start runs it too): bucket create,
#                                    create-once PUT (If-None-Match: * -> 200, then 412), GET, DELETE; a wrong
#                                    secret must get 403 (SigV4 is enforced)
#
# Environment:
#   CKSTORE_CEPH_DIR       state folder (default ${TMPDIR:-/tmp}/ckstore-ceph-$UID)
#   CKSTORE_S3_PORT        S3 port (default: the first free port from 17480 up)
#   CKSTORE_CEPH_MON_PORT  monitor v1 port, v2 is the next one (default: the first free pair from 16789 up)
#   CKSTORE_CEPH_MEMSTORE_BYTES  OSD capacity in bytes (default 4 GiB; RAM is used only as written)
#
# The env file exports AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (fixed test
# credentials) and AWS_REGION=us-east-1. Exit status: 0 ok, 1 failed, 2 usage, 3 the Ceph packages
# are missing and cannot be installed.
set -euo pipefail

DIR=${CKSTORE_CEPH_DIR:-${TMPDIR:-/tmp}/ckstore-ceph-$(id -u)}
ACCESS_KEY=ckstoretestaccess
SECRET_KEY=ckstoretestsecret0123456789abcdef
ENVFILE=$DIR/env
DAEMONS=(client.rgw.a osd.0 mon.a) # stop order
export CEPH_CONF=$DIR/ceph.conf

say() { echo "ceph.sh: $*"; }
fail() { echo "ceph.sh: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.1f\", $(now)-$1}"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
s3_port() { sed -n 's/^# s3 port //p' "$CEPH_CONF" 2>/dev/null; }
http_up() { # any HTTP status (403 for an anonymous list) means the gateway serves S3
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true)
    [ -n "$code" ] && [ "$code" != 000 ]
}
tail_log() { [ -f "$DIR/log/$1" ] && tail -n 20 "$DIR/log/$1" >&2 || true; }

install() {
    local missing=() b
    for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
        command -v "$b" >/dev/null || missing+=("$b")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "ceph.sh: error: missing ${missing[*]} and this is not root: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw curl" >&2
        return 3
    fi
    local t0 pkgs=(ceph-mon ceph-osd radosgw curl)
    t0=$(now)
    say "installing ${pkgs[*]} (apt-get, --no-install-recommends)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; }; }; then
        echo "ceph.sh: error: apt-get install ${pkgs[*]} failed" >&2
        return 3
    fi
    for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
        command -v "$b" >/dev/null || { echo "ceph.sh: error: $b missing after install" >&2; return 3; }
    done
    say "installed in $(since "$t0")s"
}

# Stops one daemon by its PID file: SIGTERM, up to 20 s, then SIGKILL of that PID only.
stop_daemon() {
    local file=$DIR/run/$1.pid pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "ceph.sh: $1 (pid $pid) did not stop; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $1 (pid $pid)"
    fi
    rm -f "$file"
}

start() {
    install || exit $?
    local t0 fsid uuid s3 mon i
    t0=$(now)
    if [ -e "$DIR/ceph.conf" ]; then
        if http_up "$(s3_port)"; then fail "already running ($DIR); stop it first"; fi
        stop >/dev/null
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"/{run,log,crash,mon.a,osd.0,rgw.a}
    chmod 700 "$DIR"

    s3=${CKSTORE_S3_PORT:-}
    if [ -z "$s3" ]; then
        s3=17480
        while listening "$s3"; do s3=$((s3 + 1)); done
    elif listening "$s3"; then
        fail "port $s3 on 127.0.0.1 is already in use"
    fi
    mon=${CKSTORE_CEPH_MON_PORT:-}
    if [ -z "$mon" ]; then
        mon=16789
        while listening "$mon" || listening $((mon + 1)); do mon=$((mon + 2)); done
    elif listening "$mon" || listening $((mon + 1)); then
        fail "port $mon or $((mon + 1)) on 127.0.0.1 is already in use"
    fi

    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$CEPH_CONF" <<CONF
# s3 port $s3
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$((mon + 1)),v1:127.0.0.1:$mon]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
crash dir = $DIR/crash
mon cluster log file = $DIR/log/\$cluster.\$channel.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = $DIR/mon.\$id
[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = ${CKSTORE_CEPH_MEMSTORE_BYTES:-4294967296}
osd memory target = 939524096
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$s3
rgw data = $DIR/rgw.a
CONF

    # Keys and the monitor map; the monitor and the OSD are made by their own --mkfs.
    (
        cd "$DIR" &&
            ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' &&
            ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' &&
            ceph-authtool keyring --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' &&
            ceph-authtool keyring --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' &&
            monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$((mon + 1)),v1:127.0.0.1:$mon]" monmap &&
            ceph-mon --mkfs -i a --monmap monmap --keyring keyring
    ) >"$DIR/log/setup.log" 2>&1 || { cat "$DIR/log/setup.log" >&2; fail "cannot create the monitor"; }

    ceph-mon -i a # daemonizes; PID in run/mon.a.pid
    timeout 30 ceph -s >/dev/null 2>&1 || { tail_log mon.a.log; fail "the monitor did not come up"; }
    local t_mon; t_mon=$(since "$t0")

    uuid=$(cat /proc/sys/kernel/random/uuid)
    ceph osd new "$uuid" >/dev/null 2>>"$DIR/log/setup.log" || fail "ceph osd new failed"
    ceph-osd -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/setup.log" 2>&1 || { tail_log setup.log; fail "cannot create the OSD"; }
    ceph-osd -i 0 2>>"$DIR/log/setup.log"
    for i in $(seq 1 120); do ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break; sleep 0.5; done
    ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' || { tail_log osd.0.log; fail "the OSD did not come up"; }
    local t_osd; t_osd=$(since "$t0")

    radosgw -n client.rgw.a 2>>"$DIR/log/setup.log" # creates its pools on first start
    for i in $(seq 1 600); do http_up "$s3" && break; sleep 0.2; done
    http_up "$s3" || { tail_log client.rgw.a.log; fail "radosgw does not answer on 127.0.0.1:$s3"; }
    local t_rgw; t_rgw=$(since "$t0")
    radosgw-admin user create --uid=ckstore --display-name=ckstore --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
        >"$DIR/log/user.json" 2>>"$DIR/log/setup.log" || { tail_log setup.log; fail "cannot create the S3 user"; }

    cat >"$ENVFILE" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
ENV
    chmod 600 "$ENVFILE"
    check >/dev/null
    say "Ceph $(ceph-mon --version | awk '{print $3}') RADOS Gateway ready on 127.0.0.1:$s3 in $(since "$t0")s" \
        "(mon ${t_mon}s, osd ${t_osd}s, rgw ${t_rgw}s; $DIR)"
    cat "$ENVFILE"
}

# S3 round trip with curl's SigV4 signer (RGW wants x-amz-content-sha256 on every request).
check() {
    [ -s "$ENVFILE" ] || fail "no $ENVFILE: not started"
    local endpoint bucket code body
    endpoint=$(sed -n 's/^export AWS_ENDPOINT_URL=//p' "$ENVFILE")
    bucket=ckstore-check-$(date +%s)-$$
    s3() { # $1 = secret, then curl arguments; prints the HTTP status
        local secret=$1; shift
        curl -s -o "$DIR/check.out" -w '%{http_code}' -m 20 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$secret" \
            -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
    }
    code=$(s3 "$SECRET_KEY" -X PUT "$endpoint/$bucket") && [ "$code" = 200 ] || fail "check: create bucket: HTTP $code"
    code=$(s3 "$SECRET_KEY" -X PUT -H 'If-None-Match: *' --data-binary ckstore "$endpoint/$bucket/k") && [ "$code" = 200 ] ||
        fail "check: first create-once PUT: HTTP $code"
    code=$(s3 "$SECRET_KEY" -X PUT -H 'If-None-Match: *' --data-binary other "$endpoint/$bucket/k") && [ "$code" = 412 ] ||
        fail "check: second create-once PUT: HTTP $code, expected 412"
    code=$(s3 "$SECRET_KEY" "$endpoint/$bucket/k") && [ "$code" = 200 ] || fail "check: GET: HTTP $code"
    body=$(cat "$DIR/check.out")
    [ "$body" = ckstore ] || fail "check: GET returned '$body'"
    code=$(s3 wrong-secret "$endpoint/$bucket/k") && [ "$code" = 403 ] || fail "check: a wrong secret got HTTP $code, expected 403"
    code=$(s3 "$SECRET_KEY" -X DELETE "$endpoint/$bucket/k") && [ "$code" = 204 ] || fail "check: DELETE object: HTTP $code"
    code=$(s3 "$SECRET_KEY" -X DELETE "$endpoint/$bucket") && [ "$code" = 204 ] || fail "check: DELETE bucket: HTTP $code"
    rm -f "$DIR/check.out"
    say "check passed (SigV4 enforced, If-None-Match: * honoured)"
}

stop() {
    local d
    for d in "${DAEMONS[@]}"; do stop_daemon "$d"; done
    [ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
}

status() {
    local port; port=$(s3_port)
    if [ -n "$port" ] && http_up "$port"; then
        say "S3 answering on 127.0.0.1:$port ($DIR)"
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
check) check ;;
*) echo "usage: $0 install|start|stop|status|check" >&2; exit 2 ;;
esac
