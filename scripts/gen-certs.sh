#!/bin/bash
# Generates jobworker's development PKI and the certificate fixtures the tests rely on.
#
# Usage: scripts/gen-certs.sh [DIR]
#   DIR defaults to the repository's certs/ directory (found from this script's own path, so the
#   script works from any cwd); a DIR given on the command line is relative to the cwd.
#
# Every run regenerates everything (new keys, new CA), so certificates from an earlier run stop
# verifying against the new ca.crt. Keys are EC P-256 (fast to make) and mode 0600.
#
# Made (X.crt always comes with X.key, except ca-style pairs noted):
#   ca             "jobworker dev CA", the CA the server and clients trust
#   server         CN=localhost, SAN DNS:localhost + IP:127.0.0.1, EKU serverAuth
#   admin          CN=alice, OU=admin, EKU clientAuth           -> role admin
#   viewer         CN=bob, OU=viewer, EKU clientAuth            -> role viewer
#   admin2         CN=oscar, OU=admin, EKU clientAuth           -> role admin (a second owner)
#   untrusted-ca   a second CA nobody trusts
#   untrusted      CN=mallory, OU=admin, signed by untrusted-ca -> TLS handshake refused
#   expired        CN=dave, OU=admin, valid 2020-01-01..2021-01-01 only
#   notyet         CN=erin, OU=admin, valid 2090-01-01..2091-01-01 only
#   noou           CN=carol, no OU                              -> role none ("no OU")
#   twoou          CN=frank, OU=admin and OU=viewer             -> role none (conflicting)
#   caseou         CN=grace, OU=Admin                           -> role none (unknown OU)
#   spaceou        CN=heidi, OU=" admin"                        -> role none (unknown OU)
#   serveronly     CN=ivan, OU=admin, EKU serverAuth only       -> refused as a client
#   selfsigned     CN=eve, OU=admin, self-signed                -> TLS handshake refused
#   issuerou-ca    intermediate CA "CN=jobworker OU CA, OU=admin", signed by ca
#   issuerou       CN=judy, no OU, signed by issuerou-ca; issuerou-chain.crt = leaf + issuerou-ca
#                  (present that as the client certificate): OU=admin only in the issuer -> none
#   revoked        CN=kate, OU=admin, EKU clientAuth, signed by ca  -> refused with --crl crl.pem
#   crl.pem        a CRL of ca (valid 10 years) that revokes revoked.crt and nothing else
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/../certs}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Keys (and every other file) are created private; certificates are opened up at the end.
umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gen-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

DAYS=825      # leaf lifetime: the longest that TLS clients commonly still accept
CA_DAYS=3650

# One private config, so the result does not depend on the host's /etc/ssl/openssl.cnf. The
# [ca_db] part is a throwaway `openssl ca` database: Debian's openssl 3.0 `x509 -req` cannot set
# explicit validity dates (-not_before arrived in 3.4), `openssl ca -startdate/-enddate` can.
cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = req_dn
[req_dn]

[ca]
default_ca = ca_db
[ca_db]
database = $tmp/index.txt
serial = $tmp/serial
crlnumber = $tmp/crlnumber
new_certs_dir = $tmp
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[policy_any]
commonName = optional

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_sub_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[crl_ext]
authorityKeyIdentifier = keyid:always
[client_selfsigned]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
EOF
: >"$tmp/index.txt"
echo 01 >"$tmp/serial"
echo 01 >"$tmp/crlnumber"

ossl() { openssl "$@" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }; }

newkey() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key"; }

# mkca NAME SUBJECT EXT: a self-signed certificate over a new key.
mkca() {
    newkey "$1"
    ossl req -x509 -new -config "$tmp/openssl.cnf" -key "$dir/$1.key" -subj "$2" \
        -days "$CA_DAYS" -extensions "$3" -sha256 -out "$dir/$1.crt"
}

