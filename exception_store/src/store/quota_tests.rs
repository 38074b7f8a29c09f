//! Space per origin and quotas (`store::quota`): the counts follow copy-outs,
//! snapshot writes and deletes, survive a reopen, and a quota refuses or, under
//! `delete-oldest`, deletes that origin's own oldest snapshots, never another's.
use super::pool_tests::{byte, clean, fill, pool, CS};
use super::{Dev, SpacePolicy};
use crate::{Error, Space};

#[test]
fn each_origin_counts_the_chunks_its_snapshots_hold() {
    let mut p = pool(&[16, 16, 16]);
    let a = p.s.create_origin_snapshot(0, "s", 1).unwrap();
    let b = p.s.create_origin_snapshot(1, "s", 1).unwrap();
    for c in 0..3 {
        fill(&mut p.s, Dev::Origin(0), c, 1);
    }
    for c in 0..5 {
        fill(&mut p.s, Dev::Origin(1), c, 2);
    }
    // a snapshot write takes a chunk of its own origin
    fill(&mut p.s, Dev::Snap(b), 9, 3);
    assert_eq!(
        (p.s.origin_used(0), p.s.origin_used(1), p.s.origin_used(2)),
        (3, 6, 0)
    );
    let listed: Vec<u64> = p.s.origins().iter().map(|o| o.used).collect();
    assert_eq!(listed, vec![3, 6, 0]);
    clean(&mut p.s);
    // rebuilt from the elements at open
    let mut p = p.reopen();
    assert_eq!((p.s.origin_used(0), p.s.origin_used(1)), (3, 6));
    // a delete gives them back once its pass has run
    p.s.delete_snapshot(a).unwrap();
    p.s.run_background(64).unwrap();
    p.s.commit().unwrap();
    assert_eq!((p.s.origin_used(0), p.s.origin_used(1)), (0, 6));
    clean(&mut p.s);
}

#[test]
fn a_quota_refuses_that_origins_writes_only_and_loses_nothing() {
    let mut p = pool(&[16, 16]);
    p.s.set_origin_quota(1, 3).unwrap();
    let b = p.s.create_origin_snapshot(1, "s", 1).unwrap();
    p.s.create_origin_snapshot(0, "s", 1).unwrap();
    for c in 0..3 {
        fill(&mut p.s, Dev::Origin(1), c, 7);
    }
    let e = p.s.write(Dev::Origin(1), 3 * CS, &[8; CS as usize]);
    assert!(matches!(e, Err(Error::NoSpace(Space::Quota))), "{e:?}");
    assert_eq!(
        byte(&mut p.s, Dev::Origin(1), 3),
        0,
        "the refused write wrote nothing"
    );
    assert_eq!(byte(&mut p.s, Dev::Snap(b), 3), 0);
    // a write the snapshot does not need, and another origin's copy-outs, go on
    fill(&mut p.s, Dev::Origin(1), 1, 9);
    for c in 0..8 {
        fill(&mut p.s, Dev::Origin(0), c, 4);
    }
    assert_eq!(p.s.origin_used(0), 8);
    // a snapshot write over the quota is refused too
    let e = p.s.write(Dev::Snap(b), 10 * CS, &[5; CS as usize]);
    assert!(matches!(e, Err(Error::NoSpace(Space::Quota))), "{e:?}");
    assert!(!p.s.is_failed(), "a quota refusal never latches");
    // the quota is kept across a reopen; raised, the write goes through
    let mut p = p.reopen();
    assert_eq!(p.s.origins()[1].quota, 3);
    assert!(p
        .s
        .write(Dev::Origin(1), 3 * CS, &[8; CS as usize])
        .is_err());
    p.s.set_origin_quota(1, 0).unwrap();
    fill(&mut p.s, Dev::Origin(1), 3, 8);
    assert_eq!(byte(&mut p.s, Dev::Snap(b), 3), 0);
    assert_eq!(p.s.origin_used(1), 4);
    clean(&mut p.s);
}

#[test]
fn delete_oldest_takes_the_origins_own_snapshots_for_its_quota() {
    let mut p = pool(&[16, 16]);
    p.s.opts.space_policy = SpacePolicy::DeleteOldest;
    // origin 0's snapshot is the oldest of the pool
    let a = p.s.create_origin_snapshot(0, "old", 1).unwrap();
    fill(&mut p.s, Dev::Origin(0), 0, 1);
    p.s.set_origin_quota(1, 2).unwrap();
    p.s.create_origin_snapshot(1, "s1", 2).unwrap();
    fill(&mut p.s, Dev::Origin(1), 0, 1);
    fill(&mut p.s, Dev::Origin(1), 1, 1);
    let b2 = p.s.create_origin_snapshot(1, "s2", 3).unwrap();
    // b@s2 needs chunk 2's old data: the quota is full, b@s1 goes, a@old stays
    fill(&mut p.s, Dev::Origin(1), 2, 2);
    let names: Vec<(u32, String)> =
        p.s.snapshots()
            .into_iter()
            .map(|i| (i.origin, i.name))
            .collect();
    assert_eq!(names, vec![(0, "old".into()), (1, "s2".into())]);
    assert!(p.s.lookup_in(1, "s1").is_none() && p.s.lookup_in(0, "old") == Some(a));
    assert_eq!(byte(&mut p.s, Dev::Snap(b2), 2), 0);
    assert_eq!(byte(&mut p.s, Dev::Snap(b2), 0), 1);
    // with nothing of its own left to delete, the quota refuses
    p.s.set_hold(b2, true).unwrap();
    assert_eq!(p.s.origin_used(1), 1, "b@s1's chunks freed by its pass");
    fill(&mut p.s, Dev::Origin(1), 3, 2);
    let e = p.s.write(Dev::Origin(1), 4 * CS, &[3; CS as usize]);
    assert!(matches!(e, Err(Error::NoSpace(Space::Quota))), "{e:?}");
    assert_eq!(
        p.s.lookup_in(0, "old"),
        Some(a),
        "another origin's snapshot stays"
    );
    p.s.run_background(64).unwrap();
    clean(&mut p.s);
}

#[test]
fn the_space_policy_deletes_a_group_whole() {
    let mut p = pool(&[16, 16, 16]);
    p.s.opts.space_policy = SpacePolicy::DeleteOldest;
    p.s.set_origin_quota(0, 1).unwrap();
    let g = p.s.create_group("g", &[0, 1, 2], 1).unwrap();
    fill(&mut p.s, Dev::Origin(0), 0, 1);
    p.s.create_origin_snapshot(0, "later", 2).unwrap();
    // origin 0's quota is full: its oldest is a group member, and the group goes
    fill(&mut p.s, Dev::Origin(0), 1, 1);
    for (k, _) in &g.members {
        assert!(
            p.s.lookup_in(*k, "g").is_none(),
            "member of origin {k} deleted"
        );
    }
    assert!(p.s.lookup_in(0, "later").is_some());
    p.s.run_background(64).unwrap();
    clean(&mut p.s);
}
