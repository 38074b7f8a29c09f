#!/usr/bin/env bash
# tests/vm/e2e_nbd_tls.sh [BIN_DIR] - the NBD export over TLS with the kernel's own
# client (Debian's nbd-client, GnuTLS, which forces TLS 1.2), run as root in the VM
# guest:
#
#   CARGO_TARGET_DIR=/tmp/target-nbd cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/nbd-bin && cp /tmp/target-nbd/release/{ublk-snapd,snapctl} /tmp/nbd-bin/
#   bash tests/vm/run.sh tests/vm/e2e_nbd_tls.sh /run/host/tmp/nbd-bin
#
# Needs nbd-client and certtool (gnutls-bin) on the host, and the guest kernel's nbd
# module.
#
# 1. Certificates by certtool: a CA, the server's (localhost, 127.0.0.1), a client
#    certificate (client1.test) and one of another CA.
# 2. The daemon with TCP on 127.0.0.1, TLS required, mutual TLS, allow-list
#    client1.test. Without --nbd-listen-insecure and without TLS it refuses to start.
# 3. ext4 written on the origin, snapshot s1 exported: nbd-client attaches it over
#    TLS with the client certificate as /dev/nbd0; its files' sha256 equal the
#    origin's; a writable export s2 takes fio --verify over TLS.
# 4. Refused: nbd-client without TLS (the server requires it), with another CA's
#    certificate; neither attaches.
# 5. Clean shutdown, offline check clean, no panic in the log.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/nbd-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-nbd-tls}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
PKI=$W/pki
PORT=10809
LOG=$OUT/ublk-snapd-nbd-tls.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v nbd-client >/dev/null || fail "nbd-client is not installed (apt-get install nbd-client)"
command -v certtool >/dev/null || fail "certtool is not installed (apt-get install gnutls-bin)"
modprobe nbd nbds_max=4 || fail "modprobe nbd"
rm -rf "$W"
mkdir -p "$W" "$OUT" "$W/mnt" "$PKI"
: >"$LOG"

step "1. certificates"
key() { certtool --generate-privkey --key-type=rsa --bits=2048 --no-text --outfile "$1" 2>/dev/null; }
ca() { # ca NAME
    key "$PKI/$1-key.pem"
    printf 'cn = "%s"\nca\ncert_signing_key\nexpiration_days = 2\n' "$1" >"$PKI/$1.info"
    certtool --generate-self-signed --load-privkey "$PKI/$1-key.pem" --template "$PKI/$1.info" \
        --outfile "$PKI/$1-cert.pem" 2>/dev/null
}
leaf() { # leaf NAME CA TEMPLATE-LINES
    key "$PKI/$1-key.pem"
    printf 'cn = "%s"\nexpiration_days = 2\nsigning_key\nencryption_key\n%b' "$1" "$3" >"$PKI/$1.info"
    certtool --generate-certificate --load-privkey "$PKI/$1-key.pem" \
        --load-ca-certificate "$PKI/$2-cert.pem" --load-ca-privkey "$PKI/$2-key.pem" \
        --template "$PKI/$1.info" --outfile "$PKI/$1-cert.pem" 2>/dev/null
}
ca ca
ca rogue-ca
leaf server ca 'dns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\n'
leaf client1 ca 'dns_name = "client1.test"\ntls_www_client\n'
leaf rogue rogue-ca 'dns_name = "client1.test"\ntls_www_client\n'
ok "CA, server, client1 and a rogue CA's client certificate"

step "2. the daemon: TCP requires TLS"
truncate -s 128M "$ORIGIN"
truncate -s 256M "$STORE"
"$SNAPCTL" format --origin "$ORIGIN" --store "$STORE" >/dev/null
rc=0
start_daemon 60 --nbd-listen "127.0.0.1:$PORT" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "TCP without TLS and without --nbd-listen-insecure: exit $rc, want 2"
ok "TCP without TLS refused at start (exit 2)"
ODEV=$(start_daemon 60 --nbd-listen "127.0.0.1:$PORT" \
    --nbd-tls-cert "$PKI/server-cert.pem" --nbd-tls-key "$PKI/server-key.pem" \
    --nbd-tls-client-ca "$PKI/ca-cert.pem" --nbd-tls-allow client1.test)
ok "daemon up with TLS, origin $ODEV"
ctl --json status | jq -e ".nbd.listen | index(\"tls:127.0.0.1:$PORT\") != null" >/dev/null ||
    fail "status listen: $(ctl --json status | jq -c .nbd.listen)"

tls_attach() { # tls_attach EXPORT DEV CERT-NAME
    nbd-client 127.0.0.1 "$PORT" "$2" -N "$1" -cacertfile "$PKI/ca-cert.pem" \
        -certfile "$PKI/$3-cert.pem" -keyfile "$PKI/$3-key.pem" -tlshostname localhost >>"$LOG" 2>&1
}
detach() { nbd-client -d "$1" >>"$LOG" 2>&1 || true; }

step "3. s1 and s2 over TLS through the kernel's client"
mkfs.ext4 -q -F "$ODEV"
mount "$ODEV" "$W/mnt"
for i in 1 2 3; do head -c 4M /dev/urandom >"$W/mnt/f$i"; done
sums "$W/mnt" "$W/s1.sums"
umount "$W/mnt"
ctl create s1 >/dev/null
ctl export s1 | grep -q "nbds://127.0.0.1:$PORT/s1" || fail "export s1 URI: $(ctl export s1)"
tls_attach s1 /dev/nbd0 client1 || fail "nbd-client over TLS"
ok "nbd-client attached s1 over TLS as /dev/nbd0 ($(blockdev --getsize64 /dev/nbd0) bytes)"
mount -o ro,noload /dev/nbd0 "$W/mnt"
sums "$W/mnt" "$W/s1.now"
cmp -s "$W/s1.sums" "$W/s1.now" || fail "s1 over NBD/TLS differs from the origin"
umount "$W/mnt"
ok "s1's files over TLS equal the origin's"
ctl create s2 >/dev/null
ctl export s2 --writable >/dev/null
tls_attach s2 /dev/nbd1 client1 || fail "nbd-client s2 over TLS"
fio --name=tls --filename=/dev/nbd1 --direct=1 --ioengine=psync --size=16M \
    --rw=randwrite --bssplit=4k/50:64k/50 --verify=crc32c --verify_fatal=1 \
    --randseed=22 --end_fsync=1 >"$W/fio-tls.log" 2>&1 || { tail -n 20 "$W/fio-tls.log"; fail "fio over TLS"; }
ok "fio randwrite + verify over TLS"
detach /dev/nbd0
detach /dev/nbd1

step "4. refused: no TLS, another CA's certificate"
if nbd-client 127.0.0.1 "$PORT" /dev/nbd2 -N s1 >>"$LOG" 2>&1; then
    detach /dev/nbd2
    fail "nbd-client without TLS attached"
fi
ok "nbd-client without TLS refused"
if tls_attach s1 /dev/nbd2 rogue; then
    detach /dev/nbd2
    fail "a rogue CA's certificate attached"
fi
ok "another CA's certificate refused"

step "5. clean shutdown, offline check"
ctl unexport s1 >/dev/null
ctl unexport s2 >/dev/null
pid=$(daemon_pid)
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && fail "daemon still running after SIGTERM"
"$SNAPCTL" check --store "$STORE" >/dev/null || fail "offline check"
ok "offline check clean"
if grep -q panicked "$LOG"; then fail "the daemon panicked"; fi
step "e2e_nbd_tls: all passed"
