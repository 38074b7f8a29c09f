//! NBD exports across `resize-origin`: a connection keeps the size it negotiated
//! (reads past it are refused), a new connection to the origin's export sees the new
//! size and reads the new space, a snapshot's export keeps the snapshot's size.
//! Needs no kernel.
mod common;

use common::nbd::{self, Client};

const OLD: u64 = 4 << 20;
const NEW: u64 = 6 << 20;
const READ: u16 = nbd::READ;
const WRITE: u16 = nbd::WRITE;
const EINVAL: u32 = 22;

#[test]
fn new_connections_see_the_grown_origin() {
    let s = nbd::setup(OLD, 32 << 20);
    let svc = s.fix.service();
    svc.create("s1", None, false).unwrap();
    svc.export("s1", false, None).unwrap();
    svc.export("origin", true, Some("live")).unwrap();
    let mut before = Client::connect(&s.sock, "live", &[]);
    assert_eq!(before.size, OLD);
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.fix.origin_path())
        .unwrap()
        .set_len(NEW)
        .unwrap();
    let r = svc.resize_origin(None, None).unwrap();
    assert_eq!((r.old_bytes, r.new_bytes), (OLD, NEW));
    // the old connection: its negotiated size
    assert_eq!(before.call(READ, 0, OLD - 4096, 4096, &[]).error, 0);
    assert_eq!(before.call(READ, 0, OLD, 4096, &[]).error, EINVAL);
    // a new one: the new size, and the new space is there
    let mut after = Client::connect(&s.sock, "live", &[]);
    assert_eq!(after.size, NEW);
    let data = vec![0x5A; 4096];
    assert_eq!(after.call(WRITE, 0, NEW - 4096, 4096, &data).error, 0);
    assert_eq!(after.read(NEW - 4096, 4096), data);
    // the snapshot keeps its size
    let snap = Client::connect(&s.sock, "s1", &[]);
    assert_eq!(snap.size, OLD);
}
