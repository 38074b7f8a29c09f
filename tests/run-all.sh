#!/usr/bin/env bash
# tests/run-all.sh — the whole test suite: the in-process tests of every crate, then
# the kernel tests in a QEMU guest (tests/vm/run.sh). This is the README's test
# command; .ci/run installs what it needs and calls it.
#
#   bash tests/run-all.sh            # everything
#   SKIP_VM=1 bash tests/run-all.sh  # in-process tests only (prints that the VM part
#                                    # was skipped and exits non-zero if CI=true)
#
# Exit status: 0 when every part passed. The last line reads "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export CARGO_TERM_COLOR=never
passed=0
failed=0
failures=()

part() { # part NAME COMMAND...
    local name=$1; shift
    echo "=== $name: $*"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); echo "=== $name: passed ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

# 0. Lints: formatting, clippy, rustdoc links, the layout guards.
part "fmt" cargo fmt --all -- --check
part "clippy" cargo clippy --workspace --all-targets -- -D warnings
part "rustdoc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
# The daemon crate's layers (docs/architecture.md): the wire a leaf, nothing low
# naming the service or the daemon, every impl Service in src/service/.
part "layout guards" bash tests/layout-guards.sh
part "layout guards can fail" bash tests/layout-guards.sh --self-test

# 1. In-process: every crate, unit + integration + doc tests.
part "cargo test" cargo test --workspace

# 2. Fuzzing: every on-disk decoder and the control protocol parser, bounded time.
if [ "${SKIP_FUZZ:-0}" = 1 ]; then
    echo "=== fuzz SKIPPED (SKIP_FUZZ=1)"
else
    part "fuzz" bash tests/fuzz.sh
fi

# 2b. Ceph: a throw-away cluster on loopback, rbd import-diff/export-diff against our
# daemon (in-process, no ublk). Prints SKIP (and passes, except under CI) without Ceph.
part "ceph cluster" bash tests/ceph/run.sh

# 3. Kernel: build the real binaries once, then boot a guest per script.
if [ "${SKIP_VM:-0}" = 1 ]; then
    echo "=== VM tests SKIPPED (SKIP_VM=1)"
    [ "${CI:-}" = true ] && { echo "CI must not skip the VM tests"; failed=$((failed + 1)); }
else
    part "build binaries" cargo build --release --workspace --bins --examples
    part "build ublk_target e2e" cargo test --release -p ublk_target --test e2e --no-run
    e2e_bin=$(ls -t "$repo"/target/release/deps/e2e-* 2>/dev/null | grep -v '\.d$' | head -n 1)
    export VM_OUT=${VM_OUT:-$repo/target/vm-out}
    mkdir -p "$VM_OUT"
    # the guest runs copies, so that nothing on the host can relink them mid-run
    bindir="$VM_OUT/bin"
    mkdir -p "$bindir"
    cp target/release/ublk-snapd target/release/snapctl "$bindir/" || { echo "binaries missing"; failed=$((failed + 1)); }
    # The kernel matrix (tests/vm/README.md): every VM part on each kernel.
    for k in ${VM_KERNELS:-6.12 7.x}; do
        export VM_KERNEL=$k
        part "vm[$k]: smoke" bash tests/vm/run.sh tests/vm/smoke.sh
        part "vm[$k]: ublk_target memdisk" bash tests/vm/run.sh ublk_target/tests/vm_memdisk.sh "$repo/target/release/examples/memdisk"
        part "vm[$k]: ublk_target e2e" bash tests/vm/run.sh ublk_target/tests/vm_e2e.sh "$e2e_bin"
        part "vm[$k]: driver features" bash tests/vm/run.sh tests/vm/e2e_features.sh "$bindir"
        part "vm[$k]: daemon e2e" env VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_daemon.sh "$bindir"
        part "vm[$k]: merge e2e" env VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_merge.sh "$bindir"
        part "vm[$k]: space policy e2e" bash tests/vm/run.sh tests/vm/e2e_space.sh "$bindir"
        part "vm[$k]: full-store soak" bash tests/vm/run.sh tests/vm/soak_full.sh "$bindir"
        part "vm[$k]: NBD e2e" bash tests/vm/run.sh tests/vm/e2e_nbd.sh "$bindir"
        part "vm[$k]: NBD over TLS e2e" bash tests/vm/run.sh tests/vm/e2e_nbd_tls.sh "$bindir"
        part "vm[$k]: pool e2e" bash tests/vm/run.sh tests/vm/e2e_pool.sh "$bindir"
        part "vm[$k]: memory pressure e2e" env VM_MEM=384M bash tests/vm/run.sh tests/vm/e2e_pressure.sh "$bindir"
        part "vm[$k]: grow-store e2e" env VM_MEM=2G bash tests/vm/run.sh tests/vm/e2e_grow.sh "$bindir"
        part "vm[$k]: resize-origin e2e" env VM_MEM=2G bash tests/vm/run.sh tests/vm/e2e_resize.sh "$bindir"
        part "vm[$k]: replication e2e" env VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_replication.sh "$bindir"
        part "vm[$k]: README quick start" bash tests/vm/run.sh tests/vm/e2e_quickstart.sh
    done
    unset VM_KERNEL
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed parts: ${failures[*]}"
echo "suite: $passed passed, $failed failed"
[ "$failed" = 0 ]
