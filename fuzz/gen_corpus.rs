//! Writes the seed corpora under fuzz/corpus/ (run from fuzz/: `cargo run --bin gen_corpus`).
//! Seeds are committed; this program says how they were made. The `*-v1`, `*-v2` and `*-v3`
//! seeds are what it wrote under format versions 1, 2 and 3 (kept, not regenerated: they
//! drive `open`'s upgrade path).
use blockdev::{BlockDevice, MemDevice};
use exception_store::{Dev, Store, StoreOptions};
use std::{fs, sync::Arc};

fn main() {
    let dir = std::path::Path::new("corpus");
    for t in ["superblock", "records", "store_image", "protocol", "nbd", "nbd_tls", "stream", "rbd_diff"] {
        fs::create_dir_all(dir.join(t)).expect("mkdir");
    }
    // a small store with snapshots, a snapshot of a snapshot, holes and a pending delete
    let origin: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(24 * 4096));
    let dev = Arc::new(MemDevice::new(300 * 4096));
    let mut s = Store::format(origin, dev.clone(), 4096, StoreOptions::default()).expect("format");
    let a = s.create_snapshot("a", None, 1).expect("a");
    s.write(Dev::Origin(0), 0, &[1; 3 * 4096]).expect("w");
    let b = s.create_snapshot("b", Some(a), 2).expect("b");
    s.write(Dev::Snap(b), 4096, &[2; 4096]).expect("w");
    s.write_zeroes(Dev::Snap(a), 8 * 4096, 4096).expect("z");
    let c = s.create_snapshot("c", None, 3).expect("c");
    s.write(Dev::Origin(0), 5 * 4096, &[3; 4096]).expect("w");
    s.delete_snapshot(c).expect("del");
    s.flush().expect("flush");
    let img = dev.to_vec();
    fs::write(dir.join("store_image/basic"), &img).expect("write");
    fs::write(dir.join("superblock/slot"), &img[4096..8192]).expect("write");
    fs::write(dir.join("superblock/slot0"), &img[..4096]).expect("write");
    // records: a snapshot record, a job, an element
    let rec = exception_store::tables::SnapRec {
        label: blockdev::ids::Label(3),
        hold: true,
        created: 1_700_000_000,
        parent: None,
        name: "daily-2026-11-23".into(),
        guid: [0x5a; 16],
        size: 1 << 30,
        origin: 0,
        group: 0,
    };
    fs::write(dir.join("records/snap"), rec.to_raw().0).expect("write");
    fs::write(dir.join("records/elem"), [7u8, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0])
        .expect("write");
    for (i, line) in [
        r#"{"version":1,"op":"create","name":"nightly"}"#,
        r#"{"version":1,"op":"create","name":"child","from":"nightly"}"#,
        r#"{"version":1,"op":"list"}"#,
        r#"{"version":1,"op":"status"}"#,
        r#"{"version":1,"op":"activate","name":"nightly"}"#,
        r#"{"version":1,"op":"delete","name":"nightly"}"#,
    ]
    .iter()
    .enumerate()
    {
        fs::write(dir.join(format!("protocol/{i}")), line).expect("write");
    }
    nbd_seeds(dir);
    println!("corpora written under {}", dir.display());
    // replication streams: a full one (data, zeros) and an incremental resumed one
    use exception_store::stream::{Encoder, Header};
    let mut h = Header {
        stream_id: [1; 16],
        source_uuid: [2; 16],
        chunk_size: 4096,
        size: 1 << 20,
        name: "s1".into(),
        created: 1_700_000_000,
        guid: [3; 16],
        from_guid: None,
        resume_offset: None,
    };
    let mut e = Encoder::new(Vec::new(), &h).expect("enc");
    e.data(0, &[7; 100]).expect("data");
    e.zero(4096, 8192).expect("zero");
    e.data(65536, &[9; 4096]).expect("data");
    fs::write(dir.join("stream/full"), e.finish().expect("end").0).expect("write");
    h.from_guid = Some([4; 16]);
    h.resume_offset = Some(4096);
    let mut e = Encoder::new(Vec::new(), &h).expect("enc");
    e.zero(4096, 4096).expect("zero");
    fs::write(dir.join("stream/incremental-resumed"), e.finish().expect("end").0).expect("write");
    // rbd diff v1: from/to names, size, a data and a zero extent, end
    let mut r = b"rbd diff v1\n".to_vec();
    for (tag, name) in [(b'f', "s1"), (b't', "s2")] {
        r.push(tag);
        r.extend_from_slice(&(name.len() as u32).to_le_bytes());
        r.extend_from_slice(name.as_bytes());
    }
    r.push(b's');
    r.extend_from_slice(&(1u64 << 20).to_le_bytes());
    r.push(b'w');
    r.extend_from_slice(&0u64.to_le_bytes());
    r.extend_from_slice(&4u64.to_le_bytes());
    r.extend_from_slice(b"data");
    r.push(b'z');
    r.extend_from_slice(&4096u64.to_le_bytes());
    r.extend_from_slice(&4096u64.to_le_bytes());
    r.push(b'e');
    fs::write(dir.join("rbd_diff/basic"), r).expect("write");
}

