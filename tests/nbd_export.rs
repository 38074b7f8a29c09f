//! The NBD server through its socket with a raw client (`common::nbd`): the
//! handshake, every command, bad clients, block status against the store's map,
//! FLUSH across connections (CAN_MULTI_CONN) on crash-simulating devices, and a
//! model e2e that writes through NBD and compares the store with a reference model.
//! Needs no kernel.
mod common;

use blockdev::{CrashMode, FaultyDevice};
use common::{
    daemon::CHUNK,
    nbd::{self, Client, Setup},
    pattern, Model,
};
use exception_store::{Dev, SharedStore, Store};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{io::Write, sync::Arc};
use ublk_snapd::nbd::{Export, Exports, Listener, Server};

const LEN: u64 = 4 << 20;
const EPERM: u32 = 1;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;

fn setup() -> Setup {
    nbd::setup(LEN, 32 << 20)
}

#[test]
fn handshake_lists_exports_and_contexts() {
    let s = setup();
    let svc = s.fix.service();
    svc.create("s1", None, false).unwrap();
    svc.export("s1", false, None).unwrap();
    svc.export("origin", true, Some("live")).unwrap();
    let mut c = nbd::greet(&s.sock);
    nbd::send_option(&mut c, 3, &[]);
    let mut names = Vec::new();
    loop {
        let (_, t, d) = nbd::option_reply(&mut c);
        if t == 1 {
            break;
        }
        assert_eq!(t, 2);
        names.push(String::from_utf8(d[4..].to_vec()).unwrap());
    }
    assert_eq!(names, ["live", "s1"]);
    // meta contexts need structured replies first
    nbd::send_option(&mut c, 9, &nbd::meta_body("s1", &[]));
    assert_eq!(nbd::option_reply(&mut c).1, 0x8000_0003);
    nbd::send_option(&mut c, 8, &[]);
    assert_eq!(nbd::option_reply(&mut c).1, 1);
    nbd::send_option(&mut c, 9, &nbd::meta_body("s1", &[]));
    let mut ctx = Vec::new();
    loop {
        let (_, t, d) = nbd::option_reply(&mut c);
        if t == 1 {
            break;
        }
        ctx.push(String::from_utf8(d[4..].to_vec()).unwrap());
    }
    assert_eq!(
        ctx,
        [
            "base:allocation",
            "qemu:allocation-depth",
            "ublk-snap:owner"
        ]
    );
    // an unknown export is an error, and the option phase goes on
    // name length 4 (big-endian), "nope", no info requests
    let mut go = vec![0, 0, 0, 4];
    go.extend_from_slice(b"nope");
    go.extend_from_slice(&[0, 0]);
    nbd::send_option(&mut c, 7, &go);
    assert_eq!(nbd::option_reply(&mut c).1, 0x8000_0006);
    // an unknown option too
    nbd::send_option(&mut c, 999, b"x");
    assert_eq!(nbd::option_reply(&mut c).1, 0x8000_0001);
    let ro = Client::connect(&s.sock, "s1", &[]);
    assert_eq!(ro.size, LEN);
    assert_ne!(ro.flags & 2, 0, "read-only flag");
    assert_ne!(ro.flags & (1 << 8), 0, "CAN_MULTI_CONN");
    let rw = Client::connect(&s.sock, "live", &[]);
    assert_eq!(rw.flags & 2, 0);
    // the server counts a connection once its handshake thread hands it over:
    // give a loaded machine a moment
    let t0 = std::time::Instant::now();
    let mut st = svc.status();
    while st.nbd.exports.iter().any(|e| e.connections != 1)
        && t0.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        st = svc.status();
    }
    assert_eq!(st.nbd.exports.len(), 2);
    assert_eq!(st.nbd.exports[0].connections, 1);
    assert_eq!(st.nbd.exports[1].connections, 1);
    assert_eq!(st.nbd.listen, [format!("unix:{}", s.sock.display())]);
    let l = svc.list();
    assert_eq!(l.snapshots[0].exports, ["s1"]);
}

