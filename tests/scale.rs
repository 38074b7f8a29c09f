//! Scale: 10,000 snapshots of one origin, and 10,000 elements at a single address.
//! Both must read correctly, pass `check`, and reopen.
mod common;

use common::*;
use exception_store::{Dev, Store};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;

const CS: u64 = 4096;
const N: u64 = 10_000;

fn val(v: u64) -> Vec<u8> {
    v.to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(CS as usize)
        .collect()
}

fn read_val(s: &mut Store, d: Dev, a: u64) -> u64 {
    let mut b = vec![0u8; CS as usize];
    s.read(d, a * CS, &mut b).unwrap();
    let v = u64::from_le_bytes(b[..8].try_into().unwrap());
    assert!(b.chunks(8).all(|c| c == &b[..8]), "torn chunk at {a}");
    v
}

/// 10,000 live snapshots of one origin, origin writes between them, writes to random
/// snapshots, a hundred deletes drained; every snapshot reads what it should, before
/// and after reopen.
#[test]
fn ten_thousand_snapshots_of_one_origin() {
    let nr_addr = 64u64;
    let (h, mut s) = Harness::new(nr_addr * CS, 256 << 20, CS as u32, &[0]);
    for a in 0..nr_addr {
        s.write(Dev::Origin(0), a * CS, &val(a)).unwrap();
    }
    let mut rng = StdRng::seed_from_u64(1);
    let mut origin: Vec<u64> = (0..nr_addr).collect();
    // per snapshot: the origin as it was (shared vectors would be nicer; sparse is enough)
    let mut expect: BTreeMap<Dev, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut at_create: Vec<(Dev, Vec<u64>)> = Vec::new();
    let mut next = 1_000_000u64;
    for i in 0..N {
        let id = s
            .create_snapshot(&format!("auto-{i:05}"), None, i * 300)
            .unwrap();
        if i % 500 == 0 || i + 1 == N {
            at_create.push((Dev::Snap(id), origin.clone()));
        }
        expect.insert(Dev::Snap(id), BTreeMap::new());
        if i % 10 == 0 {
            let a = rng.gen_range(0..nr_addr);
            next += 1;
            s.write(Dev::Origin(0), a * CS, &val(next)).unwrap();
            origin[a as usize] = next;
        }
        if i % 97 == 0 {
            let a = rng.gen_range(0..nr_addr);
            next += 1;
            s.write(Dev::Snap(id), a * CS, &val(next)).unwrap();
            expect.get_mut(&Dev::Snap(id)).unwrap().insert(a, next);
        }
    }
    assert_eq!(s.snapshots().len() as u64, N);
    let check = |s: &mut Store,
                 at_create: &[(Dev, Vec<u64>)],
                 expect: &BTreeMap<Dev, BTreeMap<u64, u64>>| {
        for (d, snap_origin) in at_create {
            for a in 0..nr_addr {
                let want = expect[d]
                    .get(&a)
                    .copied()
                    .unwrap_or(snap_origin[a as usize]);
                assert_eq!(read_val(s, *d, a), want, "{d:?} address {a}");
            }
        }
        for (d, w) in expect {
            for (a, v) in w {
                assert_eq!(read_val(s, *d, *a), *v, "{d:?} own write at {a}");
            }
        }
    };
    check(&mut s, &at_create, &expect);
    // delete a hundred of them (not the sampled ones) and drain
    let victims: Vec<Dev> = expect
        .keys()
        .copied()
        .filter(|d| !at_create.iter().any(|(x, _)| x == d))
        .step_by(97)
        .take(100)
        .collect();
    for d in &victims {
        let Dev::Snap(id) = d else { unreachable!() };
        s.delete_snapshot(*id).unwrap();
        expect.remove(d);
    }
    s.run_background(256).unwrap();
    check(&mut s, &at_create, &expect);
    let rep = s.check().unwrap();
    assert!(
        rep.is_clean(),
        "{:?}",
        &rep.errors[..rep.errors.len().min(5)]
    );
    let mut s = h.reopen();
    assert_eq!(s.snapshots().len() as u64, N - 100);
    check(&mut s, &at_create, &expect);
}

/// 10,000 elements at one address: an origin chunk overwritten after every one of
/// 10,000 snapshots, so each snapshot holds its own copy of address 0.
#[test]
fn ten_thousand_elements_at_one_address() {
    let (h, mut s) = Harness::new(4 * CS, 256 << 20, CS as u32, &[0]);
    s.write(Dev::Origin(0), 0, &val(0)).unwrap();
    let mut ids = Vec::new();
    for i in 0..N {
        let id = s.create_snapshot(&format!("hot-{i}"), None, i).unwrap();
        ids.push(id);
        s.write(Dev::Origin(0), 0, &val(i + 1)).unwrap();
    }
    let verify = |s: &mut Store| {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(read_val(s, Dev::Snap(*id), 0), i as u64, "snapshot {i}");
        }
        assert_eq!(read_val(s, Dev::Origin(0), 0), N);
    };
    verify(&mut s);
    let rep = s.check().unwrap();
    assert_eq!(rep.nr_elements, N, "{rep:?}");
    assert!(rep.is_clean());
    let mut s = h.reopen();
    verify(&mut s);
    // and the hot address keeps diverging in snapshots of snapshots
    let last = *ids.last().unwrap();
    let child = s.create_snapshot("hot-child", Some(last), 0).unwrap();
    s.write(Dev::Snap(child), 0, &val(77)).unwrap();
    assert_eq!(read_val(&mut s, Dev::Snap(child), 0), 77);
    assert_eq!(read_val(&mut s, Dev::Snap(last), 0), N - 1);
}
