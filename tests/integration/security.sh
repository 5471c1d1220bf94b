# shellcheck shell=bash
# Certificates and the TLS front door (sourced by run.sh): CRL checks, SIGHUP reload of
# certificate, key, CA and CRL, clientAuth usage, non-TLS and old-TLS clients, idle connections.
# Runs its own server on copies of the TLS files, so that tests can change them.

SEC="$T/sec"
mkdir -p "$SEC/crl.d"
cp "$CERTS/server.crt" "$CERTS/server.key" "$CERTS/ca.crt" "$SEC/"
# The CRL directory in OpenSSL's c_rehash layout: the CRL, a hash link to it (the same CRL
# twice must count once) and a CA certificate (certificates may share the directory).
cp "$CERTS/crl.pem" "$SEC/crl.d/crl.pem"
ln -s crl.pem "$SEC/crl.d/$(openssl crl -in "$CERTS/crl.pem" -noout -hash).r0"
cp "$CERTS/ca.crt" "$SEC/crl.d/ca.pem"

# make_crl OUT [CERT-NAME...]: a CRL of the test CA that revokes the named certificates of
# $CERTS, through a throwaway `openssl ca` database. Written to OUT.tmp and renamed, as an
# operator's tooling would.
make_crl() {
    local out=$1 db
    shift
    db=$(mktemp -d "$SEC/cadb.XXXXXX")
    : >"$db/index.txt"
    echo 01 >"$db/crlnumber"
    printf '[ca]\ndefault_ca = db\n[db]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\n' \
        "$db" "$db" >"$db/cnf"
    for who in "$@"; do
        openssl ca -batch -config "$db/cnf" -cert "$CERTS/ca.crt" -keyfile "$CERTS/ca.key" \
            -revoke "$CERTS/$who.crt" >/dev/null 2>&1 || { echo "revoke $who failed" >&2; return 1; }
    done
    openssl ca -batch -config "$db/cnf" -cert "$CERTS/ca.crt" -keyfile "$CERTS/ca.key" -gencrl \
        -crldays 30 -out "$out.tmp" >/dev/null 2>&1 || { echo "gencrl failed" >&2; return 1; }
    mv "$out.tmp" "$out"
    rm -rf "$db"
}

# leaf_cert NAME SUBJECT EXTENSIONS [SERIAL]: a new key and a certificate signed by the test CA
# in $SEC (NAME.crt, NAME.key). EXTENSIONS is an openssl extension config body.
leaf_cert() {
    local name=$1 subj=$2 ext=$3 serial=${4:-0x$(openssl rand -hex 8)}
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$SEC/$name.key" 2>/dev/null &&
        openssl req -new -key "$SEC/$name.key" -subj "$subj" -out "$SEC/$name.csr" 2>/dev/null &&
        printf '%s\n' "$ext" >"$SEC/$name.ext" &&
        openssl x509 -req -in "$SEC/$name.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
            -set_serial "$serial" -days 30 -sha256 -extfile "$SEC/$name.ext" \
            -out "$SEC/$name.crt" 2>/dev/null
}

# The first RPC of a refused certificate fails UNAVAILABLE (TLS 1.3: the client's handshake
# completes before the server rejects its certificate).
refused() {
    local out
    out=$(jc_as "$@" list 2>&1) && { echo "$1 was served" >&2; return 1; }
    expect_contains "$out" UNAVAILABLE "($1)"
}

# wait_refused WHO / wait_served WHO: a reload reaches gRPC at its next poll of the stage (1 s).
wait_refused() {
    for _ in $(seq 50); do
        jc_as "$1" list >/dev/null 2>&1 || { refused "$1"; return; }
        sleep 0.1
    done
    echo "$1 still served 5 s after the reload" >&2
    return 1
}
wait_served() {
    for _ in $(seq 50); do
        jc_as "$1" list >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 still refused 5 s after the reload" >&2
    return 1
}

# The serial of the certificate the server presents.
server_serial() {
    openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -servername localhost -alpn h2 \
        -cert "$CERTS/admin.crt" -key "$CERTS/admin.key" -CAfile "$CERTS/ca.crt" </dev/null \
        2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}

count_in_log() { grep -c -- "$1" "$SERVER_LOG"; }

