use super::*;
use blockdev::MemDevice;
use exception_store::{Store, StoreOptions};

fn export(dev: Dev, writable: bool) -> Export {
    Export {
        name: "o".into(),
        dev,
        snapshot: None,
        writable,
    }
}

/// An unexport or re-export between the handshake's lookup (what GO told the
/// client) and the attach: the client is dropped, never served the new export with
/// the old flags.
#[test]
fn a_reexport_during_the_handshake_drops_the_client() {
    let origin = Arc::new(MemDevice::new(1 << 20));
    let dev = Arc::new(MemDevice::new(8 << 20));
    let mut s = Store::format(origin, dev, 4096, StoreOptions::default()).unwrap();
    let snap = Dev::Snap(s.create_snapshot("s", None, 0).unwrap());
    let store = SharedStore::new(s);
    let exports = Exports::new();
    exports.insert(export(Dev::Origin(0), true));
    let cat = StoreCatalog {
        exports: &exports,
        store: &store,
        chunk: 4096,
        seen: Mutex::new(Vec::new()),
    };
    let told = cat.lookup("o").unwrap();
    assert!(told.writable);
    let n = Negotiated {
        export: told,
        structured: false,
        contexts: Vec::new(),
        bitmaps: Vec::new(),
        flags: 0,
    };
    // unchanged: attached
    assert!(still_told(&cat, &exports.get("o").unwrap(), &n));
    // re-exported read-only: the client was told writable
    exports.insert(export(Dev::Origin(0), false));
    assert!(!still_told(&cat, &exports.get("o").unwrap(), &n));
    // re-exported as another device, same flags
    exports.insert(export(snap, true));
    assert!(!still_told(&cat, &exports.get("o").unwrap(), &n));
    // a later lookup (a new GO) tells the client the new export: attached
    let n2 = Negotiated {
        export: cat.lookup("o").unwrap(),
        ..n
    };
    assert!(still_told(&cat, &exports.get("o").unwrap(), &n2));
}
