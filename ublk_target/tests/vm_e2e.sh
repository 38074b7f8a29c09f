#!/usr/bin/env bash
# ublk_target/tests/vm_e2e.sh [TEST_BINARY] - run the e2e.rs tests in the VM.
#
# Host:  CARGO_TARGET_DIR=/tmp/target-ublk cargo test -p ublk_target --test e2e --no-run
#        bash tests/vm/run.sh ublk_target/tests/vm_e2e.sh
# The newest e2e test binary under /tmp/target-ublk (seen by the guest under
# /run/host/tmp) runs unless one is named.
set -euo pipefail
bin=${1:-$(ls -t /run/host/tmp/target-ublk/debug/deps/e2e-* 2>/dev/null | grep -v '\.d$' | head -n 1)}
[ -x "$bin" ] || { echo "e2e test binary not found (build it with cargo test --no-run)"; exit 1; }
echo "running $bin"
out=$("$bin" --test-threads=1 --nocapture 2>&1) || { printf '%s\n' "$out"; exit 1; }
printf '%s\n' "$out"
if grep -q '^SKIP' <<<"$out"; then
    echo "vm_e2e: tests skipped inside the VM"
    exit 1
fi