start_server --cert "$SEC/server.crt" --key "$SEC/server.key" --ca "$SEC/ca.crt" \
    --crl "$SEC/crl.d" || exit 1
# In the child processes of check, SERVER_LOG is inherited; the server pid is the keeper's.

# ---- revocation ----

t_crl_revoked() {
    local before
    before=$(audit_lines)
    grep -q "1 CRL(s) from '$SEC/crl.d' revoking 1 certificate(s)" "$SERVER_LOG" ||
        { echo "start-up summary missing" >&2; return 1; }
    refused revoked || return 1
    py cert:revoked || return 1
    expect_eq "$(audit_lines)" "$before" "(audit lines: a handler ran)" || return 1
    # The rest of the CA's certificates are served.
    jc list >/dev/null || return 1
    jc_as viewer list >/dev/null || return 1
    # OpenSSL's reason, in gRPC's log line: 23 is X509_V_ERR_CERT_REVOKED.
    grep -q "Certificate verify failed with code 23" "$SERVER_LOG"
}
check "revoked certificate refused with --crl DIR in the handshake, no handler ran, others served" t_crl_revoked

t_crl_file_and_start_checks() {
    local out port db spid rc saved
    port=$(free_port)
    srv() {
        timeout 10 "$BIN/jobworker-server" --listen "127.0.0.1:$port" --cert "$CERTS/server.crt" \
            --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --data-dir "$SEC/data-start" \
            --no-cgroups "$@" 2>&1
    }
    out=$(srv --crl "$SEC/no-such-crl.pem") && { echo "started with a missing CRL" >&2; return 1; }
    expect_contains "$out" "CRL path '$SEC/no-such-crl.pem': No such file or directory" || return 1
    echo "garbage" >"$SEC/garbage.pem"
    out=$(srv --crl "$SEC/garbage.pem") && { echo "started with a garbage CRL" >&2; return 1; }
    expect_contains "$out" "garbage.pem" || return 1
    # In a directory, a file that holds no CRL (here: an empty one) is an error, not "nothing
    # revoked".
    mkdir -p "$SEC/crl.bad"
    cp "$CERTS/crl.pem" "$SEC/crl.bad/"
    : >"$SEC/crl.bad/empty.pem"
    out=$(srv --crl "$SEC/crl.bad") && { echo "started with an empty file among the CRLs" >&2; return 1; }
    expect_contains "$out" "empty.pem" || return 1
    # A CRL past its nextUpdate would make OpenSSL refuse every client of its CA.
    db=$(mktemp -d "$SEC/cadb.XXXXXX")
    : >"$db/index.txt"
    printf '[ca]\ndefault_ca = db\n[db]\ndatabase = %s/index.txt\ndefault_md = sha256\n' "$db" >"$db/cnf"
    openssl ca -batch -config "$db/cnf" -cert "$CERTS/ca.crt" -keyfile "$CERTS/ca.key" -gencrl \
        -crlsec 1 -out "$SEC/expired-crl.pem" >/dev/null 2>&1 || return 1
    sleep 2
    out=$(srv --crl "$SEC/expired-crl.pem") && { echo "started with an expired CRL" >&2; return 1; }
    expect_contains "$out" "expired at" || return 1
    # The CRL of a CA that is not in --ca protects nothing.
    openssl ca -batch -config "$db/cnf" -cert "$CERTS/untrusted-ca.crt" \
        -keyfile "$CERTS/untrusted-ca.key" -gencrl -crldays 30 -out "$SEC/other-ca-crl.pem" \
        >/dev/null 2>&1 || return 1
    out=$(srv --crl "$SEC/other-ca-crl.pem") && { echo "started with another CA's CRL" >&2; return 1; }
    expect_contains "$out" "is not issued by a certificate of the CA file" || return 1
    # A CRL file (rather than a directory) works as well.
    "$BIN/jobworker-server" --listen "127.0.0.1:$port" --cert "$CERTS/server.crt" \
        --key "$CERTS/server.key" --ca "$CERTS/ca.crt" --data-dir "$SEC/data-start" \
        --no-cgroups --crl "$CERTS/crl.pem" >"$SEC/start.out" 2>&1 &
    spid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$SEC/start.out" && break
        sleep 0.05
    done
    saved=$PORT
    PORT=$port
    refused revoked
    rc=$?
    jc list >/dev/null || rc=1
    PORT=$saved
    kill -TERM "$spid"
    wait "$spid" || rc=1
    return $rc
}
check "--crl FILE works; garbage, empty, expired or foreign-CA CRLs refuse to start" t_crl_file_and_start_checks

