#!/usr/bin/env bash
# scripts/quickstart.sh — build ublk-snap, create file-backed defaults, start the
# daemon, and print the device and the next commands to try.
#
#   sudo bash scripts/quickstart.sh            # origin 1 GiB, store 2 GiB (sparse)
#   UBLK_SNAP_DIR=/srv/snap ORIGIN_SIZE=10G STORE_SIZE=20G sudo -E bash scripts/quickstart.sh
#
# Needs root and a kernel with ublk (modprobe ublk_drv). Without one, run the tests in
# the QEMU guest instead: bash tests/run-all.sh (see tests/vm/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${UBLK_SNAP_DIR:-/var/tmp/ublk-snap}
origin_size=${ORIGIN_SIZE:-1G}
store_size=${STORE_SIZE:-2G}
socket=${UBLK_SNAP_SOCKET:-/run/ublk-snap/ublk-snapd.sock}

[ "$(id -u)" = 0 ] || { echo "quickstart: run as root (ublk devices need it)"; exit 1; }
if [ ! -c /dev/ublk-control ]; then
    modprobe ublk_drv 2>/dev/null || true
fi
if [ ! -c /dev/ublk-control ]; then
    echo "quickstart: this kernel has no ublk (/dev/ublk-control missing; modprobe ublk_drv failed)."
    echo "  Use a kernel with CONFIG_BLK_DEV_UBLK, or run the suite in a VM: bash tests/run-all.sh"
    exit 1
fi
if [ "${QUICKSTART_NO_BUILD:-0}" != 1 ]; then
command -v cargo >/dev/null || { echo "quickstart: cargo is required (https://rustup.rs)"; exit 1; }
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
    command -v apt-get >/dev/null && apt-get install -y -q libclang-dev >/dev/null || true
fi
fi

bin=$(pwd)/target/release
if [ "${QUICKSTART_NO_BUILD:-0}" != 1 ]; then  # the VM test runs it on prebuilt binaries
    echo "== building (release)"
    cargo build --release --workspace --bins -q
fi

mkdir -p "$dir"
origin=$dir/origin.img
store=$dir/store.img
if [ ! -e "$store" ]; then
    echo "== creating sparse files in $dir (origin $origin_size, store $store_size)"
    [ -e "$origin" ] || truncate -s "$origin_size" "$origin"
    truncate -s "$store_size" "$store"
    "$bin/snapctl" format --origin "$origin" --store "$store"
fi

echo "== starting ublk-snapd"
dev=$("$bin/ublk-snapd" --origin "$origin" --store "$store" --socket "$socket" 2>>"$dir/ublk-snapd.log")
cat <<TXT

ublk-snapd is serving the origin as $dev (log: $dir/ublk-snapd.log).
Next:
  mkfs.ext4 $dev && mkdir -p /mnt/origin && mount $dev /mnt/origin
  echo hello > /mnt/origin/file; sync
  $bin/snapctl --socket $socket create first          # a snapshot of the origin
  $bin/snapctl --socket $socket activate first        # prints its device, e.g. /dev/ublkb1
  $bin/snapctl --socket $socket list
  $bin/snapctl --socket $socket status
Stop: umount everything, then kill -TERM \$($bin/snapctl --socket $socket --json status | jq .pid)
TXT
