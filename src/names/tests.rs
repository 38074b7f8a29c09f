//! The naming rules, table-driven, on a store of one origin and on a pool.
use super::*;
use blockdev::MemDevice;
use exception_store::StoreOptions;
use std::sync::Arc;

const CS: u64 = 4096;

/// A store of one origin with snapshots `s1` and `x@y`; with `pool`, origin `b`
/// added with its own `s1` and `t`.
fn store(pool: bool) -> Store {
    let mut s = Store::format(
        Arc::new(MemDevice::new(16 * CS)),
        Arc::new(MemDevice::new(512 * CS)),
        CS as u32,
        StoreOptions::default(),
    )
    .unwrap();
    s.create_snapshot("s1", None, 1).unwrap();
    s.create_snapshot("x@y", None, 1).unwrap();
    if pool {
        let b = s
            .add_origin("b", Arc::new(MemDevice::new(8 * CS)), "/dev/b", 1)
            .unwrap();
        s.create_origin_snapshot(b, "s1", 2).unwrap();
        s.create_origin_snapshot(b, "t", 2).unwrap();
    }
    s
}

fn snap_of(s: &Store, d: Dev) -> Option<(OriginId, String)> {
    match d {
        Dev::Snap(id) => s
            .snapshots()
            .into_iter()
            .find(|i| i.id == id)
            .map(|i| (i.origin, i.name)),
        Dev::Origin(_) => None,
    }
}

#[test]
fn one_origin_keeps_bare_names() {
    let s = store(false);
    assert_eq!(device(&s, None, None).unwrap(), Dev::Origin(0));
    assert_eq!(device(&s, Some("origin"), None).unwrap(), Dev::Origin(0));
    for (origin, name) in [(None, "s1"), (Some("origin"), "s1"), (None, "x@y")] {
        let d = device(&s, origin, Some(name)).unwrap();
        assert_eq!(snap_of(&s, d).unwrap(), (0, name.to_owned()));
    }
    assert!(matches!(
        device(&s, Some("b"), None),
        Err(Error::Store(exception_store::Error::NoSuchOrigin(n))) if n == "b"
    ));
}

#[test]
fn a_pool_takes_the_origin_from_the_name_or_the_flag() {
    let s = store(true);
    assert_eq!(device(&s, Some("b"), None).unwrap(), Dev::Origin(1));
    for (origin, name, want) in [
        (Some("b"), "s1", (1, "s1")),
        (Some("b"), "b@s1", (1, "s1")),
        (None, "b@t", (1, "t")),
        (None, "t", (1, "t")),
        (Some("origin"), "s1", (0, "s1")),
        (None, "origin@s1", (0, "s1")),
    ] {
        let d = device(&s, origin, Some(name)).unwrap();
        assert_eq!(
            snap_of(&s, d).unwrap(),
            (want.0, want.1.to_owned()),
            "{origin:?} {name}"
        );
    }
    // --origin contradicting ORIGIN@NAME, a missing origin, a missing snapshot
    assert!(matches!(
        device(&s, Some("b"), Some("origin@s1")),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        device(&s, Some("nope"), Some("s1")),
        Err(Error::Store(exception_store::Error::NoSuchOrigin(_)))
    ));
    assert!(matches!(
        device(&s, Some("origin"), Some("t")),
        Err(Error::NoSuchSnapshot(n)) if n == "origin@t"
    ));
}