#[test]
fn bad_requests_get_errors_and_others_keep_working() {
    let s = setup();
    let svc = s.fix.service();
    svc.store()
        .write(Dev::Origin(0), 0, &pattern(1, CHUNK as usize))
        .unwrap();
    svc.create("s1", None, false).unwrap();
    svc.export("s1", false, None).unwrap();
    svc.export("origin", true, None).unwrap();
    let mut ro = Client::connect(&s.sock, "s1", &[]);
    let mut other = Client::connect(&s.sock, "s1", &[]);
    assert_eq!(ro.write(0, b"nope"), EPERM);
    assert_eq!(ro.call(nbd::TRIM, 0, 0, 4096, &[]).error, EPERM);
    assert_eq!(ro.call(nbd::WRITE_ZEROES, 0, 0, 4096, &[]).error, EPERM);
    assert_eq!(ro.call(nbd::READ, 0, LEN - 1, 2, &[]).error, EINVAL);
    assert_eq!(ro.call(nbd::READ, 0, u64::MAX - 1, 4, &[]).error, EINVAL);
    assert_eq!(ro.call(77, 0, 0, 0, &[]).error, EINVAL);
    assert_eq!(
        ro.call(nbd::BLOCK_STATUS, 0, 0, 4096, &[]).error,
        EINVAL,
        "no context"
    );
    assert_eq!(
        ro.call(nbd::READ, 0, 0, 64 << 20, &[]).error,
        EINVAL,
        "past the end"
    );
    assert_eq!(ro.read(0, 512), pattern(1, 512));
    let mut rw = Client::connect(&s.sock, "origin", &[]);
    assert_eq!(rw.write(LEN - 1, b"xx"), ENOSPC);
    // garbage: a wrong magic drops that connection only
    ro.s.write_all(&[0xAB; 28]).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut ro.s, &mut b).unwrap_or(0), 0);
    assert_eq!(other.read(0, 512), pattern(1, 512));
    // a write over the payload limit is dropped
    let mut big = Client::connect(&s.sock, "origin", &[]);
    big.send(nbd::WRITE, 0, 0, (32 << 20) + 1, &[]);
    assert_eq!(std::io::Read::read(&mut big.s, &mut b).unwrap_or(0), 0);
    // a client that vanishes mid-payload writes nothing
    let mut gone = Client::connect(&s.sock, "origin", &[]);
    gone.send(nbd::WRITE, 0, 8192, 4096, &[0xEE; 100]);
    drop(gone);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut got = vec![0u8; 4096];
    svc.store().read(Dev::Origin(0), 8192, &mut got).unwrap();
    assert_eq!(got, pattern(1, CHUNK as usize)[8192..8192 + 4096]);
    assert_eq!(rw.write(0, b"still"), 0);
    assert_eq!(
        other.read(0, 5),
        pattern(1, 5),
        "the snapshot kept its data"
    );
    // unexport closes the export's connections
    svc.unexport("s1").unwrap();
    assert_eq!(std::io::Read::read(&mut other.s, &mut b).unwrap_or(0), 0);
    assert_eq!(rw.read(0, 5), b"still");
    // DISC: the server closes after it
    rw.send(nbd::DISC, 0, 0, 0, &[]);
    assert_eq!(std::io::Read::read(&mut rw.s, &mut b).unwrap_or(0), 0);
}

