#!/usr/bin/env bash
# tests/ceph/run.sh — Ceph interop against a real cluster: starts a throw-away
# single-host cluster on loopback (tests/ceph/cluster.sh: one mon, one mgr, one
# memstore OSD, auth none, all state in a temp dir, every daemon killed on exit),
# makes an `rbd` pool of size 1, then runs tests/ceph_cluster.rs (our rbd diffs
# through `rbd import-diff`, `rbd export-diff` through `snapctl receive`; in-process
# daemons, no ublk) against it.
#
#   bash tests/ceph/run.sh     # from the repository; needs ceph-mon ceph-osd ceph-mgr
#                              # ceph-common (apt-get install ...)
#
# Prints "ceph: SKIP (why)" and exits 0 when a Ceph binary is missing (exit 1 under
# CI=true, which installs them); "ceph: FAIL (why)" with the cluster's log tail and
# exit 1 when the cluster does not come up or the test fails; "ceph: PASS" otherwise.
set -uo pipefail
cd "${0%/*}/../.." || exit 1
repo=$(pwd)
export CARGO_TERM_COLOR=never

skip() {
    echo "ceph: SKIP ($*)"
    [ "${CI:-}" = true ] && { echo "ceph: CI must not skip this test"; exit 1; }
    exit 0
}
for b in ceph-mon ceph-osd ceph-mgr ceph rbd monmaptool timeout python3 sha256sum; do
    command -v "$b" >/dev/null ||
        skip "no \`$b\`: apt-get install ceph-mon ceph-osd ceph-mgr ceph-common"
done

t0=$SECONDS
cargo build -q -p tools --bin snapctl || { echo "ceph: FAIL (building snapctl)"; exit 1; }
test_bin=$(cargo test -p ublk-snapd --test ceph_cluster --no-run 2>&1 |
    sed -n 's/.*Executable tests\/ceph_cluster.rs (\(.*\))/\1/p')
[ -x "$repo/$test_bin" ] || { echo "ceph: FAIL (building tests/ceph_cluster.rs)"; exit 1; }
echo "ceph: built in $((SECONDS - t0)) s"

source tests/ceph/cluster.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ublk-snap-ceph.XXXXXX")
cleanup() { ceph_stop; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "ceph: FAIL ($*)"
    ceph_log_tail "${CEPH_LOG_LINES:-25}"
    exit 1
}

t1=$SECONDS
ceph_start "$tmp/ceph" || fail "the cluster did not come up"
echo "ceph: cluster up in $((SECONDS - t1)) s ($CEPH_CONF)"
cephq osd pool create rbd 8 8 >/dev/null || fail "osd pool create rbd"
cephq osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null || fail "pool size 1"
cephq osd pool set rbd min_size 1 >/dev/null || fail "pool min_size 1"
timeout 60 rbd pool init rbd || fail "rbd pool init"
wait_for "$CEPH_WAIT" "the rbd pool's placement groups active+clean" pgs_clean ||
    fail "placement groups"

t2=$SECONDS
CEPH_POOL=rbd SNAPCTL="$repo/target/debug/snapctl" \
    timeout "${CEPH_TEST_TIMEOUT:-600}" "$repo/$test_bin" --ignored --nocapture --test-threads 1 ||
    fail "tests/ceph_cluster.rs"
echo "ceph: PASS (test $((SECONDS - t2)) s, cluster + test $((SECONDS - t1)) s, total $((SECONDS - t0)) s)"
