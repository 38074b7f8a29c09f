#!/usr/bin/env python3
"""benches/vm/report.py OUT_DIR > docs/benchmarks.md

Turns the results of benches/vm/run.sh (OUT_DIR/bench-RUN.tsv and bench-meta-RUN.tsv,
written by tests/vm/bench_fio.sh in the guest, one pair per guest boot) into the
Markdown report: for every stack, snapshot count, phase and workload the figure (IOPS
for 4 KiB workloads, MB/s for 1 MiB ones) as min-max over the runs, and its ratios to
the ublk ceiling, to the kernel loop device and to dm-thin, each ratio computed inside
one guest run and then given as min-max over the runs; then the issue's targets with a
verdict, and metadata bytes per copied chunk.  benches/vm/analysis.md, if present, is
appended (the hand-written reading of the last full run).

With --section the report is one section of a larger document (docs/benchmarks.md
keeps the 6.12 report and adds the 7.x one below it): its title becomes a "## " heading
naming the guest kernel (from env.txt), every other heading goes one level down, and
analysis.md is not appended (it reads the 6.12 run). Where the results have the
zero-copy stacks (rublk-z, ublk-snap-copy: a kernel whose driver offers auto_buf_reg),
a zero-copy section gives ublk-snap (zero copy) over its copy path and over rublk -z.
A section appends its own reading, benches/vm/analysis-<major>.x.md (analysis-7.x.md
for a 7.x kernel), when there is one.
"""
import collections
import csv
import glob
import os
import sys

out = sys.argv[1]
section = "--section" in sys.argv[2:]
here = os.path.dirname(os.path.abspath(__file__))

# val[run][(system, snaps, phase, workload)] = figure
val = collections.defaultdict(dict)
for path in sorted(glob.glob(os.path.join(out, "bench-[0-9]*.tsv"))):
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            wl = r["workload"]
            fig = float(r["iops"]) if "4k" in wl else float(r["MBps"])
            val[r["run"]][(r["system"], int(r["snaps"]), r["phase"], wl)] = fig
runs = sorted(val, key=int)
meta = []
for path in sorted(glob.glob(os.path.join(out, "bench-meta-*.tsv"))):
    with open(path) as f:
        meta += list(csv.DictReader(f, delimiter="\t"))

WORKLOADS = ["randwrite4k", "randread4k", "seqwrite1M", "seqread1M"]
UNIT = {"randwrite4k": "IOPS", "randread4k": "IOPS", "seqwrite1M": "MB/s", "seqread1M": "MB/s"}
WL_NAME = {"randwrite4k": "4 KiB random write", "randread4k": "4 KiB random read",
           "seqwrite1M": "1 MiB sequential write", "seqread1M": "1 MiB sequential read"}


def ceiling(run, wl):
    """The ublk ceiling: the better of rublk's two copying modes in that run."""
    c = [val[run].get((s, 0, "none", wl)) for s in ("rublk", "rublk-buf")]
    c = [x for x in c if x]
    return max(c) if c else None


def ref(run, key, what):
    sysname, n, phase, wl = key
    if what == "ceil":
        return ceiling(run, wl)
    if what == "loop":
        return val[run].get(("loop", 0, "none", wl))
    if what == "thin":
        return val[run].get(("dm-thin", n, phase, wl))
    if what == "zc":
        return val[run].get(("rublk-z", 0, "none", wl))
    if what == "copy":
        return val[run].get(("ublk-snap-copy", 0, "none", wl))
    raise ValueError(what)