/// s1 older than s2: s1 reads (own copy-out, s2's copy-out, own write, own hole,
/// origin) at depths (1, 2, 1, 1, 3).
#[test]
fn block_status_reports_holes_depth_and_owner() {
    let s = setup();
    let svc = s.fix.service();
    let st = svc.store();
    for c in 0..8 {
        st.write(Dev::Origin(0), c * CHUNK, &pattern(c, CHUNK as usize))
            .unwrap();
    }
    svc.create("s1", None, false).unwrap();
    st.write(Dev::Origin(0), CHUNK, &[1; 512]).unwrap();
    svc.create("s2", None, false).unwrap();
    st.write(Dev::Origin(0), 2 * CHUNK, &[2; 512]).unwrap();
    let s1 = Dev::Snap(svc.store().lock().lookup("s1").unwrap());
    st.write(s1, 3 * CHUNK, &[3; 512]).unwrap();
    st.discard(s1, 4 * CHUNK, CHUNK).unwrap();
    svc.export("s1", false, None).unwrap();
    let all = [
        "base:allocation",
        "qemu:allocation-depth",
        "ublk-snap:owner",
    ];
    let mut c = Client::connect(&s.sock, "s1", &all);
    assert_eq!(c.contexts.len(), 3);
    let r = c.call(nbd::BLOCK_STATUS, 0, 0, (8 * CHUNK) as u32, &[]);
    assert_eq!(r.error, 0);
    assert_eq!(r.status.len(), 3);
    let lens: Vec<Vec<u32>> = r
        .status
        .iter()
        .map(|(_, d)| d.iter().map(|e| e.0).collect())
        .collect();
    assert!(
        lens.iter().all(|l| *l == lens[0]),
        "same boundaries: {lens:?}"
    );
    assert_eq!(
        lens[0].iter().map(|l| u64::from(*l)).sum::<u64>(),
        8 * CHUNK
    );
    assert!(lens[0].iter().all(|l| l % 512 == 0));
    // per chunk values
    let per_chunk = |ctx: usize| -> Vec<u32> {
        let mut v = Vec::new();
        for (len, val) in &r.status[ctx].1 {
            for _ in 0..(u64::from(*len) / CHUNK) {
                v.push(*val);
            }
        }
        v
    };
    assert_eq!(per_chunk(0), [0, 0, 0, 0, 3, 0, 0, 0], "base:allocation");
    assert_eq!(per_chunk(1), [3, 1, 2, 1, 1, 3, 3, 3], "depth");
    let owner = per_chunk(2);
    assert_eq!(owner[0], 0);
    assert_ne!(owner[1], 0);
    assert_eq!(owner[1], owner[3]);
    assert_eq!(owner[1], owner[4]);
    assert_ne!(owner[2], 0);
    assert_ne!(owner[2], owner[1]);
    // REQ_ONE: one descriptor per context, within the request
    let r = c.call(
        nbd::BLOCK_STATUS,
        nbd::FLAG_REQ_ONE,
        CHUNK,
        (3 * CHUNK) as u32,
        &[],
    );
    for (_, d) in &r.status {
        assert_eq!(d.len(), 1);
        assert_eq!(u64::from(d[0].0), CHUNK);
    }
    // holes read zeros
    assert_eq!(c.read(4 * CHUNK, 4096), vec![0; 4096]);
}

