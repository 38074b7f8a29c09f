#!/usr/bin/env bash
# tests/vm/setup.sh - prepare everything the ublk test VM needs.
#
# Idempotent; run as root on Debian bookworm.  It
#   1. adds the bookworm-backports apt suite if it is missing,
#   2. installs QEMU (from backports), fio, e2fsprogs, kmod, busybox-static,
#      cpio, xz-utils and libclang-dev (and, for the VM benchmark, dmsetup,
#      thin-provisioning-tools, jq and python3),
#   3. for each kernel of the matrix (VM_KERNELS, default "6.12 7.x"): downloads
#      the newest linux-image-6.12.*+deb12-amd64 from backports, or the newest
#      linux-image-7.*+deb14-amd64 (with linux-binary- and linux-modules-) from
#      Debian sid through a separate apt configuration in $VM_CACHE/apt-sid (the
#      host stays bookworm), unpacks it (no install) into
#      $VM_CACHE/kernel-<ver>, then runs depmod,
#   4. builds $VM_CACHE/initramfs-<ver>.cpio.gz for each: static busybox, the
#      modules needed to mount the host root over virtio-9p with an overlay,
#      ublk_drv, and the init script tests/vm/guest-init.sh.
#
# Environment:
#   VM_CACHE        cache directory (default: <repo>/.vm-cache, git-ignored)
#   VM_KERNELS      kernels to set up: 6.12, 7.x or exact versions such as
#                   7.2.13+deb14-amd64 (default "6.12 7.x")
#   VM_KERNEL_PKG   force a specific 6.12 kernel package name (older knob)
#   VM_SID_MIRROR   Debian mirror for sid (default http://deb.debian.org/debian)
#   VM_FORCE=1      re-download the kernels and rebuild the initramfs
#
# On success $VM_CACHE/ready-<series> and ready-<ver> name the kernel version,
# image, initramfs and modules of each; $VM_CACHE/ready is the 6.12 one (the
# layout before the matrix, still read by older run.sh).
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
# 2. kernels: one per entry of VM_KERNELS, each unpacked beside the others
# ---------------------------------------------------------------------------
# 6.12: the newest linux-image-6.12.*+deb12-amd64 from bookworm-backports (the
# host's apt).  7.x: the newest linux-image-7.*+deb14-amd64 from Debian sid,
# through an apt configuration of its own under $cache/apt-sid (its sources
# list, lists and package cache live there), so the host's apt never sees sid
# and stays bookworm.  Its image is split into linux-image (a metapackage),
# linux-binary (usr/lib/modules/<ver>/vmlinuz) and linux-modules (the .ko
# files under usr/lib/modules, no modules.dep): all three are unpacked.
mkdir -p "$cache"
sid_apt=$cache/apt-sid
sid_opts=(
    -o "Dir::Etc::SourceList=$sid_apt/sources.list" -o "Dir::Etc::SourceParts=$sid_apt/empty"
    -o "Dir::State::Lists=$sid_apt/lists" -o "Dir::Cache=$sid_apt/cache"
    -o "Dir::Etc::Preferences=$sid_apt/empty/preferences" -o "Dir::Etc::PreferencesParts=$sid_apt/empty"
    -o APT::Sandbox::User=root -o Acquire::Languages=none
)
sid_apt_ready=0
sid_update() {
    [ "$sid_apt_ready" = 1 ] && return 0
    mkdir -p "$sid_apt/lists/partial" "$sid_apt/cache/archives/partial" "$sid_apt/empty"
    local uri=${VM_SID_MIRROR:-http://deb.debian.org/debian}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" \
        >"$sid_apt/sources.list"
    # Fresh lists at most once a day (the newest 7.x moves; CI gets a fresh cache).
    if [ "${VM_FORCE:-0}" = 1 ] || [ -z "$(find "$sid_apt/lists" -maxdepth 1 -name '*sid*Packages*' -mtime -1 2>/dev/null)" ]; then
        log "apt-get update (sid, own configuration in $sid_apt)"
        apt-get "${sid_opts[@]}" update -q >&2
    fi
    sid_apt_ready=1
}
# series_of VERSION-OR-SERIES -> 6.12 | 7.x
series_of() {
    case "$1" in
        6.12|6.12.*) echo 6.12 ;;
        7.x|7.*) echo 7.x ;;
        *) die "unknown kernel '$1' (6.12, 7.x or an exact version such as 6.12.38+deb12-amd64)" ;;
    esac
}
# pick_kver SERIES -> the newest version (e.g. 7.2.13+deb14-amd64) in that series.
# Signed, generic amd64 flavour only (no -rt, -cloud, -dbg, -unsigned).
pick_kver() {
    case "$1" in
        6.12) apt-cache pkgnames linux-image-6.12. \
                | grep -E '^linux-image-6\.12\.[0-9]+\+(deb12|bpo)(\.[0-9]+)?-amd64$' ;;
        7.x) apt-cache "${sid_opts[@]}" pkgnames linux-image-7. \
                | grep -E '^linux-image-7\.[0-9]+\.[0-9]+\+deb[0-9]+(\.[0-9]+)?-amd64$' ;;
    esac | sed 's/^linux-image-//' | sort -V | tail -n1
}