def span(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(lo)
    return fmt.format(lo) + "–" + fmt.format(hi)


def figs(key):
    return [val[r].get(key) for r in runs]


def ratios(key, what):
    xs = []
    for r in runs:
        a, b = val[r].get(key), ref(r, key, what)
        xs.append(a / b if a is not None and b else None)
    return xs


def num_fmt(wl):
    return "{:.0f}" if UNIT[wl] == "IOPS" else "{:.1f}"


# rows in display order
order = []
for s in ("loop", "rublk", "rublk-buf", "rublk-z", "ublk-snap", "ublk-snap-copy", "dm-snap", "dm-thin"):
    order.append((s, 0, "none"))
for phase in ("first", "steady"):
    for s, ns in (("ublk-snap", (1, 16, 256)), ("dm-snap", (1, 16)), ("dm-thin", (1, 16, 256))):
        for n in ns:
            order.append((s, n, phase))
for phase in ("snap-shared", "snap-copied"):
    for s in ("ublk-snap", "dm-thin"):
        order.append((s, 1, phase))
PHASE_NAME = {"none": "no snapshot", "first": "copy-out (first write, chunks shared)",
              "steady": "steady (chunks unshared)", "snap-shared": "snapshot device, chunks shared",
              "snap-copied": "snapshot device, chunks copied"}
READ_ONLY_PHASES = ("snap-shared", "snap-copied")

lines = []


def p(*a):
    lines.append(" ".join(str(x) for x in a))


env = ""
if os.path.exists(os.path.join(out, "env.txt")):
    env = open(os.path.join(out, "env.txt")).read().strip()
# the guest's kernel: recorded by runs since the kernel matrix; the older runs were 6.12
kernel = next((l.split(" ", 2)[2] for l in env.splitlines() if l.startswith("guest kernel ")), None)
gk = os.path.join(out, "guest-kernel.txt")
if os.path.exists(gk):
    kernel = open(gk).read().strip()
kernel_name = f"Debian's {kernel} kernel" if kernel else "Debian's 6.12 kernel"
analysis = os.path.join(here, "analysis.md")
if section and kernel:
    # a section's own reading: analysis-7.x.md for a 7.x kernel, and so on
    analysis = os.path.join(here, f"analysis-{kernel.split('.')[0]}.x.md")

# the raw results this report is made from, as the report-only command names them
results = os.path.relpath(os.path.abspath(out), os.path.join(here, "..", ".."))
p(f"""# VM benchmark: ublk-snap beside the kernel loop device, a plain ublk loop, dm-snapshot and dm-thin

Generated by `benches/vm/report.py` from the results of `benches/vm/run.sh` (issue 5).
Do not edit by hand: the reading of the figures is in `benches/vm/{os.path.basename(analysis)}`, appended
at the end.

**These figures are emulated.** The guest runs under QEMU TCG (no KVM) on a shared
2-core host, so absolute IOPS and MB/s say nothing about real hardware, and memory
copies are relatively expensive (copy-heavy paths look worse than on hardware). Only the
**ratios inside one guest run** mean anything: every ratio below is computed inside one
run (one guest boot) and then shown as min–max over the runs. Each run is a fresh
guest; runs are one after the other, never two guests of this benchmark at once.

## Command

```sh
sudo bash benches/vm/run.sh 2      # 2 runs, each a fresh guest (about 15-20 min each)
BENCH_REPORT_ONLY=""" + results + """ bash benches/vm/run.sh   # report only (raw results of this report)
```

`benches/vm/run.sh` builds `ublk-snapd` and `snapctl` (release) in `/tmp/target-bench`,
installs `rublk` 0.2.15 from crates.io (`cargo install rublk --version 0.2.15
--no-default-features --locked --root /tmp/rublk`), copies the three binaries to
`/tmp/bench-bin`, then runs, once per run:

```sh
VM_MEM=6G VM_TIMEOUT=2400 VM_OUT=target/bench-vm/DATE \\
    bash tests/vm/run.sh tests/vm/bench_fio.sh /run/host/tmp/bench-bin RUN
```

and finally `python3 benches/vm/report.py target/bench-vm/DATE > docs/benchmarks.md`.""")
if env:
    p("\nThis report's runs:\n\n```\n" + env + "\n```")
p(f"\nRuns: {len(runs)}.")
p(f"""
## Method

Everything is in one guest boot per run (`tests/vm/bench_fio.sh`, {kernel_name},
2 vCPUs). The backing files are on a tmpfs in the guest (it has no disk); every stack
gets fresh files of the same size (a 256 MiB device) and is filled first (1 MiB
sequential writes, untimed), then snapshotted N times.

| stack | setup |
|---|---|
| loop | kernel loop device, `--direct-io=on`, over the origin file |
| rublk | `rublk add loop -q 2 -d 64` (rublk 0.2.15: O_DIRECT on the backing file) |
| rublk-buf | the same with `--buffered-io` (ublk-snapd's files are buffered too) |
| ublk-snap | `snapctl format --chunk-size 64K`; `ublk-snapd --queues 2 --queue-depth 64`; `snapctl create` N times |
| dm-snap | `snapshot-origin` over a loop device; N × `snapshot ORIGIN COW P 128` (64 KiB chunks), each COW on its own loop device |
| dm-thin | `thin-pool META DATA 128 0 1 skip_block_zeroing` on loop devices (64 KiB blocks); one thin volume; N × `create_snap` |

fio: `--direct=1 --ioengine=io_uring --iodepth=32 --numjobs=1`, one workload after the
other (`--stonewall`). The **ublk ceiling** is the better of rublk and rublk-buf in the
same run.

- **no snapshot** (N = 0): 4 KiB random write, 4 KiB random read, 1 MiB sequential
  write, 1 MiB sequential read, `BENCH_RUNTIME` (5) seconds each.
- **copy-out** (N ≥ 1, right after the snapshots, every chunk shared): 4 KiB random
  write = one 4 KiB write into each 64 KiB chunk of the first half of the device in a
  shuffled order (a replayed fio iolog, the same on every stack: 2048 writes, each a
  first write to its chunk); 1 MiB sequential write = the second half once (128 MiB);
  then 4 KiB random and 1 MiB sequential reads of the origin, time-based.
- **steady**: after an untimed 1 MiB sequential pass over the whole device (every chunk
  unshared), the four workloads again, time-based.
- **snapshot device** (N = 1, ublk-snap and dm-thin): random and sequential reads of
  the snapshot's device right after it was taken (its chunks are still the origin's)
  and after the origin was rewritten (its chunks were copied out).
""")

for wl in WORKLOADS:
    p(f"## {WL_NAME[wl]} ({UNIT[wl]})\n")
    p(f"| stack | snapshots | phase | {UNIT[wl]} | × ublk ceiling | × kernel loop | × dm-thin (same N, phase) |")
    p("|---|---|---|---|---|---|---|")
    for s, n, phase in order:
        if phase in READ_ONLY_PHASES and "read" not in wl:
            continue
        key = (s, n, phase, wl)
        if not any(v is not None for v in figs(key)):
            continue
        thin = "-" if s == "dm-thin" else span(ratios(key, "thin"), "{:.2f}")
        p(f"| {s} | {n} | {PHASE_NAME[phase]} | {span(figs(key), num_fmt(wl))} | "
          f"{span(ratios(key, 'ceil'), '{:.2f}')} | {span(ratios(key, 'loop'), '{:.2f}')} | {thin} |")
    p()


# ---------------------------------------------------------------- targets
def rel(key_a, key_b):
    xs = []
    for r in runs:
        a, b = val[r].get(key_a), val[r].get(key_b)
        xs.append(a / b if a is not None and b else None)
    return xs


def rel_ceil(key):
    return ratios(key, "ceil")


def verdict(xs, thr):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "not measured"
    if min(xs) >= thr:
        return "**met**"
    if max(xs) < thr:
        return "**missed**"
    return "mixed (runs disagree)"


p("## Targets of issue 5\n")
p("Each ratio is taken inside one run; min–max over the runs. Verdict: met when every")
p("run meets the threshold, missed when none does.\n")
p("| target | workload | ratio (min–max) | threshold | verdict |")
p("|---|---|---|---|---|")
for wl in WORKLOADS:
    xs = rel_ceil(("ublk-snap", 0, "none", wl))
    p(f"| no snapshot vs ublk ceiling | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 0.9 | {verdict(xs, 0.9)} |")
for wl in ("randwrite4k", "seqwrite1M"):
    xs = rel(("ublk-snap", 256, "first", wl), ("ublk-snap", 1, "first", wl))
    p(f"| copy-out flat: 256 snapshots vs 1 | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 0.9 | {verdict(xs, 0.9)} |")
for wl in ("randwrite4k", "seqwrite1M"):
    for n in (1, 16, 256):
        xs = rel(("ublk-snap", n, "first", wl), ("dm-thin", n, "first", wl))
        p(f"| copy-out vs dm-thin, {n} snapshot{'s' if n > 1 else ''} | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 1.0 | {verdict(xs, 1.0)} |")
for wl in ("randwrite4k", "seqwrite1M"):
    xs = rel(("ublk-snap", 16, "first", wl), ("dm-snap", 16, "first", wl))
    p(f"| copy-out vs dm-snapshot, 16 snapshots (\"far above\": taken as ≥ 2x) | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 2.0 | {verdict(xs, 2.0)} |")
for wl in WORKLOADS:
    for n in (1, 16, 256):
        xs = rel(("ublk-snap", n, "steady", wl), ("ublk-snap", 0, "none", wl))
        p(f"| steady, {n} snapshot{'s' if n > 1 else ''}, vs no snapshot | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 0.9 | {verdict(xs, 0.9)} |")
for phase in READ_ONLY_PHASES:
    for wl in ("randread4k", "seqread1M"):
        xs = rel_ceil(("ublk-snap", 1, phase, wl))
        p(f"| snapshot reads ({PHASE_NAME[phase].split(', ')[1]}) vs ublk ceiling | {WL_NAME[wl]} | {span(xs, '{:.2f}')} | ≥ 0.8 | {verdict(xs, 0.8)} |")
p()

if any(("rublk-z", 0, "none", wl) in val[r] or ("ublk-snap-copy", 0, "none", wl) in val[r]
       for r in runs for wl in WORKLOADS):
    p("## Zero copy (no snapshot)\n")
    p("`ublk-snap` is zero-copy here (`--zero-copy auto` on a driver with auto_buf_reg),")
    p("`ublk-snap-copy` the same daemon with `--zero-copy off`, `rublk-z` rublk's loop with")
    p("`-z` (auto_buf_reg, O_DIRECT): the zero-copy ceiling. Ratios inside each run, min–max.\n")
    p("| workload | ublk-snap | ublk-snap-copy | rublk-z | zero-copy gain (ublk-snap ÷ ublk-snap-copy) | ublk-snap ÷ rublk-z | threshold | verdict |")
    p("|---|---|---|---|---|---|---|---|")
    for wl in WORKLOADS:
        key = ("ublk-snap", 0, "none", wl)
        gain, zc = ratios(key, "copy"), ratios(key, "zc")
        f = num_fmt(wl)
        p(f"| {WL_NAME[wl]} ({UNIT[wl]}) | {span(figs(key), f)} | "
          f"{span(figs(('ublk-snap-copy', 0, 'none', wl)), f)} | {span(figs(('rublk-z', 0, 'none', wl)), f)} | "
          f"{span(gain, '{:.2f}')} | {span(zc, '{:.2f}')} | ≥ 0.9 × rublk-z | {verdict(zc, 0.9)} |")
    p()

p("## 1 MiB first writes against the copy-out limit\n")
p("A 1 MiB write over shared chunks of an origin kept in place moves three times its")
p("data: the old chunks are read and written to the exception store beside the new")
p("data's write, so the limit is about 1/3 of the stack's own no-snapshot 1 MiB")
p("write bandwidth. dm-snapshot keeps its origin in place too; dm-thin does not (a")
p("write that covers whole blocks goes to new blocks, nothing is copied), so its")
p("fraction may pass 1. Figures and fractions inside each run, min–max.\n")
p("| stack | snapshots | first write MB/s | no-snapshot write MB/s | limit (1/3) MB/s | fraction of the limit |")
p("|---|---|---|---|---|---|")
for s_ in ("ublk-snap", "dm-snap", "dm-thin"):
    for n in (1, 16, 256):
        key = (s_, n, "first", "seqwrite1M")
        if not any(v is not None for v in figs(key)):
            continue
        base = (s_, 0, "none", "seqwrite1M")
        lim = [b / 3 if b else None for b in figs(base)]
        frac = [a * 3 / b if a is not None and b else None for a, b in zip(figs(key), figs(base))]
        p(f"| {s_} | {n} | {span(figs(key), '{:.1f}')} | {span(figs(base), '{:.1f}')} | "
          f"{span(lim, '{:.1f}')} | {span(frac, '{:.2f}')} |")
p()

p("## Metadata per copied chunk (1 snapshot, 64 KiB chunks)\n")
p("Added by the random copy-out (2048 scattered 4 KiB first writes) and by the")
p("sequential one (128 MiB in 1 MiB writes = 2048 chunks). ublk-snap: *node bytes* =")
p("4 KiB node blocks referenced by its trees (`snapctl check`: `nr_meta_blocks`);")
p("*allocated* = metadata chunks taken from the store (`snapctl status`:")
p("`usage.nr_meta_chunks` × 64 KiB; node blocks are carved out of them). dm-thin: used")
p("4 KiB metadata blocks of the pool (`dmsetup status`; `thin_ls` output is in the")
p("run's log), read a second and a half after a flush so the pool has committed.\n")
p("| stack | workload | chunks copied | metadata bytes / chunk (min–max) | allocated bytes / chunk |")
p("|---|---|---|---|---|")
for s in ("ublk-snap", "dm-thin"):
    for what in ("random", "sequential"):
        rows = [m for m in meta if m["system"] == s and m["what"] == what]
        if not rows:
            continue
        per = [int(m["meta_bytes"]) / int(m["chunks_copied"]) for m in rows if int(m["chunks_copied"])]
        alloc = [int(m["meta_alloc_bytes"]) / int(m["chunks_copied"]) for m in rows if int(m["chunks_copied"])]
        p(f"| {s} | {what} | {span([float(m['chunks_copied']) for m in rows], '{:.0f}')} | "
          f"{span(per, '{:.1f}')} | {span(alloc, '{:.1f}')} |")
p()

if os.path.exists(analysis) and (not section or kernel):
    p(open(analysis).read().rstrip())

text = "\n".join(lines).split("\n")
if section:
    kernel = kernel or "?"
    made = next((l.split(" ", 1)[1] for l in env.splitlines() if l.startswith("command ")), None)
    out_lines = []
    for l in text:
        if l.startswith("# "):
            l = f"# Kernel {kernel}: " + l[2:]
            if made:
                l += f"\n\nThis section was made with `sudo {made}` (as root; the run's settings are below)."
        if l.startswith("#"):
            l = "#" + l
        out_lines.append(l)
    text = out_lines
print("\n".join(text))