# ---- SIGHUP ----

t_sighup_new_crl() {
    local id fpid expect ok
    # A job that writes for 6 s, followed from before the reload to its end.
    # shellcheck disable=SC2016 # the loop is the job's shell script
    id=$(jc create sh -c 'i=0; while [ $i -lt 60 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done') || return 1
    wait_status "$id" RUNNING || return 1
    jc stream --follow "$id" >"$SEC/follow.out" 2>"$SEC/follow.err" &
    fpid=$!
    jc_as viewer list >/dev/null || { echo "viewer refused before the reload" >&2; return 1; }
    ok=$(count_in_log "SIGHUP: reloaded the TLS configuration")
    make_crl "$SEC/crl.d/crl.pem" revoked viewer || return 1
    kill -HUP "$SERVER_PID"
    wait_refused viewer || return 1
    expect_eq "$(count_in_log "SIGHUP: reloaded the TLS configuration")" "$((ok + 1))" || return 1
    grep -q "generation 2, .*revoking 2 certificate(s)" "$SERVER_LOG" || return 1
    refused revoked || return 1
    jc list >/dev/null || return 1
    # The follower's connection and the job outlived the reload.
    kill -0 "$fpid" 2>/dev/null || { echo "the follower ended at the reload" >&2; return 1; }
    expect_eq "$(json_field "$(jc -o json get "$id")" status)" RUNNING "(job after the reload)" || return 1
    wait "$fpid" || { echo "follower failed: $(cat "$SEC/follow.err")" >&2; return 1; }
    expect=$(i=0; while [ $i -lt 60 ]; do echo "line $i"; i=$((i+1)); done)
    expect_eq "$(cat "$SEC/follow.out")" "$expect" "(followed output)" || return 1
    wait_status "$id" COMPLETED
}
check "SIGHUP with a new CRL refuses newly revoked certs; running follower and job survive" t_sighup_new_crl

# Puts the good TLS files back (after a test that broke them failed halfway).
restore_tls_files() {
    cp "$CERTS/ca.crt" "$SEC/ca.crt"
    [ -f "$SEC/server.key.good" ] && cp "$SEC/server.key.good" "$SEC/server.key"
    [ -f "$SEC/crl.good" ] && cp "$SEC/crl.good" "$SEC/crl.d/crl.pem"
    return 0
}

t_sighup_bad_files() {
    local failed
    failed=$(count_in_log "TLS reload failed")
    # A half-written CRL: the reload is refused and the CRL in force stays (viewer revoked).
    cp "$SEC/crl.d/crl.pem" "$SEC/crl.good"
    head -c 100 "$SEC/crl.good" >"$SEC/crl.d/crl.pem"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do
        [ "$(count_in_log "TLS reload failed")" -gt "$failed" ] && break
        sleep 0.1
    done
    expect_eq "$(count_in_log "TLS reload failed")" "$((failed + 1))" "(failed reloads)" || return 1
    # (The hash link sorts first; the message names its target too.)
    grep "TLS reload failed" "$SERVER_LOG" | tail -1 | grep -q "crl.d/.* -> crl.pem': CRL 1 does not parse" ||
        { echo "the failure does not name the file" >&2; return 1; }
    sleep 1.5 # a poll of the stage: nothing may have changed
    refused viewer || return 1
    jc list >/dev/null || return 1
    # A key that does not belong to the certificate: refused too, TLS keeps working.
    cp "$SEC/crl.good" "$SEC/crl.d/crl.pem"
    cp "$SEC/server.key" "$SEC/server.key.good"
    cp "$CERTS/admin.key" "$SEC/server.key"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do
        [ "$(count_in_log "TLS reload failed")" -gt "$((failed + 1))" ] && break
        sleep 0.1
    done
    grep "TLS reload failed" "$SERVER_LOG" | tail -1 | grep -q "private key does not belong" ||
        { echo "a mismatched key was not refused" >&2; return 1; }
    # An unreadable CA file.
    mv "$SEC/ca.crt" "$SEC/ca.crt.good"
    cp "$SEC/server.key.good" "$SEC/server.key"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do
        [ "$(count_in_log "TLS reload failed")" -gt "$((failed + 2))" ] && break
        sleep 0.1
    done
    grep "TLS reload failed" "$SERVER_LOG" | tail -1 | grep -q "ca.crt.*No such file" ||
        { echo "a missing CA file was not refused" >&2; return 1; }
    mv "$SEC/ca.crt.good" "$SEC/ca.crt"
    sleep 1.5
    jc list >/dev/null || return 1
    refused viewer || return 1
    kill -0 "$SERVER_PID"
}
check "SIGHUP with a bad CRL, key or CA keeps the previous config and says why; server serves" t_sighup_bad_files

