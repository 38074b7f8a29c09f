use super::*;
use blockdev::{ids::TxnId, BlockDevice, MemDevice};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// A trivial allocator: next-fit over a set, frees deferred to `commit`.
#[derive(Default)]
pub(crate) struct TestAlloc {
    pub used: BTreeSet<u64>,
    pub pending: Vec<u64>,
    pub next: u64,
}

impl MetaAlloc for TestAlloc {
    fn alloc_block(&mut self) -> Result<BlockNr> {
        while self.used.contains(&self.next) {
            self.next += 1;
        }
        if self.next >= 4096 {
            return Err(Error::NoSpace);
        }
        self.used.insert(self.next);
        Ok(BlockNr(self.next))
    }
    fn free_block(&mut self, b: BlockNr) {
        self.pending.push(b.0);
    }
}

impl TestAlloc {
    fn commit(&mut self) {
        for b in self.pending.drain(..) {
            assert!(self.used.remove(&b), "double free of {b}");
        }
        self.next = 0;
    }
}

fn setup(budget: usize) -> (Arc<dyn BlockDevice>, NodeCache, TestAlloc) {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(4096 * 4096));
    let cache = NodeCache::new(dev.clone(), budget, TxnId(1));
    (dev, cache, TestAlloc::default())
}

fn check_against(
    t: &Tree<u64, u64>,
    cache: &mut NodeCache,
    model: &BTreeMap<u64, u64>,
    alloc: &TestAlloc,
) {
    let mut got = Vec::new();
    let mut nodes = BTreeSet::new();
    t.walk(
        cache,
        &mut |b| {
            assert!(nodes.insert(b.0), "node {b} reached twice");
            Ok(())
        },
        &mut |k, v| {
            got.push((*k, *v));
            Ok(())
        },
    )
    .unwrap();
    let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, want);
    // every reachable node is allocated and not pending free
    for b in &nodes {
        assert!(alloc.used.contains(b));
        assert!(!alloc.pending.contains(b));
    }
    // no leak: used = reachable + pending
    assert_eq!(alloc.used.len(), nodes.len() + alloc.pending.len());
}

#[test]
fn random_ops_match_model_with_commits_and_eviction() {
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let budget = if seed % 2 == 0 { 1 << 20 } else { 64 * 4096 };
        let (dev, mut cache, mut alloc) = setup(budget);
        let mut t: Tree<u64, u64> = Tree::create(&mut cache, &mut alloc, 3).unwrap();
        let mut model = BTreeMap::new();
        let mut txn = 1;
        let keyspace = if seed < 3 { 3000 } else { 200_000 };
        for step in 0..12_000 {
            let k = rng.gen_range(0..keyspace);
            if rng.gen_bool(0.6) {
                let v = rng.gen::<u64>();
                assert_eq!(
                    t.insert(&mut cache, &mut alloc, k, v).unwrap(),
                    model.insert(k, v)
                );
            } else {
                assert_eq!(
                    t.remove(&mut cache, &mut alloc, &k).unwrap(),
                    model.remove(&k)
                );
            }
            if step % 997 == 0 {
                check_against(&t, &mut cache, &model, &alloc);
                cache.write_dirty().unwrap();
                alloc.commit();
                txn += 1;
                // reopen from disk with a cold cache
                cache = NodeCache::new(dev.clone(), budget, TxnId(txn));
                t = Tree::open(t.root(), 3);
            }
            if step % 500 == 0 {
                let lo = rng.gen_range(0..keyspace);
                let hi = lo + rng.gen_range(0..500);
                let got = t.collect_range(&mut cache, &lo, &hi).unwrap();
                let want: Vec<_> = model.range(lo..=hi).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want, "range {lo}..={hi}");
            }
        }
        check_against(&t, &mut cache, &model, &alloc);
        // drain everything: the tree collapses to one empty leaf
        let keys: Vec<u64> = model.keys().copied().collect();
        for k in keys {
            t.remove(&mut cache, &mut alloc, &k).unwrap();
            model.remove(&k);
        }
        check_against(&t, &mut cache, &model, &alloc);
        let st = t
            .walk(&mut cache, &mut |_| Ok(()), &mut |_, _| Ok(()))
            .unwrap();
        assert_eq!((st.depth, st.nr_leaves, st.nr_entries), (1, 1, 0));
    }
}

