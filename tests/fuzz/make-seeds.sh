#!/bin/bash
# Regenerates the seed corpora of tests/fuzz/corpus/: the synthetic seeds (make-seeds.py) and the
# certificate seeds of auth_pem (PEM) and auth_der (DER), taken from a fresh scripts/gen-certs.sh
# run. Only certificates are copied, never a key; the script checks that. Files libFuzzer found
# and someone committed (hash names) are left alone. Run from anywhere; `make fuzz-seeds` runs it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
corpus=$here/corpus

python3 "$here/make-seeds.py" "$corpus"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$repo/scripts/gen-certs.sh" "$tmp/certs" >/dev/null
pem=$corpus/auth_pem der=$corpus/auth_der
mkdir -p "$pem" "$der"
rm -f "$pem"/cert-* "$der"/cert-*
n=0
for crt in "$tmp"/certs/*.crt; do
    name=cert-$(basename "$crt" .crt)
    if grep -q "PRIVATE KEY" "$crt"; then
        echo "make-seeds: $crt holds a private key, not copied" >&2
        exit 1
    fi
    cp "$crt" "$pem/$name.pem"
    openssl x509 -in "$crt" -outform DER -out "$der/$name.der"
    n=$((n + 1))
done

# Self-signed certificates with subjects gen-certs.sh does not make: control characters and
# UTF-8 in the CN, a multi-valued RDN, three OUs, BMPString values, a 64-byte CN, no subject.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/k.pem" 2>/dev/null
odd() { # odd NAME [openssl req options...]
    local name=$1
    shift
    openssl req -new -x509 -key "$tmp/k.pem" -days 1 -out "$tmp/$name.crt" "$@" 2>/dev/null ||
        { echo "make-seeds: could not make $name" >&2; exit 1; }
    cp "$tmp/$name.crt" "$pem/odd-$name.pem"
    openssl x509 -in "$tmp/$name.crt" -outform DER -out "$der/odd-$name.der"
}
printf '[req]\ndistinguished_name = dn\nstring_mask = MASK:0x800\n[dn]\n' >"$tmp/bmp.cnf"
printf '[req]\ndistinguished_name = dn\n[dn]\n' >"$tmp/plain.cnf"
odd cn-controls -config "$tmp/plain.cnf" -subj $'/CN=ev\x1b[31mil\r\nname\x7f/OU=admin'
odd cn-utf8 -config "$tmp/plain.cnf" -utf8 -subj $'/CN=Jos\xc3\xa9 \xe2\x80\xae\xc2\x85/OU=viewer'
odd multivalue-rdn -config "$tmp/plain.cnf" -multivalue-rdn -subj '/CN=kim+OU=admin'
odd three-ou -config "$tmp/plain.cnf" -subj '/CN=lee/OU=admin/OU=admin/OU=viewer'
odd bmp-admin -config "$tmp/bmp.cnf" -subj '/CN=mia/OU=admin'
odd long-cn -config "$tmp/plain.cnf" -subj "/CN=$(printf 'x%.0s' $(seq 64))/OU=admin"
odd no-subject -config "$tmp/plain.cnf" -subj '/'

# Malformed PEM around a real certificate.
admin=$tmp/certs/admin.crt
head -c 300 "$admin" >"$pem/bad-truncated.pem"
sed '1d' "$admin" >"$pem/bad-no-begin.pem"
sed 's/CERTIFICATE/X509 CRL/' "$admin" >"$pem/bad-wrong-label.pem"
sed '3s/./*/' "$admin" >"$pem/bad-base64.pem"
{ printf 'junk before\n'; cat "$admin"; } >"$pem/junk-before.pem"
cat "$tmp/certs/viewer.crt" "$admin" >"$pem/two-certs.pem"
printf -- '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n' >"$pem/bad-empty-body.pem"
# Truncated and padded DER.
head -c 200 "$der/cert-admin.der" >"$der/bad-truncated.der"
{ cat "$der/cert-admin.der"; printf 'trailing'; } >"$der/trailing-bytes.der"

if grep -rl "PRIVATE KEY" "$pem" "$der" >/dev/null; then
    echo "make-seeds: a private key ended up in the corpus" >&2
    exit 1
fi
echo "make-seeds: $n certificates as PEM and DER seeds"