t_sighup_cert_and_ca() {
    local old new
    restore_tls_files
    old=$(server_serial)
    [ -n "$old" ] || { echo "no server certificate seen" >&2; return 1; }
    # A new server key and certificate (same name, new serial).
    leaf_cert server2 "/CN=localhost" "$(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1')" 0x5eed || return 1
    cp "$SEC/server2.crt" "$SEC/server.crt"
    cp "$SEC/server2.key" "$SEC/server.key"
    kill -HUP "$SERVER_PID"
    for _ in $(seq 50); do
        new=$(server_serial)
        [ "$new" = "serial=5EED" ] && break
        sleep 0.1
    done
    expect_eq "$new" "serial=5EED" "(server certificate after the reload; before: $old)" || return 1
    jc list >/dev/null || return 1
    # The CA bundle: adding the untrusted CA lets its certificate (CN=mallory, OU=admin) in...
    refused untrusted || return 1
    cat "$CERTS/ca.crt" "$CERTS/untrusted-ca.crt" >"$SEC/ca.crt"
    kill -HUP "$SERVER_PID"
    wait_served untrusted || return 1
    grep -q 'cn="mallory" role=admin method=GetJobs' "$T/audit.log" || return 1
    # ...and removing it again shuts it out, for new connections.
    cp "$CERTS/ca.crt" "$SEC/ca.crt"
    kill -HUP "$SERVER_PID"
    wait_refused untrusted || return 1
    jc list >/dev/null
}
check "SIGHUP reloads server certificate/key (new serial served) and CA bundle (both ways)" t_sighup_cert_and_ca

# ---- client certificate usage ----

