#!/bin/bash
# gen-certs-fallback.sh DIR: used by run.sh only while scripts/gen-certs.sh does not exist.
# Writes the same set: ca.crt, server.crt/key (SAN localhost, 127.0.0.1; serverAuth),
# admin.crt/key (OU=admin; clientAuth), viewer.crt/key (OU=viewer; clientAuth). EC P-256.
set -euo pipefail
dir=${1:?usage: gen-certs-fallback.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/O=jobworker-vm/CN=jobworker vm test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt

leaf() { # name subject extensions
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 2 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
leaf server "/O=jobworker-vm/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf admin "/O=jobworker-vm/OU=admin/CN=alice" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
leaf viewer "/O=jobworker-vm/OU=viewer/CN=victor" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 600 ./*.key
