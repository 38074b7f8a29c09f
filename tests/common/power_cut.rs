//! A power cut at every store write of an operation: the operation runs on fresh
//! fault-injecting devices made from flushed images, cut at its n-th store write for
//! n = 0, 1, ... until it runs to its end, and after each cut the store reopened on
//! the crashed devices (every crash mode) is handed to the test's checks.
use blockdev::{CrashMode, FaultyDevice};
use exception_store::{Error, Store, StoreOptions};
use std::sync::Arc;

/// The crash modes every cut is checked in.
pub const CRASH_MODES: [CrashMode; 4] = [
    CrashMode::DropAll,
    CrashMode::KeepAll,
    CrashMode::RandomWrites,
    CrashMode::TornSectors,
];

/// Per 512-byte sector of `v`: its hash (what a device may read after a crash is
/// checked sector by sector: a torn write mixes sectors, never bytes).
pub fn sector_hashes(v: &[u8]) -> Vec<u32> {
    v.chunks(512).map(crc32fast::hash).collect()
}

/// For n = 0, 1, ...: open a store on devices holding `origin` and `store` (images
/// of flushed devices), let `prepare` change the devices (extend one, say), cut the
/// power at the store device's n-th write and run `op(store, n)`. Once `op` returns
/// `Ok` (no cut was reached) the loop ends. After each cut, for every crash mode,
/// the store is reopened on the crashed devices and given to `check` with a label
/// naming the cut and the mode. Returns the number of cuts.
pub fn at_every_power_cut(
    origin: &[u8],
    store: &[u8],
    opts: &dyn Fn() -> StoreOptions,
    prepare: impl Fn(&FaultyDevice, &FaultyDevice),
    op: impl Fn(&mut Store, u64) -> Result<(), Error>,
    mut check: impl FnMut(Store, &str),
) -> u64 {
    let mut cut = 0u64;
    loop {
        let o = Arc::new(FaultyDevice::from_vec(origin.to_vec()));
        let d = Arc::new(FaultyDevice::from_vec(store.to_vec()));
        let mut s = Store::open(o.clone(), d.clone(), opts()).expect("open the base");
        prepare(&o, &d);
        d.plan().lock().power_cut_in = Some(cut);
        let run = op(&mut s, cut);
        drop(s);
        if run.is_ok() {
            return cut;
        }
        for (i, mode) in CRASH_MODES.iter().enumerate() {
            let seed = cut * 8 + i as u64;
            let what = format!("cut {cut} {mode:?}");
            let o2 = Arc::new(o.crash(*mode, seed));
            let d2 = Arc::new(d.crash(*mode, seed ^ 1));
            let s = Store::open(o2, d2, opts()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            check(s, &what);
        }
        cut += 1;
    }
}
