//! The NBD server's parsers, as a client would drive them: the input is everything
//! a client sends (handshake options, then requests with their payloads), served
//! against a small in-memory store with a writable origin export and a read-only
//! snapshot export. Any input ends in a clean close or an error, never a panic, a
//! hang or an allocation over the protocol's payload limit.
#![no_main]
use blockdev::MemDevice;
use exception_store::{Dev, SharedStore, Store, StoreOptions};
use libfuzzer_sys::fuzz_target;
use std::{
    io::{self, Read, Write},
    sync::{Arc, OnceLock},
};
use ublk_snapd::nbd::{
    dirty::Candidate,
    handshake::{self, Catalog, ExportInfo},
    transmission,
};

/// Reads come from the input, writes go nowhere.
struct Wire<'a>(&'a [u8]);

impl Read for Wire<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const SIZE: u64 = 1 << 20;

struct Cat;

impl Catalog for Cat {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let writable = match name {
            "" | "o" => true,
            "s" => false,
            _ => return None,
        };
        Some(ExportInfo {
            name: name.to_owned(),
            size: SIZE,
            writable,
            preferred_block: 4096,
            description: "fuzz".into(),
            // the origin has a dirty bitmap against the snapshot
            bitmaps: match (name, store().1) {
                ("s", _) => Vec::new(),
                (_, Dev::Snap(id)) => vec![Candidate {
                    name: "s".into(),
                    snap: id.0,
                }],
                (_, Dev::Origin(_)) => Vec::new(),
            },
        })
    }
    fn names(&self) -> Vec<String> {
        vec!["o".into(), "s".into()]
    }
}

fn store() -> &'static (Arc<SharedStore>, Dev) {
    static S: OnceLock<(Arc<SharedStore>, Dev)> = OnceLock::new();
    S.get_or_init(|| {
        let origin = Arc::new(MemDevice::new(SIZE));
        let dev = Arc::new(MemDevice::new(8 << 20));
        let mut s = Store::format(origin, dev, 4096, StoreOptions::default()).expect("format");
        let id = s.create_snapshot("s", None, 0).expect("snapshot");
        (Arc::new(SharedStore::new(s)), Dev::Snap(id))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut w = Wire(data);
    let Ok(Some(n)) = handshake::negotiate(&mut w, &Cat) else {
        return;
    };
    let (st, snap) = store();
    let dev = if n.export.name == "s" {
        *snap
    } else {
        Dev::Origin(0)
    };
    let _ = transmission::run(&mut w, io::sink(), st, dev, &n, &|| {});
});
