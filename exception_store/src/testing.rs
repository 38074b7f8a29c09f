//! Helpers for tests of this crate and of the crates above it (feature `testing`).
use crate::{Dev, Store};
use std::collections::BTreeMap;

/// Every device's whole contents, by name ("" for the origin), as the store reads
/// them now: what a test compares before and after a reopen, a repair or an upgrade.
pub fn contents(s: &mut Store) -> BTreeMap<String, Vec<u8>> {
    let mut devs = vec![(String::new(), Dev::Origin(0))];
    devs.extend(s.snapshots().into_iter().map(|i| (i.name, Dev::Snap(i.id))));
    devs.into_iter()
        .map(|(name, d)| {
            let mut buf = vec![0u8; s.size() as usize];
            s.read(d, 0, &mut buf).expect("read a whole device");
            (name, buf)
        })
        .collect()
}
