use super::*;
use crate::tree::tests::TestAlloc;
use blockdev::{ids::TxnId, BlockDevice, MemDevice};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{collections::BTreeMap, sync::Arc};

#[test]
fn elements_match_a_per_address_model_and_coalesce() {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(4096 * 4096));
        let mut cache = NodeCache::new(dev, 1 << 22, TxnId(1));
        let mut alloc = TestAlloc::default();
        let mut e = Elements::create(&mut cache, &mut alloc).unwrap();
        let mut model: BTreeMap<(u64, u32), Ptr> = BTreeMap::new();
        let mut next_chunk = 0u64;
        for _ in 0..6000 {
            let a = rng.gen_range(0..300u64);
            let l = rng.gen_range(1..6u32);
            match rng.gen_range(0..10) {
                0..=5 => {
                    // sequential-ish chunk numbers make extents likely
                    let p = if rng.gen_bool(0.1) {
                        Ptr::Hole
                    } else {
                        next_chunk += 1;
                        Ptr::Chunk(ChunkNr(if rng.gen_bool(0.7) {
                            a + 1000 * l as u64
                        } else {
                            next_chunk
                        }))
                    };
                    let old = e.set(&mut cache, &mut alloc, Addr(a), Label(l), p).unwrap();
                    assert_eq!(old, model.insert((a, l), p));
                }
                _ => {
                    let old = e.remove(&mut cache, &mut alloc, Addr(a), Label(l)).unwrap();
                    assert_eq!(old, model.remove(&(a, l)));
                }
            }
        }
        for a in 0..310u64 {
            let want: Vec<(Label, Ptr)> = model
                .range((a, 0)..(a + 1, 0))
                .map(|((_, l), p)| (Label(*l), *p))
                .collect();
            assert_eq!(e.at(&mut cache, Addr(a)).unwrap(), want, "address {a}");
            let next = e.next_populated(&mut cache, Addr(a)).unwrap();
            let want_next = model.keys().map(|(x, _)| *x).find(|x| *x >= a).map(Addr);
            assert_eq!(next, want_next);
            // the next address in a..a+40 where label 2 or 4 has an element
            let wanted = |l: Label| l.0 == 2 || l.0 == 4;
            let got = e
                .next_of_labels(&mut cache, Addr(a), Addr(a + 40), &wanted)
                .unwrap();
            let want = model
                .keys()
                .filter(|(x, l)| *x >= a && *x < a + 40 && (*l == 2 || *l == 4))
                .map(|(x, _)| Addr(*x))
                .min();
            assert_eq!(got, want, "labels from {a}");
        }
        // extents actually formed
        let mut extents = 0;
        e.walk(&mut cache, &mut |_| Ok(()), &mut |_, _| {
            extents += 1;
            Ok(())
        })
        .unwrap();
        assert!(
            extents < model.len(),
            "{extents} extents for {} elements",
            model.len()
        );
    }
}

#[test]
fn sequential_run_is_one_extent_per_max() {
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(4096 * 4096));
    let mut cache = NodeCache::new(dev, 1 << 22, TxnId(1));
    let mut alloc = TestAlloc::default();
    let mut e = Elements::create(&mut cache, &mut alloc).unwrap();
    for a in 0..160u64 {
        e.set(
            &mut cache,
            &mut alloc,
            Addr(a),
            Label(7),
            Ptr::Chunk(ChunkNr(500 + a)),
        )
        .unwrap();
    }
    let st = e
        .walk(&mut cache, &mut |_| Ok(()), &mut |_, _| Ok(()))
        .unwrap();
    assert_eq!(st.nr_entries, 160 / MAX_EXTENT as u64);
    // punching the middle splits one extent in two
    e.remove(&mut cache, &mut alloc, Addr(40), Label(7))
        .unwrap();
    assert_eq!(
        e.get(&mut cache, Addr(41), Label(7)).unwrap(),
        Some(Ptr::Chunk(ChunkNr(541)))
    );
    assert_eq!(
        e.get(&mut cache, Addr(39), Label(7)).unwrap(),
        Some(Ptr::Chunk(ChunkNr(539)))
    );
    assert_eq!(e.get(&mut cache, Addr(40), Label(7)).unwrap(), None);
}
