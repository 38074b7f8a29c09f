//! B-tree benchmarks (criterion): lookup, insert and range scan on a `Tree<u64, u64>`
//! of 100 Ki and 1 Mi entries, with a warm node cache (every node in memory) and a
//! cold one (a fresh `NodeCache` over the same device, so every node on the path is
//! read, checksummed and validated), plus element-index lookups.
//!
//! The device is a `MemDevice`: this measures the CPU cost of the tree (copying,
//! checksums, key checks), not the disk. See `benches/README.md`.
//!
//! Run: `cargo bench --bench btree` (`-- lookup` to filter). `UBLK_SNAP_BENCH_QUICK=1`
//! runs the 100 Ki tree only.
use blockdev::{
    ids::{Addr, BlockNr, ChunkNr, Label, TxnId},
    BlockDevice, MemDevice,
};
use btree::{
    elements::{Elements, Ptr},
    MetaAlloc, NodeCache, Tree,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{hint::black_box, sync::Arc, time::Duration};

/// Metadata device size: 64 Ki blocks of 4 KiB.
const DEV_BLOCKS: u64 = 64 * 1024;
/// Inserts per transaction while building and in the warm insert benchmark.
const TXN_INSERTS: u64 = 4096;
/// Entries a range scan visits.
const SCAN_LEN: usize = 1000;
/// Cache budget large enough to hold every node of the largest tree.
const BIG_CACHE: usize = 1 << 30;

/// Next-fit allocator over a `Vec<bool>`; frees are deferred to [`BenchAlloc::commit`].
#[derive(Clone)]
struct BenchAlloc {
    used: Vec<bool>,
    pending: Vec<u64>,
    next: u64,
}

impl BenchAlloc {
    fn new(nr_blocks: u64) -> Self {
        BenchAlloc {
            used: vec![false; nr_blocks as usize],
            pending: Vec::new(),
            next: 0,
        }
    }

    fn commit(&mut self) {
        for b in self.pending.drain(..) {
            self.used[b as usize] = false;
        }
    }
}

impl MetaAlloc for BenchAlloc {
    fn alloc_block(&mut self) -> btree::Result<BlockNr> {
        let n = self.used.len() as u64;
        for i in 0..n {
            let b = (self.next + i) % n;
            if !self.used[b as usize] {
                self.used[b as usize] = true;
                self.next = b + 1;
                return Ok(BlockNr(b));
            }
        }
        Err(btree::Error::NoSpace)
    }
    fn free_block(&mut self, b: BlockNr) {
        self.pending.push(b.0);
    }
}

/// A bijection of u64 that scatters consecutive indexes: entry `i` has key `key(i)`.
fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// A tree of `n` entries `key(i) -> i`, committed to its device.
struct Fixture {
    dev: Arc<dyn BlockDevice>,
    cache: NodeCache,
    alloc: BenchAlloc,
    tree: Tree<u64, u64>,
}

impl Fixture {
    fn build(n: u64) -> Self {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(DEV_BLOCKS * 4096));
        let mut cache = NodeCache::new(dev.clone(), BIG_CACHE, TxnId(1));
        let mut alloc = BenchAlloc::new(DEV_BLOCKS);
        let mut tree = Tree::create(&mut cache, &mut alloc, 7).unwrap();
        for i in 0..n {
            tree.insert(&mut cache, &mut alloc, key(i), i).unwrap();
            if (i + 1) % TXN_INSERTS == 0 {
                commit(&mut cache, &mut alloc);
            }
        }
        commit(&mut cache, &mut alloc);
        Fixture {
            dev,
            cache,
            alloc,
            tree,
        }
    }

    fn cold_cache(&self) -> NodeCache {
        NodeCache::new(self.dev.clone(), BIG_CACHE, self.cache.txn())
    }
}

fn commit(cache: &mut NodeCache, alloc: &mut BenchAlloc) {
    cache.write_dirty().unwrap();
    alloc.commit();
    cache.begin(TxnId(cache.txn().0 + 1));
}

fn sizes() -> Vec<u64> {
    if std::env::var_os("UBLK_SNAP_BENCH_QUICK").is_some() {
        vec![100_000]
    } else {
        vec![100_000, 1_000_000]
    }
}