/// A write completed on one connection is durable after a FLUSH on another: the
/// proof behind `NBD_FLAG_CAN_MULTI_CONN`. The origin data is not durable before
/// the FLUSH (checked, so the test can fail), and is after.
#[test]
fn nbd_multi_conn_flush() {
    let origin = Arc::new(FaultyDevice::new(LEN));
    let dev = Arc::new(FaultyDevice::new(16 << 20));
    let mut store =
        Store::format(origin.clone(), dev.clone(), CHUNK as u32, common::opts()).unwrap();
    let id = store.create_snapshot("s1", None, 0).unwrap();
    store.commit().unwrap();
    let shared = Arc::new(SharedStore::new(store));
    let exports = Exports::new();
    for (name, d) in [("o", Dev::Origin(0)), ("s", Dev::Snap(id))] {
        exports.insert(Export {
            name: name.into(),
            dev: d,
            snapshot: None,
            writable: true,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let server = Server::start(
        shared.clone(),
        exports,
        vec![Listener::unix(&sock).unwrap()],
        ublk_snapd::nbd::Security::default(),
    )
    .unwrap();
    let mut a = Client::connect(&sock, "o", &[]);
    let mut b = Client::connect(&sock, "s", &[]);
    let data = pattern(9, 8192);
    assert_eq!(a.write(CHUNK, &data), 0);
    assert_eq!(b.write(3 * CHUNK, &data), 0);
    let before = origin.crash_image(CrashMode::DropAll, 0);
    assert_ne!(
        &before[CHUNK as usize..CHUNK as usize + 8192],
        &data[..],
        "not durable yet"
    );
    assert_eq!(b.call(nbd::FLUSH, 0, 0, 0, &[]).error, 0);
    let (o2, d2) = (
        origin.crash(CrashMode::DropAll, 0),
        dev.crash(CrashMode::DropAll, 0),
    );
    server.stop();
    let mut re = Store::open(Arc::new(o2), Arc::new(d2), common::opts()).unwrap();
    let mut got = vec![0u8; 8192];
    re.read(Dev::Origin(0), CHUNK, &mut got).unwrap();
    assert_eq!(got, data, "connection a's origin write after b's flush");
    re.read(Dev::Snap(id), 3 * CHUNK, &mut got).unwrap();
    assert_eq!(got, data, "connection b's own write");
    re.read(Dev::Snap(id), CHUNK, &mut got).unwrap();
    assert_eq!(
        got,
        vec![0; 8192],
        "the snapshot kept the origin's old data"
    );
}

/// Random writes, trims, zeroes (with and without NO_HOLE, FUA) and reads over NBD
/// on the origin and a writable snapshot, snapshots created in between; every
/// device then equals the model, read through the store and through NBD, and
/// every HOLE the block status reports reads zeros in the model.
#[test]
fn model_e2e_through_nbd() {
    let s = setup();
    let svc = s.fix.service();
    let mut model = Model::new(vec![0; LEN as usize]);
    let mut rng = SmallRng::seed_from_u64(14);
    svc.export("origin", true, None).unwrap();
    let mut conns: Vec<(Dev, Client)> =
        vec![(Dev::Origin(0), Client::connect(&s.sock, "origin", &[]))];
    for round in 0..4 {
        let name = format!("s{round}");
        let from = (round == 3).then_some("s1");
        let c = svc.create(&name, from, false).unwrap();
        let dev = Dev::Snap(blockdev::ids::SnapId(c.id));
        let src = from.map_or(Dev::Origin(0), |f| {
            Dev::Snap(svc.store().lock().lookup(f).unwrap())
        });
        model.devs.insert(dev, model.devs[&src].clone());
        svc.export(&name, true, None).unwrap();
        conns.push((dev, Client::connect(&s.sock, &name, &["base:allocation"])));
        for _ in 0..60 {
            let i = rng.gen_range(0..conns.len());
            let (dev, c) = &mut conns[i];
            let off = rng.gen_range(0..LEN / 512 - 300) * 512;
            let len = rng.gen_range(1..256u64) * 512;
            let fua = if rng.gen_bool(0.2) { nbd::FLAG_FUA } else { 0 };
            match rng.gen_range(0..10) {
                0..=4 => {
                    let d = pattern(rng.gen(), len as usize);
                    assert_eq!(c.call(nbd::WRITE, fua, off, len as u32, &d).error, 0);
                    model.write(*dev, off, &d);
                }
                5 => {
                    assert_eq!(c.call(nbd::TRIM, fua, off, len as u32, &[]).error, 0);
                    if *dev == Dev::Origin(0) {
                        // the origin is a plain file: a discard of it keeps its data?
                        let mut now = vec![0u8; len as usize];
                        svc.store().read(Dev::Origin(0), off, &mut now).unwrap();
                        model.write(Dev::Origin(0), off, &now);
                    } else {
                        model.discard_snapshot(*dev, off, len, CHUNK);
                    }
                }
                6 | 7 => {
                    let f = fua
                        | if rng.gen_bool(0.5) {
                            nbd::FLAG_NO_HOLE
                        } else {
                            0
                        };
                    assert_eq!(c.call(nbd::WRITE_ZEROES, f, off, len as u32, &[]).error, 0);
                    model.zero(*dev, off, len);
                }
                8 => assert_eq!(c.call(nbd::FLUSH, 0, 0, 0, &[]).error, 0),
                _ => {
                    let got = c.read(off, len as u32);
                    let want = &model.devs[dev][off as usize..(off + len) as usize];
                    assert!(got == want, "NBD read of {dev:?} at {off}");
                }
            }
        }
    }
    for (dev, c) in &mut conns {
        let want = &model.devs[dev];
        let mut got = vec![0u8; LEN as usize];
        svc.store().read(*dev, 0, &mut got).unwrap();
        assert!(&got == want, "store read of {dev:?} differs from the model");
        let mut over_nbd = Vec::new();
        for off in (0..LEN).step_by(1 << 20) {
            over_nbd.extend(c.read(off, 1 << 20));
        }
        assert!(
            &over_nbd == want,
            "NBD read of {dev:?} differs from the model"
        );
        if *dev != Dev::Origin(0) {
            let r = c.call(nbd::BLOCK_STATUS, 0, 0, LEN as u32, &[]);
            let mut pos = 0usize;
            for (len, flags) in &r.status[0].1 {
                if flags & 1 != 0 {
                    assert!(
                        want[pos..pos + *len as usize].iter().all(|b| *b == 0),
                        "HOLE at {pos} reads data"
                    );
                }
                pos += *len as usize;
            }
            assert_eq!(pos as u64, LEN);
        }
    }
}

/// A snapshot named `origin`: `export origin` is refused as ambiguous (nothing is
/// exported), `-` exports the origin, `--snapshot origin` the snapshot; each export
/// reads its own device.
#[test]
fn a_snapshot_named_origin_is_exported_by_flag_and_the_origin_by_dash() {
    let s = setup();
    let svc = s.fix.service();
    let old = pattern(3, 64 << 10);
    svc.store().write(Dev::Origin(0), 0, &old).unwrap();
    svc.create("origin", None, false).unwrap();
    let new = pattern(4, 64 << 10);
    svc.store().write(Dev::Origin(0), 0, &new).unwrap();
    let e = svc.export("origin", false, None).unwrap_err().to_string();
    assert!(e.contains("ambiguous") || e.contains("--snapshot"), "{e}");
    assert!(svc.exports().list().is_empty(), "nothing exported");
    let o = svc.export("-", false, None).unwrap();
    assert_eq!((o.export.as_str(), o.snapshot.as_deref()), ("origin", None));
    let s1 = svc
        .export_as("origin", None, true, false, Some("old"))
        .unwrap();
    assert_eq!(s1.snapshot.as_deref(), Some("origin"));
    let mut c = Client::connect(&s.sock, "origin", &[]);
    assert_eq!(c.read(0, 64 << 10), new);
    let mut c = Client::connect(&s.sock, "old", &[]);
    assert_eq!(c.read(0, 64 << 10), old);
    // `-` is the origin whatever the snapshots are called, and never a default name
    svc.unexport("origin").unwrap();
    assert!(svc.export("-", false, Some("live")).is_ok());
}

/// Long reads: a structured READ comes in 256 KiB `OFFSET_DATA` chunks (the last
/// one DONE), or in one chunk with `NBD_CMD_FLAG_DF`; a simple READ is one reply;
/// all read the store's bytes. A READ and a WRITE longer than the advertised
/// 32 MiB maximum payload are served too (any size within the export).
#[test]
#[allow(clippy::big_endian_bytes)]
fn long_reads_in_pieces_or_one_chunk_with_df() {
    use std::io::Read;
    let s = nbd::setup(48 << 20, 128 << 20);
    let svc = s.fix.service();
    svc.store()
        .write(Dev::Origin(0), 0, &pattern(4, 1 << 20))
        .unwrap();
    svc.export("origin", true, None).unwrap();
    let mut c = Client::connect(&s.sock, "origin", &[]);
    // chunk headers of one reply: (flags, type, length)
    let chunks = |c: &mut Client, data: &mut Vec<u8>| {
        let mut v = Vec::new();
        loop {
            let mut h = [0u8; 20];
            c.s.read_exact(&mut h).unwrap();
            let flags = u16::from_be_bytes([h[4], h[5]]);
            let typ = u16::from_be_bytes([h[6], h[7]]);
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
            let mut d = vec![0u8; len as usize];
            c.s.read_exact(&mut d).unwrap();
            data.extend_from_slice(&d[8..]);
            v.push((flags, typ, len));
            if flags & 1 != 0 {
                return v;
            }
        }
    };
    let mut data = Vec::new();
    c.send(nbd::READ, 0, 0, 1 << 20, &[]);
    let v = chunks(&mut c, &mut data);
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v.iter().all(|x| x.1 == 1 && x.2 == (256 << 10) + 8));
    assert_eq!(data, pattern(4, 1 << 20));
    data.clear();
    c.send(nbd::READ, 4, 0, 1 << 20, &[]); // DF
    let v = chunks(&mut c, &mut data);
    assert_eq!(v, [(1, 1, (1 << 20) + 8)]);
    assert_eq!(data, pattern(4, 1 << 20));
    // past the advertised maximum: a 40 MiB write and read
    let big = pattern(5, 40 << 20);
    assert_eq!(c.write(4 << 20, &big), 0);
    assert!(c.read(4 << 20, 40 << 20) == big);
}

/// A BLOCK_STATUS over a range with more extents than one reply holds (a snapshot
/// whose every other chunk was written: 5,000 extents) stops after about 4096
/// extents plus a window, describes a prefix of the range, and the client's next
/// requests from where it stopped describe the rest; the dirty bitmap of the
/// origin against that snapshot agrees, walked the same way.
#[test]
fn block_status_of_many_extents_in_several_replies() {
    let chunks = 5_000u64;
    let s = nbd::setup(chunks * CHUNK, 512 << 20);
    let svc = s.fix.service();
    svc.create("s", None, false).unwrap();
    for c in (0..chunks).step_by(2) {
        svc.store()
            .write(Dev::Origin(0), c * CHUNK, &[1; 512])
            .unwrap();
    }
    svc.export("s", false, None).unwrap();
    svc.export("origin", false, Some("o")).unwrap();
    // walk: (offset, len, value) of every extent of context `ctx` of `export`
    let walk = |export: &str, ctx: &str| {
        let mut c = Client::connect(&s.sock, export, &[ctx]);
        let (mut at, mut replies, mut out) = (0u64, 0, Vec::new());
        while at < chunks * CHUNK {
            let len = (chunks * CHUNK - at).min(u64::from(u32::MAX) & !(CHUNK - 1));
            let r = c.call(nbd::BLOCK_STATUS, 0, at, len as u32, &[]);
            assert_eq!(r.error, 0);
            let d = &r.status[0].1;
            assert!(
                d.len() <= 4096 + 4096 + 1,
                "{} extents in one reply",
                d.len()
            );
            for (l, v) in d {
                out.push((at, u64::from(*l), *v));
                at += u64::from(*l);
            }
            replies += 1;
        }
        assert_eq!(at, chunks * CHUNK);
        (replies, out)
    };
    let (replies, depth) = walk("s", "qemu:allocation-depth");
    assert!(replies >= 2, "one reply held everything");
    assert_eq!(depth.len() as u64, chunks, "one extent per chunk");
    for (i, (o, l, v)) in depth.iter().enumerate() {
        assert_eq!((*o, *l), (i as u64 * CHUNK, CHUNK));
        // the snapshot's own on even chunks, the origin's on odd
        assert_eq!(*v, if i % 2 == 0 { 1 } else { 2 }, "chunk {i}");
    }
    let (replies, dirty) = walk("o", "qemu:dirty-bitmap:s");
    assert!(replies >= 2);
    let dirty: Vec<u64> = dirty
        .iter()
        .filter(|e| e.2 == 1)
        .map(|e| {
            assert_eq!(e.1, CHUNK);
            e.0 / CHUNK
        })
        .collect();
    assert_eq!(dirty, (0..chunks).step_by(2).collect::<Vec<_>>());
}