#[test]
fn committed_tree_survives_uncommitted_changes() {
    let (dev, mut cache, mut alloc) = setup(1 << 20);
    let mut t: Tree<u64, u64> = Tree::create(&mut cache, &mut alloc, 1).unwrap();
    for k in 0..5000 {
        t.insert(&mut cache, &mut alloc, k, k * 2).unwrap();
    }
    cache.write_dirty().unwrap();
    alloc.commit();
    let committed = t.root();
    let mut cache = NodeCache::new(dev.clone(), 1 << 20, TxnId(2));
    for k in 0..5000 {
        t.remove(&mut cache, &mut alloc, &k).unwrap();
        t.insert(&mut cache, &mut alloc, k + 10_000, 1).unwrap();
    }
    cache.write_dirty().unwrap(); // written, but the "superblock" still names `committed`
    let mut cold = NodeCache::new(dev, 1 << 20, TxnId(2));
    let old: Tree<u64, u64> = Tree::open(committed, 1);
    let all = old.collect_range(&mut cold, &0, &u64::MAX).unwrap();
    assert_eq!(all.len(), 5000);
    assert!(all.iter().all(|(k, v)| *v == k * 2));
}

#[test]
fn corrupt_node_is_detected_never_served() {
    let (dev, mut cache, mut alloc) = setup(1 << 20);
    let mut t: Tree<u64, u64> = Tree::create(&mut cache, &mut alloc, 1).unwrap();
    for k in 0..2000 {
        t.insert(&mut cache, &mut alloc, k, k).unwrap();
    }
    cache.write_dirty().unwrap();
    let mut nodes = Vec::new();
    t.walk(
        &mut cache,
        &mut |b| {
            nodes.push(b);
            Ok(())
        },
        &mut |_, _| Ok(()),
    )
    .unwrap();
    for (i, b) in nodes.iter().enumerate() {
        for off in [0usize, 5, 9, 17, 29, 100, 4000] {
            let pos = b.0 * 4096 + off as u64;
            let mut byte = [0u8];
            dev.read_at(&mut byte, pos).unwrap();
            dev.write_at(&[byte[0] ^ (1 << (i % 8))], pos).unwrap();
            let mut cold = NodeCache::new(dev.clone(), 1 << 20, TxnId(1));
            let r = t.walk(&mut cold, &mut |_| Ok(()), &mut |_, _| Ok(()));
            assert!(
                matches!(r, Err(Error::Corrupt(_))),
                "flip at block {b} offset {off}: {r:?}"
            );
            dev.write_at(&byte, pos).unwrap();
        }
    }
}

#[test]
fn full_metadata_space_is_an_error() {
    let (_dev, mut cache, mut alloc) = setup(1 << 20);
    let mut t: Tree<u64, u64> = Tree::create(&mut cache, &mut alloc, 1).unwrap();
    let mut hit = false;
    for k in 0..2_000_000u64 {
        match t.insert(&mut cache, &mut alloc, k, k) {
            Ok(_) => {}
            Err(Error::NoSpace) => {
                hit = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(hit);
}

/// The cache's dirty set: a commit writes every dirty node (also after some were
/// evicted, written early, and after a write failed part way: the rest stay dirty
/// and the next `write_dirty` writes them), and a cold cache then reads the tree.
#[test]
fn write_dirty_writes_every_dirty_node_and_a_failed_one_stays_dirty() {
    let faulty = Arc::new(blockdev::FaultyDevice::new(4096 * 4096));
    let dev: Arc<dyn BlockDevice> = faulty.clone();
    // small: dirty nodes are evicted (written) while the tree grows
    let mut cache = NodeCache::new(dev.clone(), 64 * 4096, TxnId(1));
    let mut alloc = TestAlloc::default();
    let mut t: Tree<u64, u64> = Tree::create(&mut cache, &mut alloc, 3).unwrap();
    for k in 0..20_000u64 {
        t.insert(&mut cache, &mut alloc, k, k ^ 0x5a).unwrap();
    }
    let st = cache.stats();
    assert!(st.nr_dirty > 2 && st.nr_dirty <= st.nr_cached, "{st:?}");
    // the third write fails: the nodes not yet written stay dirty
    faulty.plan().lock().fail_write_in = Some(2);
    assert!(cache.write_dirty().is_err());
    let left = cache.stats().nr_dirty;
    assert!(left > 0 && left < st.nr_dirty, "{left} of {}", st.nr_dirty);
    cache.write_dirty().unwrap();
    assert_eq!(cache.stats().nr_dirty, 0);
    cache.begin(TxnId(2));
    let mut cold = NodeCache::new(dev, 1 << 20, TxnId(2));
    let all = Tree::<u64, u64>::open(t.root(), 3)
        .collect_range(&mut cold, &0, &u64::MAX)
        .unwrap();
    assert_eq!(all.len(), 20_000);
    assert!(all.iter().all(|(k, v)| *v == k ^ 0x5a));
}
