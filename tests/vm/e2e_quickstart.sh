#!/usr/bin/env bash
# tests/vm/e2e_quickstart.sh — the README's one command (scripts/quickstart.sh) works
# on a ublk kernel: it starts the daemon on fresh file-backed defaults and prints the
# device; the device takes a filesystem; snapctl talks to the daemon; SIGTERM stops it.
# Run on the host with: bash tests/vm/run.sh tests/vm/e2e_quickstart.sh
set -euo pipefail
export UBLK_SNAP_DIR=/tmp/qs ORIGIN_SIZE=128M STORE_SIZE=256M QUICKSTART_NO_BUILD=1
# (built on the host by run-all.sh: cargo must not run in the emulated guest)
out=$(bash scripts/quickstart.sh)
echo "$out"
dev=$(sed -n 's/^ublk-snapd is serving the origin as \(\/dev\/ublkb[0-9]*\).*/\1/p' <<<"$out")
[ -b "$dev" ] || { echo "FAIL: no device in the quickstart output"; exit 1; }
ctl() { target/release/snapctl "$@"; }
mkfs.ext4 -q "$dev"
mkdir -p /mnt/qs && mount "$dev" /mnt/qs && echo hello >/mnt/qs/file && sync && umount /mnt/qs
ctl create first
snap=$(ctl activate first)
[ -b "$snap" ] || { echo "FAIL: activate printed $snap"; exit 1; }
mount -o ro "$snap" /mnt/qs && grep -q hello /mnt/qs/file && umount /mnt/qs
ctl deactivate first
pid=$(ctl --json status | jq -r .pid)
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
! kill -0 "$pid" 2>/dev/null || { echo "FAIL: daemon still running after SIGTERM"; exit 1; }
[ ! -b "$dev" ] || { echo "FAIL: $dev still exists after shutdown"; exit 1; }
echo "e2e_quickstart: ok"