# build_initramfs KVER KROOT INITRD: static busybox, the modules of
# initrd_modules with their dependencies (decompressed), tests/vm/guest-init.sh.
build_initramfs() {
    local kver=$1 kroot=$2 initrd=$3 work n deps kind path name dst m
    log "building initramfs for $kver"
    rm -rf "$cache"/initramfs.??????     # left by a failed build (run.sh holds a lock)
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
    local -A seen=()
    for m in "${initrd_modules[@]}"; do
        if ! deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null); then
            # 7.x packages ship no modules.builtin: a module with no .ko is built in
            # (virtio_pci there); a missing one that matters fails the boot clearly.
            if [ -z "$(find -L "$kroot/lib/modules/$kver" -name "$m.ko*" -print -quit)" ]; then
                log "$m: no module in $kver, assumed built in"
                continue
            fi
            die "modprobe cannot resolve module $m for $kver"
        fi
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
}

# setup_kernel SERIES [KVER]: fetch, unpack, depmod, initramfs; write
# $cache/ready-KVER (and ready-SERIES when KVER was not forced).
setup_kernel() {
    local series=$1 kver=${2:-} forced=${2:+1} kroot vmlinuz initrd moddir deb p old
    [ "$series" = 7.x ] && sid_update
    if [ -z "$kver" ] && [ "$series" = 6.12 ] && [ -n "${VM_KERNEL_PKG:-}" ]; then
        kver=${VM_KERNEL_PKG#linux-image-}; forced=1     # the old knob, 6.12 only
    fi
    [ -n "$kver" ] || kver=$(pick_kver "$series")
    [ -n "$kver" ] || die "no $series kernel package found in apt lists (is $( [ "$series" = 7.x ] && echo sid || echo bookworm-backports ) reachable?)"
    kroot=$cache/kernel-$kver            # unpacked package tree(s)
    initrd=$cache/initramfs-$kver.cpio.gz
    if [ "$series" = 6.12 ]; then
        vmlinuz=$kroot/boot/vmlinuz-$kver
        moddir=$kroot/lib/modules/$kver
    else
        vmlinuz=$kroot/usr/lib/modules/$kver/vmlinuz
        moddir=$kroot/usr/lib/modules/$kver
    fi
    if [ "${VM_FORCE:-0}" = 1 ] || [ ! -s "$vmlinuz" ] || [ ! -s "$moddir/modules.dep" ]; then
        log "fetching kernel $kver"
        rm -rf "$kroot" "$kroot.tmp" "$cache/deb-$kver"
        mkdir -p "$cache/deb-$kver"
        # (as root: the _apt sandbox user may not be able to write the cache dir)
        if [ "$series" = 6.12 ]; then
            (cd "$cache/deb-$kver" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$kver")
        else
            (cd "$cache/deb-$kver" && apt-get "${sid_opts[@]}" download -q \
                "linux-image-$kver" "linux-binary-$kver" "linux-modules-$kver")
        fi
        for deb in "$cache/deb-$kver"/*.deb; do
            dpkg-deb -x "$deb" "$kroot.tmp"
        done
        [ -s "${vmlinuz/$kroot/$kroot.tmp}" ] || die "the $kver packages contain no ${vmlinuz#"$kroot"/}"
        if [ "$series" = 7.x ]; then
            # The host's depmod/modprobe (bookworm kmod) look under lib/modules.
            mkdir -p "$kroot.tmp/lib"
            ln -sfn ../usr/lib/modules "$kroot.tmp/lib/modules"
        fi
        depmod -b "$kroot.tmp" "$kver"
        mv "$kroot.tmp" "$kroot"
        rm -rf "$cache/deb-$kver"
        # Older kernels of the same series from a previous run are no longer needed.
        if [ -z "$forced" ]; then
            for old in "$cache"/kernel-*; do
                [ "$old" = "$kroot" ] && continue
                p=${old#"$cache"/kernel-}
                [ "$(series_of "$p" 2>/dev/null)" = "$series" ] || continue
                log "removing the older $series kernel $p"
                rm -rf "$old" "$cache/initramfs-$p.cpio.gz" "$cache/ready-$p"
            done
        fi
        rm -f "$initrd"
    fi
    if [ "${VM_FORCE:-0}" = 1 ] || [ ! -s "$initrd" ] || [ "$here/guest-init.sh" -nt "$initrd" ] \
            || [ "$here/setup.sh" -nt "$initrd" ]; then
        build_initramfs "$kver" "$kroot" "$initrd"
    fi
    # Record what run.sh should boot.
    cat >"$cache/ready-$kver.tmp" <<EOF
KVER=$kver
KSERIES=$series
VMLINUZ=$vmlinuz
INITRD=$initrd
MODDIR=$moddir
EOF
    mv "$cache/ready-$kver.tmp" "$cache/ready-$kver"
    if [ -z "$forced" ]; then
        cp "$cache/ready-$kver" "$cache/ready-$series.tmp"
        mv "$cache/ready-$series.tmp" "$cache/ready-$series"
        # $cache/ready: the 6.12 kernel, as before the matrix (older run.sh read it).
        if [ "$series" = 6.12 ]; then
            cp "$cache/ready-$kver" "$cache/ready.tmp"
            mv "$cache/ready.tmp" "$cache/ready"
        fi
    fi
    log "ready: kernel $kver ($series)"
}

for k in ${VM_KERNELS:-6.12 7.x}; do
    case "$k" in
        6.12|7.x) setup_kernel "$k" ;;
        *) setup_kernel "$(series_of "$k")" "$k" ;;
    esac
done