# leaf NAME SUBJECT EXT ISSUER [NOT_BEFORE NOT_AFTER]: a new key and a certificate for SUBJECT
# (kept byte for byte as written: no DN policy, no reordering) signed by ISSUER.{crt,key}.
leaf() {
    local name=$1 subj=$2 ext=$3 issuer=$4
    newkey "$name"
    ossl req -new -config "$tmp/openssl.cnf" -key "$dir/$name.key" -subj "$subj" -out "$tmp/$name.csr"
    if [ $# -ge 6 ]; then
        ossl ca -batch -notext -preserveDN -config "$tmp/openssl.cnf" -cert "$dir/$issuer.crt" \
            -keyfile "$dir/$issuer.key" -startdate "$5" -enddate "$6" -extfile "$tmp/openssl.cnf" \
            -extensions "$ext" -in "$tmp/$name.csr" -out "$dir/$name.crt"
    else
        ossl x509 -req -in "$tmp/$name.csr" -CA "$dir/$issuer.crt" -CAkey "$dir/$issuer.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 \
            -extfile "$tmp/openssl.cnf" -extensions "$ext" -out "$dir/$name.crt"
    fi
}

say() { printf 'gen-certs: %s  %s\n' "$dir/$1" "$2"; }

mkca ca "/CN=jobworker dev CA" v3_ca
say "ca.{crt,key}" "CA 'jobworker dev CA'"
leaf server "/CN=localhost" server ca
say "server.{crt,key}" "CN=localhost SAN DNS:localhost,IP:127.0.0.1 serverAuth"
leaf admin "/OU=admin/CN=alice" client ca
say "admin.{crt,key}" "CN=alice OU=admin clientAuth"
leaf viewer "/OU=viewer/CN=bob" client ca
say "viewer.{crt,key}" "CN=bob OU=viewer clientAuth"
leaf admin2 "/OU=admin/CN=oscar" client ca
say "admin2.{crt,key}" "CN=oscar OU=admin clientAuth"

mkca untrusted-ca "/CN=jobworker untrusted CA" v3_ca
say "untrusted-ca.{crt,key}" "CA 'jobworker untrusted CA' (trusted by nobody)"
leaf untrusted "/OU=admin/CN=mallory" client untrusted-ca
say "untrusted.{crt,key}" "CN=mallory OU=admin, signed by the untrusted CA"
leaf expired "/OU=admin/CN=dave" client ca 20200101000000Z 20210101000000Z
say "expired.{crt,key}" "CN=dave OU=admin, valid 2020-01-01..2021-01-01"
leaf notyet "/OU=admin/CN=erin" client ca 20900101000000Z 20910101000000Z
say "notyet.{crt,key}" "CN=erin OU=admin, valid 2090-01-01..2091-01-01"
leaf noou "/CN=carol" client ca
say "noou.{crt,key}" "CN=carol, no OU"
leaf twoou "/OU=admin/OU=viewer/CN=frank" client ca
say "twoou.{crt,key}" "CN=frank OU=admin OU=viewer"
leaf caseou "/OU=Admin/CN=grace" client ca
say "caseou.{crt,key}" "CN=grace OU=Admin"
leaf spaceou "/OU= admin/CN=heidi" client ca
say "spaceou.{crt,key}" "CN=heidi OU=' admin'"
leaf serveronly "/OU=admin/CN=ivan" server ca
say "serveronly.{crt,key}" "CN=ivan OU=admin, serverAuth only"

newkey selfsigned
ossl req -x509 -new -config "$tmp/openssl.cnf" -key "$dir/selfsigned.key" -subj "/OU=admin/CN=eve" \
    -days "$DAYS" -extensions client_selfsigned -sha256 -out "$dir/selfsigned.crt"
say "selfsigned.{crt,key}" "CN=eve OU=admin, self-signed"

leaf issuerou-ca "/OU=admin/CN=jobworker OU CA" v3_sub_ca ca
say "issuerou-ca.{crt,key}" "intermediate CA with OU=admin, signed by ca"
leaf issuerou "/CN=judy" client issuerou-ca
cat "$dir/issuerou.crt" "$dir/issuerou-ca.crt" >"$dir/issuerou-chain.crt"
say "issuerou{,-chain}.crt, issuerou.key" "CN=judy, no OU, issuer has OU=admin"

# The revoked certificate goes through the throwaway `openssl ca` database, where `-revoke` marks
# it; -gencrl then lists every revoked entry of that database, which is exactly this one.
leaf revoked "/OU=admin/CN=kate" client ca
ossl ca -batch -config "$tmp/openssl.cnf" -cert "$dir/ca.crt" -keyfile "$dir/ca.key" \
    -revoke "$dir/revoked.crt" -crl_reason keyCompromise
ossl ca -batch -config "$tmp/openssl.cnf" -cert "$dir/ca.crt" -keyfile "$dir/ca.key" -gencrl \
    -crldays "$CA_DAYS" -crlexts crl_ext -md sha256 -out "$dir/crl.pem"
say "revoked.{crt,key}" "CN=kate OU=admin clientAuth, revoked"
say "crl.pem" "CRL of 'jobworker dev CA' revoking revoked.crt"

chmod 0644 "$dir"/*.crt "$dir/crl.pem"
chmod 0600 "$dir"/*.key
