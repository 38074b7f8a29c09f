#!/usr/bin/env bash
# tests/layout-guards.sh [SRC_DIR] — keep the daemon crate's layers apart
# (docs/architecture.md, "The daemon crate"). Fails, naming the offending lines, if
#   1. anything under src/protocol names `crate::` (the wire is a leaf);
#   2. anything under src/protocol, src/client, src/ublk, src/nbd, src/offline.rs or
#      src/inspect.rs names the service or the daemon (`crate::service`,
#      `super::daemon`, a `service::`/`daemon::` path, or either in a grouped `use`);
#   3. an `impl Service` (inherent or of a trait) lives outside src/service/.
# Comments count too: a doc link up the layers is a dependency a reader follows.
#
#   bash tests/layout-guards.sh              # the repository's src/
#   bash tests/layout-guards.sh --self-test  # each guard fails on a planted breach
set -uo pipefail
cd "$(dirname "$0")/.."

# guards SRC: run the three guards on SRC; returns the number that failed.
guards() {
    local src=$1 failed=0 hits
    hits=$(grep -rn 'crate::' "$src/protocol" 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "layout guard 1 FAILED: $src/protocol must not name crate:: (the wire is a leaf):"
        echo "$hits"
        failed=$((failed + 1))
    fi
    local low=("$src/protocol" "$src/client" "$src/ublk" "$src/nbd" "$src/offline.rs" "$src/inspect.rs" "$src/names.rs")
    hits=$(grep -rnE '\b(service|daemon)::|(crate|super)::\{[^;]*\b(service|daemon)\b|^\s*(service|daemon)\s*[,}]' "${low[@]}" 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "layout guard 2 FAILED: protocol, client, ublk, nbd, offline and inspect must not name the service or the daemon:"
        echo "$hits"
        failed=$((failed + 1))
    fi
    hits=$(grep -rnE '^\s*impl\b[^{;]*\bService\s*(\{|$|where)' "$src" | grep -v "^$src/service/")
    if [ -n "$hits" ]; then
        echo "layout guard 3 FAILED: every impl Service lives under $src/service/:"
        echo "$hits"
        failed=$((failed + 1))
    fi
    return "$failed"
}

if [ "${1:-}" = --self-test ]; then
    # Plant one breach per guard in a copy of src/ and check that the guard meant
    # to catch it fails (and that the clean copy passes).
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    ok=1
    plant() { # plant N FILE LINE: copy src/, append LINE to FILE, expect guard N to fail
        rm -rf "$work/src"
        cp -r src "$work/src"
        echo "$3" >>"$work/src/$2"
        local out
        out=$(guards "$work/src")
        if grep -q "^layout guard $1 FAILED" <<<"$out"; then
            echo "self-test: guard $1 fails on: $3 (in $2)"
        else
            echo "self-test: guard $1 did NOT fail on: $3 (in $2)"; ok=0
        fi
    }
    cp -r src "$work/src"
    guards "$work/src" >/dev/null || { echo "self-test: the clean copy fails"; ok=0; }
    plant 1 protocol/op.rs 'use crate::Error;'
    plant 2 offline.rs 'use crate::service::Service;'
    plant 2 nbd/server.rs 'use super::super::daemon::serve;'
    plant 2 client/mod.rs 'use crate::{protocol, service::Config};'
    plant 2 ublk/mod.rs '    daemon,'
    plant 3 lock.rs 'impl Service {'
    plant 3 ublk/target.rs 'impl std::fmt::Display for crate::service::Service {'
    [ "$ok" = 1 ] && echo "self-test: every guard can fail" && exit 0
    exit 1
fi

guards "${1:-src}" && echo "layout guards: clean"