/// NBD client streams: handshakes (GO with structured replies and every context,
/// EXPORT_NAME, LIST then ABORT) followed by one of each command.
fn nbd_seeds(dir: &std::path::Path) {
    use ublk_snapd::nbd::request::{encode, Request};
    fn opt(v: &mut Vec<u8>, o: u32, data: &[u8]) {
        v.extend_from_slice(b"IHAVEOPT");
        v.extend_from_slice(&[(o >> 24) as u8, (o >> 16) as u8, (o >> 8) as u8, o as u8]);
        let n = data.len() as u32;
        v.extend_from_slice(&[(n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        v.extend_from_slice(data);
    }
    fn str32(v: &mut Vec<u8>, s: &str) {
        v.extend_from_slice(&[0, 0, 0, s.len() as u8]);
        v.extend_from_slice(s.as_bytes());
    }
    let req = |cmd: u16, flags: u16, offset: u64, len: u32| {
        encode(&Request { flags, cmd, cookie: 1, offset, len })
    };
    let mut go = vec![0, 0, 0, 3];
    opt(&mut go, 8, &[]);
    let mut meta = Vec::new();
    str32(&mut meta, "o");
    meta.extend_from_slice(&[0, 0, 0, 3]);
    for c in ["base:allocation", "qemu:allocation-depth", "ublk-snap:owner"] {
        str32(&mut meta, c);
    }
    opt(&mut go, 9, &meta);
    opt(&mut go, 10, &meta);
    let mut g = Vec::new();
    str32(&mut g, "o");
    g.extend_from_slice(&[0, 2, 0, 3, 0, 1]);
    opt(&mut go, 7, &g);
    let mut cmds = go.clone();
    cmds.extend_from_slice(&req(1, 1, 4096, 512));
    cmds.extend_from_slice(&[0x5a; 512]);
    cmds.extend_from_slice(&req(0, 0, 0, 8192));
    cmds.extend_from_slice(&req(7, 0, 0, 65536));
    cmds.extend_from_slice(&req(7, 8, 4096, 65536));
    cmds.extend_from_slice(&req(4, 0, 8192, 8192));
    cmds.extend_from_slice(&req(6, 2, 16384, 4096));
    cmds.extend_from_slice(&req(5, 0, 0, 4096));
    cmds.extend_from_slice(&req(3, 0, 0, 0));
    cmds.extend_from_slice(&req(2, 0, 0, 0));
    fs::write(dir.join("nbd/go_commands"), &cmds).expect("write");
    let mut old = vec![0, 0, 0, 1];
    opt(&mut old, 1, b"s");
    old.extend_from_slice(&req(0, 0, 0, 4096));
    old.extend_from_slice(&req(1, 0, 0, 4));
    old.extend_from_slice(b"nope");
    fs::write(dir.join("nbd/export_name"), &old).expect("write");
    let mut list = vec![0, 0, 0, 3];
    opt(&mut list, 3, &[]);
    opt(&mut list, 6, &g);
    opt(&mut list, 2, &[]);
    fs::write(dir.join("nbd/list_info_abort"), &list).expect("write");
    // nbd_tls: a policy byte (0: TLS required, 1: offered), then the client's bytes
    // options before STARTTLS (refused when required), STARTTLS, options over TLS
    let mut tls = vec![0, 0, 0, 0, 3];
    opt(&mut tls, 3, &[]);
    opt(&mut tls, 8, &[]);
    opt(&mut tls, 5, &[]);
    opt(&mut tls, 10, &meta);
    opt(&mut tls, 5, &[]);
    opt(&mut tls, 8, &[]);
    opt(&mut tls, 10, &meta);
    opt(&mut tls, 7, &g);
    fs::write(dir.join("nbd_tls/required_then_go"), &tls).expect("write");
    tls[0] = 1;
    fs::write(dir.join("nbd_tls/offered_then_go"), &tls).expect("write");
    let mut abort = vec![0, 0, 0, 0, 3];
    opt(&mut abort, 7, &g);
    opt(&mut abort, 1, b"o");
    fs::write(dir.join("nbd_tls/export_name_in_clear"), &abort).expect("write");
}
