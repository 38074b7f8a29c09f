#!/usr/bin/env bash
# tests/vm/setup.sh - prepare everything the ublk test VM needs.
#
# Idempotent; run as root on Debian bookworm.  It
#   1. adds the bookworm-backports apt suite if it is missing,
#   2. installs QEMU (from backports), fio, e2fsprogs, kmod, busybox-static,
#      cpio, xz-utils and libclang-dev (and, for the VM benchmark, dmsetup,
#      thin-provisioning-tools, jq and python3),
#   3. downloads the newest linux-image-6.12.*+deb12-amd64 from backports
#      and unpacks it (no install) into $VM_CACHE/kernel, then runs depmod,
#   4. builds $VM_CACHE/initramfs.cpio.gz: static busybox, the modules needed
#      to mount the host root over virtio-9p with an overlay, ublk_drv, and
#      the init script tests/vm/guest-init.sh.
#
# Environment:
#   VM_CACHE        cache directory (default: <repo>/.vm-cache, git-ignored)
#   VM_KERNEL_PKG   force a specific kernel package name
#   VM_FORCE=1      re-download the kernel and rebuild the initramfs
#
# On success $VM_CACHE/ready names the kernel version, image and initramfs.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VM_CACHE:-$repo/.vm-cache}

log() { printf '[vm-setup] %s\n' "$*" >&2; }
die() { printf '[vm-setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, depmod)"
export DEBIAN_FRONTEND=noninteractive

# Modules loaded by the initramfs, in this order (dependencies are resolved
# with modprobe --show-depends, built-in ones are skipped).
# 9p + overlay: mount the host root; ublk_drv: the point of the exercise.
# virtio_pci / virtio_blk are built into Debian's kernel but listed anyway
# so that a modular build still works.
initrd_modules=(virtio_pci netfs 9pnet 9pnet_virtio 9p overlay ublk_drv)

# ---------------------------------------------------------------------------
# 1. apt: bookworm-backports
# ---------------------------------------------------------------------------
have_backports() {
    # The first grep fails on unmatched globs (and may get SIGPIPE).
    { grep -hs -v '^[[:space:]]*#' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources || true; } | grep -q 'bookworm-backports'
}
add_backports() {
    # Copy URIs/Components/Signed-By from the stanza that has the plain
    # "bookworm" suite (deb822 format), falling back to Debian defaults.
    local uris="" comps="" signed=""
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        eval "$(awk '
            function flush() {
                if (!done && suites ~ /(^| )bookworm( |$)/) {
                    printf "uris=\"%s\"; comps=\"%s\"; signed=\"%s\"\n", uris, comps, signed
                    done = 1
                }
                uris = comps = signed = suites = ""
            }
            /^[ \t]*$/          { flush(); next }
            /^URIs:/            { sub(/^URIs:[ \t]*/, "");       uris = $0 }
            /^Suites:/          { sub(/^Suites:[ \t]*/, "");     suites = $0 }
            /^Components:/      { sub(/^Components:[ \t]*/, ""); comps = $0 }
            /^Signed-By:/       { sub(/^Signed-By:[ \t]*/, "");  signed = $0 }
            END                 { flush() }' "$f")"
        [ -n "$uris" ] && break
    done
    uris=${uris:-http://deb.debian.org/debian}
    comps=${comps:-main}
    signed=${signed:-/usr/share/keyrings/debian-archive-keyring.gpg}
    log "adding bookworm-backports ($uris)"
    cat >/etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: $uris
Suites: bookworm-backports
Components: $comps
Signed-By: $signed
EOF
}

# Packages from the regular suites, and those we want from backports.
pkgs=(fio e2fsprogs kmod busybox-static cpio xz-utils zstd libclang-dev ca-certificates)
# The VM benchmark (benches/vm/run.sh, tests/vm/bench_fio.sh): device-mapper stacks,
# dm-thin's metadata tools, and jq/python3 to read fio's output.
pkgs+=(dmsetup thin-provisioning-tools jq python3)
bpo_pkgs=(qemu-system-x86)

need_update=0
if ! have_backports; then
    add_backports
    need_update=1
fi
missing=()
for p in "${pkgs[@]}" "${bpo_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The kernel lookup below needs fresh backports lists as well.
if ! compgen -G '/var/lib/apt/lists/*bookworm-backports*Packages*' >/dev/null; then
    need_update=1
fi
if [ "$need_update" = 1 ] || [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get update"
    apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${pkgs[@]}"
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${bpo_pkgs[@]}"
fi
for t in qemu-system-x86_64 depmod modprobe cpio busybox fio mkfs.ext4; do
    command -v "$t" >/dev/null || [ -x "/bin/$t" ] || [ -x "/sbin/$t" ] || die "$t missing after install"
done

# ---------------------------------------------------------------------------
# 2. kernel: newest linux-image-6.12.*+deb12-amd64 from bookworm-backports
# ---------------------------------------------------------------------------
mkdir -p "$cache"
pick_kernel_pkg() {
    # Signed, generic amd64 flavour only (no -rt, -cloud, -dbg, -unsigned).
    apt-cache pkgnames linux-image-6.12. \
        | grep -E '^linux-image-6\.12\.[0-9]+\+(deb12|bpo)(\.[0-9]+)?-amd64$' \
        | sort -V | tail -n1
}
kpkg=${VM_KERNEL_PKG:-$(pick_kernel_pkg)}
[ -n "$kpkg" ] || die "no linux-image-6.12.*-amd64 package found in apt lists (is bookworm-backports configured?)"
kver=${kpkg#linux-image-}            # e.g. 6.12.38+deb12-amd64
kroot=$cache/kernel-$kver            # unpacked package tree
vmlinuz=$kroot/boot/vmlinuz-$kver
initrd=$cache/initramfs-$kver.cpio.gz

if [ "${VM_FORCE:-0}" = 1 ] || [ ! -s "$vmlinuz" ] || [ ! -s "$kroot/lib/modules/$kver/modules.dep" ]; then
    log "fetching $kpkg"
    rm -rf "$kroot" "$cache/deb"
    mkdir -p "$cache/deb"
    # (as root: the _apt sandbox user may not be able to write the cache dir)
    (cd "$cache/deb" && apt-get download -q -o APT::Sandbox::User=root "$kpkg")
    deb=$(ls "$cache/deb"/*.deb)
    dpkg-deb -x "$deb" "$kroot.tmp"
    # The signed package may be a thin wrapper depending on the real image
    # package; follow it if there is no vmlinuz inside.
    if [ ! -e "$kroot.tmp/boot/vmlinuz-$kver" ]; then
        die "$deb contains no boot/vmlinuz-$kver"
    fi
    depmod -b "$kroot.tmp" "$kver"
    mv "$kroot.tmp" "$kroot"
    rm -rf "$cache/deb"
    # Older kernels from a previous run are no longer needed.
    for old in "$cache"/kernel-*; do
        [ "$old" = "$kroot" ] || rm -rf "$old"
    done
    rm -f "$initrd"
fi

# ---------------------------------------------------------------------------
# 3. initramfs
# ---------------------------------------------------------------------------
if [ "${VM_FORCE:-0}" = 1 ] || [ ! -s "$initrd" ] || [ "$here/guest-init.sh" -nt "$initrd" ] \
        || [ "$here/setup.sh" -nt "$initrd" ]; then
    log "building initramfs for $kver"
    work=$(mktemp -d "$cache/initramfs.XXXXXX")
    mkdir -p "$work"/{bin,dev,proc,sys,newroot,lower,rw,modules}
    cp /bin/busybox "$work/bin/busybox"
    case "$(ldd "$work/bin/busybox" 2>&1 || true)" in
        *"not a dynamic executable"*) ;;
        *) die "/bin/busybox is not static (install busybox-static)" ;;
    esac
    # Resolve module dependencies against the guest kernel's modules.dep.
    # Output lines are "insmod /path/x.ko.xz" or "builtin x".
    n=0
    declare -A seen=()
    for m in "${initrd_modules[@]}"; do
        deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m") \
            || die "modprobe cannot resolve module $m for $kver"
        while read -r kind path; do
            [ "$kind" = insmod ] || continue
            [ -z "${seen[$path]:-}" ] || continue
            seen[$path]=1
            n=$((n + 1))
            name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
            dst=$work/modules/$(printf '%02d' "$n")-$name
            # busybox insmod cannot load compressed modules: decompress here.
            case "$path" in
                *.xz)  xz -dc "$path" >"$dst" ;;
                *.zst) zstd -qdc "$path" >"$dst" ;;
                *.gz)  gzip -dc "$path" >"$dst" ;;
                *)     cp "$path" "$dst" ;;
            esac
        done <<<"$deps"
    done
    log "initramfs modules: $(cd "$work/modules" && echo *)"
    install -m 0755 "$here/guest-init.sh" "$work/init"
    (cd "$work" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$work"
fi

# Record what run.sh should boot.
cat >"$cache/ready.tmp" <<EOF
KVER=$kver
VMLINUZ=$vmlinuz
INITRD=$initrd
MODDIR=$kroot/lib/modules/$kver
EOF
mv "$cache/ready.tmp" "$cache/ready"
log "ready: kernel $kver"