fn bench_tree(c: &mut Criterion) {
    for n in sizes() {
        let mut f = Fixture::build(n);
        let st = f
            .tree
            .walk(&mut f.cache, &mut |_| Ok(()), &mut |_, _| Ok(()))
            .unwrap();
        eprintln!(
            "tree of {n} entries: depth {}, {} leaves, {} internal nodes",
            st.depth, st.nr_leaves, st.nr_internal
        );
        let mut rng = SmallRng::seed_from_u64(n);

        let mut g = c.benchmark_group("btree/lookup");
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, &n| {
            b.iter(|| {
                let i = rng.gen_range(0..n);
                black_box(f.tree.get(&mut f.cache, &key(i)).unwrap())
            })
        });
        g.bench_with_input(BenchmarkId::new("warm_miss", n), &n, |b, _| {
            b.iter(|| {
                let k = rng.gen::<u64>();
                black_box(f.tree.get(&mut f.cache, &k).unwrap())
            })
        });
        g.bench_with_input(BenchmarkId::new("cold", n), &n, |b, &n| {
            b.iter_batched(
                || (f.cold_cache(), key(rng.gen_range(0..n))),
                |(mut cache, k)| black_box(f.tree.get(&mut cache, &k).unwrap()),
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group("btree/range_1000");
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, &n| {
            b.iter(|| scan(&f.tree, &mut f.cache, key(rng.gen_range(0..n))))
        });
        g.bench_with_input(BenchmarkId::new("cold", n), &n, |b, &n| {
            b.iter_batched(
                || (f.cold_cache(), key(rng.gen_range(0..n))),
                |(mut cache, k)| scan(&f.tree, &mut cache, k),
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group("btree/scan_all");
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, _| {
            b.iter(|| {
                let mut sum = 0u64;
                f.tree
                    .range_from(&mut f.cache, &0, &mut |_, v| {
                        sum = sum.wrapping_add(v);
                        true
                    })
                    .unwrap();
                black_box(sum)
            })
        });
        g.finish();

        // Inserts of new keys. Cold: a fresh cache and a copy of the allocator, the
        // change thrown away (measures read path + shadowing of a whole path). Warm:
        // into the cached tree, committing every TXN_INSERTS inserts (commit included).
        let mut g = c.benchmark_group("btree/insert");
        let mut next_new = n;
        g.bench_with_input(BenchmarkId::new("cold", n), &n, |b, _| {
            b.iter_batched(
                || {
                    next_new += 1;
                    (f.cold_cache(), f.alloc.clone(), f.tree, key(next_new))
                },
                |(mut cache, mut alloc, mut tree, k)| {
                    tree.insert(&mut cache, &mut alloc, k, 0).unwrap();
                    (cache, alloc)
                },
                BatchSize::LargeInput,
            )
        });
        let mut since_commit = 0u64;
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, _| {
            b.iter(|| {
                next_new += 1;
                f.tree
                    .insert(&mut f.cache, &mut f.alloc, key(next_new), next_new)
                    .unwrap();
                since_commit += 1;
                if since_commit == TXN_INSERTS {
                    since_commit = 0;
                    commit(&mut f.cache, &mut f.alloc);
                }
            })
        });
        g.finish();
        commit(&mut f.cache, &mut f.alloc);
    }
}

fn scan(tree: &Tree<u64, u64>, cache: &mut NodeCache, from: u64) -> u64 {
    let mut left = SCAN_LEN;
    let mut sum = 0u64;
    tree.range_from(cache, &from, &mut |_, v| {
        sum = sum.wrapping_add(v);
        left -= 1;
        left > 0
    })
    .unwrap();
    black_box(sum)
}

/// The element index as the store uses it: `n` addresses with one element each (in
/// extents where consecutive) plus a second label on every 8th address.
fn bench_elements(c: &mut Criterion) {
    for n in sizes() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(DEV_BLOCKS * 4096));
        let mut cache = NodeCache::new(dev.clone(), BIG_CACHE, TxnId(1));
        let mut alloc = BenchAlloc::new(DEV_BLOCKS);
        let mut el = Elements::create(&mut cache, &mut alloc).unwrap();
        // Scattered chunk numbers so that extents stay short, as after random writes.
        for a in 0..n {
            let ch = ChunkNr(key(a) >> 20);
            el.set(&mut cache, &mut alloc, Addr(a), Label(1), Ptr::Chunk(ch))
                .unwrap();
            if a % 8 == 0 {
                el.set(&mut cache, &mut alloc, Addr(a), Label(2), Ptr::Hole)
                    .unwrap();
            }
            if (a + 1) % TXN_INSERTS == 0 {
                commit(&mut cache, &mut alloc);
            }
        }
        commit(&mut cache, &mut alloc);
        let mut rng = SmallRng::seed_from_u64(n ^ 0xe1);
        let mut g = c.benchmark_group("elements/at");
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, &n| {
            b.iter(|| black_box(el.at(&mut cache, Addr(rng.gen_range(0..n))).unwrap()))
        });
        let txn = cache.txn();
        g.bench_with_input(BenchmarkId::new("cold", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    (
                        NodeCache::new(dev.clone(), BIG_CACHE, txn),
                        Addr(rng.gen_range(0..n)),
                    )
                },
                |(mut cold, a)| black_box(el.at(&mut cold, a).unwrap()),
                BatchSize::SmallInput,
            )
        });
        g.finish();
        let mut g = c.benchmark_group("elements/set");
        let mut since_commit = 0u64;
        g.bench_with_input(BenchmarkId::new("warm", n), &n, |b, &n| {
            b.iter(|| {
                let a = Addr(rng.gen_range(0..n));
                let ch = ChunkNr(rng.gen_range(0..1u64 << 40));
                el.set(&mut cache, &mut alloc, a, Label(3), Ptr::Chunk(ch))
                    .unwrap();
                since_commit += 1;
                if since_commit == TXN_INSERTS {
                    since_commit = 0;
                    commit(&mut cache, &mut alloc);
                }
            })
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_tree, bench_elements
}
criterion_main!(benches);