t_client_usage() {
    local before out
    before=$(audit_lines)
    # OU=admin, signed by the CA, but no extendedKeyUsage at all: OpenSSL alone accepts it.
    leaf_cert noeku "/OU=admin/CN=nick" "$(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature')" || return 1
    out=$("$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost --cert "$SEC/noeku.crt" \
        --key "$SEC/noeku.key" --ca "$CERTS/ca.crt" list 2>&1) && { echo "no-EKU cert served" >&2; return 1; }
    expect_contains "$out" UNAVAILABLE || return 1
    grep -q 'refused client certificate cn="nick": certificate has no extendedKeyUsage' "$SERVER_LOG" || return 1
    # serverAuth only: OpenSSL's purpose check refuses it (code 26, X509_V_ERR_INVALID_PURPOSE).
    refused serveronly || return 1
    grep -q "Certificate verify failed with code 26" "$SERVER_LOG" || return 1
    expect_eq "$(audit_lines)" "$before" "(audit lines: a handler ran)" || return 1
    jc list >/dev/null
}
check "client certs without clientAuth EKU (none at all, or serverAuth only) refused, no handler ran" t_client_usage

# ---- not TLS, or not TLS 1.3 ----

t_plaintext() {
    local before out rc
    before=$(audit_lines)
    # HTTP/2 with prior knowledge (what a plaintext gRPC client sends) and HTTP/1.1.
    out=$(curl -sS --max-time 5 --http2-prior-knowledge -H 'content-type: application/grpc' \
        -d '' "http://127.0.0.1:$PORT/jobworker.v1.JobService/GetJobs" 2>&1)
    rc=$?
    [ "$rc" -ne 0 ] || { echo "plaintext HTTP/2 got an answer: $out" >&2; return 1; }
    out=$(curl -sS --max-time 5 --http1.1 "http://127.0.0.1:$PORT/" 2>&1)
    rc=$?
    [ "$rc" -ne 0 ] || { echo "HTTP/1.1 got an answer: $out" >&2; return 1; }
    expect_contains "$out" "Empty reply from server" || return 1
    # The raw HTTP/2 preface: the server closes the connection without a byte of HTTP.
    $PY - "$PORT" <<'EOF' || return 1
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
data = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
except ConnectionResetError:
    pass
if b"HTTP" in data or len(data) > 7:  # at most a TLS alert record
    sys.exit("server answered the HTTP/2 preface with %r" % data[:64])
EOF
    grep -q "wrong version number" "$SERVER_LOG" || return 1
    grep -q "http request" "$SERVER_LOG" || return 1
    expect_eq "$(audit_lines)" "$before" "(audit lines: a handler ran)" || return 1
    jc list >/dev/null
}
check "plaintext HTTP/2 and HTTP/1.1 to the port refused, no handler ran, server healthy" t_plaintext

t_tls11() {
    local out n
    n=$(count_in_log "unsupported protocol")
    # SECLEVEL=0 so that this openssl is willing to offer TLS 1.1 at all.
    out=$(timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' \
        -msg -cert "$CERTS/admin.crt" -key "$CERTS/admin.key" -CAfile "$CERTS/ca.crt" </dev/null 2>&1)
    # It did send a TLS 1.1 ClientHello...
    expect_contains "$out" ">>> TLS 1.1, Handshake" || return 1
    expect_contains "$out" "ClientHello" || return 1
    # ...and no session came of it.
    expect_contains "$out" "Cipher is (NONE)" || return 1
    if echo "$out" | grep -qa "^New, TLSv1"; then
        echo "a session was negotiated" >&2
        return 1
    fi
    expect_eq "$(count_in_log "unsupported protocol")" "$((n + 1))" "(server refusals)" || return 1
    jc list >/dev/null
}
check "TLS 1.1 ClientHello refused (unsupported protocol), server healthy" t_tls11

t_idle_connections() {
    local fds_before fds_after
    # shellcheck disable=SC2012 # counting /proc/PID/fd entries (numeric names)
    fds_before=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    # 200 connections that never send a ClientHello; meanwhile a real client must be served
    # within 2 s, and the server must close every idle one by its 10 s handshake timeout.
    $PY - "$PORT" "$BIN/jobctl" --server "127.0.0.1:$PORT" --server-name localhost \
        --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" --ca "$CERTS/ca.crt" list <<'EOF' || return 1
import select, socket, subprocess, sys, time
port, cmd = int(sys.argv[1]), sys.argv[2:]
t0 = time.monotonic()
socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
opened = time.monotonic() - t0
t1 = time.monotonic()
r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
served = time.monotonic() - t1
if r.returncode != 0 or served > 2.0:
    sys.exit("valid client: rc %d after %.2f s: %s" % (r.returncode, served, r.stderr[-200:]))
open_ = {s.fileno(): s for s in socks}
last = 0.0
while open_ and time.monotonic() - t0 < 20:
    ready, _, _ = select.select(list(open_), [], [], 0.5)
    for fd in ready:
        s = open_.pop(fd)
        try:
            d = s.recv(64)
        except ConnectionResetError:
            d = b""
        if d:
            sys.exit("the server sent %r to a silent client" % d[:16])
        last = time.monotonic() - t0
        s.close()
if open_:
    sys.exit("%d of 200 idle connections still open after 20 s" % len(open_))
print("opened 200 in %.2f s; valid client served in %.2f s; last idle connection closed after %.1f s"
      % (opened, served, last))
if last > 13:
    sys.exit("idle connections were closed only after %.1f s (handshake timeout is 10 s)" % last)
EOF
    jc list >/dev/null || return 1
    sleep 0.5
    # shellcheck disable=SC2012 # counting /proc/PID/fd entries (numeric names)
    fds_after=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    # Every idle connection's descriptor is gone again (a few of gRPC's own may come and go).
    [ "$fds_after" -le "$((fds_before + 5))" ] ||
        { echo "server fds: $fds_before before, $fds_after after" >&2; return 1; }
}
check "200 silent TCP connections: a valid client is served within 2 s, all closed by 10 s handshake timeout" t_idle_connections

stop_server || fail "security server exit" "non-zero exit status"
