//! Shared helpers of the store's integration tests: a harness that opens a store on
//! in-memory or fault-injecting devices, and the reference model of the design note's
//! contract (a plain map from device to its bytes). [`daemon`]: the daemon tests'
//! fixture.
#![allow(dead_code)]

pub mod daemon;
pub mod nbd;
pub mod power;
pub mod power_cut;
pub mod tls;

use blockdev::{BlockDevice, FaultyDevice};
use exception_store::{Dev, Store, StoreOptions};
use std::{collections::BTreeMap, sync::Arc};

/// The reference model: every live device's full contents.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub devs: BTreeMap<Dev, Vec<u8>>,
}

impl Model {
    pub fn new(origin: Vec<u8>) -> Self {
        let mut devs = BTreeMap::new();
        devs.insert(Dev::Origin(0), origin);
        Model { devs }
    }
    pub fn write(&mut self, d: Dev, off: u64, data: &[u8]) {
        let v = self.devs.get_mut(&d).expect("live device");
        v[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    pub fn zero(&mut self, d: Dev, off: u64, len: u64) {
        let v = self.devs.get_mut(&d).expect("live device");
        v[off as usize..(off + len) as usize].fill(0);
    }
    /// The live device a generated index `i` picks (modulo their number, in `Dev`
    /// order); with `snap_only`, among the snapshots. `None` when there is none.
    pub fn pick(&self, i: usize, snap_only: bool) -> Option<Dev> {
        let devs: Vec<Dev> = self
            .devs
            .keys()
            .copied()
            .filter(|d| !snap_only || *d != Dev::Origin(0))
            .collect();
        (!devs.is_empty()).then(|| devs[i % devs.len()])
    }
    /// Discard of a snapshot: whole chunks read zeros, partial ones are unchanged.
    pub fn discard_snapshot(&mut self, d: Dev, off: u64, len: u64, cs: u64) {
        let size = self.devs[&d].len() as u64;
        let first = off.div_ceil(cs);
        let end = off + len;
        let mut a = first;
        while a * cs < end {
            let cend = ((a + 1) * cs).min(size);
            if cend <= end {
                self.zero(d, a * cs, cend - a * cs);
            }
            a += 1;
        }
    }
}

/// Deterministic bytes for a write, so failures print small.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    blockdev::pattern(seed, len)
}

/// Read a whole device through the store.
pub fn read_all(s: &mut Store, d: Dev) -> Vec<u8> {
    let size = s
        .dev_size(d)
        .unwrap_or_else(|e| panic!("size of {d:?}: {e}"));
    let mut buf = vec![0u8; size as usize];
    s.read(d, 0, &mut buf)
        .unwrap_or_else(|e| panic!("read {d:?}: {e}"));
    buf
}

/// Compare every live device with the model; panics with the first difference.
pub fn assert_matches(s: &mut Store, m: &Model, ctx: &str) {
    for (d, want) in &m.devs {
        let got = read_all(s, *d);
        if &got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{ctx}: device {d:?} differs from the model at byte {i} (chunk {}): got {} want {}",
                i as u64 / s.chunk_size(),
                got[i],
                want[i]
            );
        }
    }
}

/// The model runs' `Reopen` step: flush, reopen, and `check` finds no error.
pub fn flush_reopen_check(h: &Harness, s: &mut Store) {
    s.flush().unwrap();
    *s = h.reopen();
    let rep = s.check().unwrap();
    assert!(
        rep.errors.is_empty(),
        "check after reopen: {:?}",
        rep.errors
    );
}

/// The end of a model run: drain the background work; every device matches the
/// model and `check` is clean, before and after a final reopen.
pub fn drain_and_check(h: &Harness, s: &mut Store, m: &Model) {
    s.run_background(64).unwrap();
    assert_matches(s, m, "after draining background work");
    let rep = s.check().unwrap();
    assert!(rep.is_clean(), "check after drain: {rep:?}");
    *s = h.reopen();
    assert_matches(s, m, "after the final reopen");
    let rep = s.check().unwrap();
    assert!(rep.is_clean(), "check after final reopen: {rep:?}");
}

/// A store on fresh in-memory fault-injecting devices.
pub struct Harness {
    pub origin: Arc<FaultyDevice>,
    pub dev: Arc<FaultyDevice>,
    pub chunk: u32,
}

impl Harness {
    pub fn new(
        origin_len: u64,
        store_len: u64,
        chunk: u32,
        origin_fill: &[u8],
    ) -> (Harness, Store) {
        let mut o = vec![0u8; origin_len as usize];
        for (i, b) in o.iter_mut().enumerate() {
            *b = origin_fill[i % origin_fill.len()];
        }
        let origin = Arc::new(FaultyDevice::from_vec(o));
        let dev = Arc::new(FaultyDevice::new(store_len));
        let s = Store::format(origin.clone(), dev.clone(), chunk, opts()).expect("format");
        (Harness { origin, dev, chunk }, s)
    }

    pub fn reopen(&self) -> Store {
        Store::open(self.origin.clone(), self.dev.clone(), opts()).expect("reopen")
    }

    pub fn origin_dyn(&self) -> Arc<dyn BlockDevice> {
        self.origin.clone()
    }
}

/// Small cache so that eviction paths run in tests.
pub fn opts() -> StoreOptions {
    StoreOptions {
        cache_bytes: 256 * 1024,
        ..StoreOptions::default()
    }
}
