//! Growing the origin (`Store::grow_origin`, `snapctl resize-origin`) and every
//! device's own size: a snapshot keeps the size it was taken at and reads what it
//! held, one taken after the growth has the new size, origin chunks past every
//! snapshot's size copy nothing out, the partial last chunk of a smaller snapshot
//! copies out whole, merges of a smaller snapshot and bad sizes are refused with
//! nothing changed, `map`/`diff` are bounded per device, and a power cut at every
//! write of the growth leaves the old or the new size with nothing lost.
mod common;

use blockdev::{CrashMode, FaultyDevice};
use common::{power_cut::*, *};
use exception_store::{Dev, Error, SharedStore, Store};
use std::sync::Arc;

const CS: u64 = 4096;
/// 10.5 chunks: the origin's last chunk is partial before the growth.
const OLD: u64 = 10 * CS + CS / 2;
const NEW: u64 = 24 * CS;

fn store() -> (Arc<FaultyDevice>, Arc<FaultyDevice>, Store, Vec<u8>) {
    let before = pattern(7, OLD as usize);
    let origin = Arc::new(FaultyDevice::from_vec(before.clone()));
    let dev = Arc::new(FaultyDevice::new(400 * CS));
    let s = Store::format(origin.clone(), dev.clone(), CS as u32, opts()).unwrap();
    (origin, dev, s, before)
}

fn used(s: &Store) -> u64 {
    let st = s.status();
    st.nr_chunks - st.nr_free
}

#[test]
fn snapshots_keep_their_size_and_contents_across_a_growth() {
    let (origin, dev, mut s, before) = store();
    let old = s.create_snapshot("old", None, 1).unwrap();
    origin.extend(NEW);
    let g = s.grow_origin(0, NEW).unwrap();
    assert_eq!((g.old_len, g.new_len), (OLD, NEW));
    assert_eq!(s.size(), NEW);
    assert_eq!(s.dev_size(Dev::Snap(old)).unwrap(), OLD);
    // the new space is the device's (zeros after truncate), written through the origin
    let tail = pattern(8, (NEW - OLD) as usize);
    s.write(Dev::Origin(0), OLD, &tail).unwrap();
    s.write(Dev::Origin(0), 0, &pattern(9, CS as usize))
        .unwrap();
    let new = s.create_snapshot("new", None, 2).unwrap();
    assert_eq!(s.dev_size(Dev::Snap(new)).unwrap(), NEW);
    let child = s.create_snapshot("child", Some(old), 3).unwrap();
    assert_eq!(
        s.dev_size(Dev::Snap(child)).unwrap(),
        OLD,
        "a child has its parent's size"
    );
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    assert_eq!(read_all(&mut s, Dev::Snap(child)), before);
    let o = read_all(&mut s, Dev::Origin(0));
    assert_eq!(read_all(&mut s, Dev::Snap(new)), o);
    assert_eq!(&o[OLD as usize..], &tail[..]);
    // reads, writes and maps of a snapshot stop at its own size
    let mut b = [0u8; 512];
    let e = s.read(Dev::Snap(old), OLD, &mut b).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    assert!(s.write(Dev::Snap(old), OLD, &b).is_err());
    assert!(s.map(Dev::Snap(old), 0, OLD + 512).is_err());
    assert!(s.map(Dev::Snap(old), 0, OLD).is_ok());
    // a snapshot write into its own short last chunk
    s.write(Dev::Snap(child), OLD - 512, &[5u8; 512]).unwrap();
    let mut want = before.clone();
    want[(OLD - 512) as usize..].fill(5);
    assert_eq!(read_all(&mut s, Dev::Snap(child)), want);
    // diff across sizes: everything past the smaller one differs
    let d = s.diff(Dev::Snap(old), Dev::Snap(new), 0, NEW).unwrap();
    assert_eq!(d.last().map(|r| r.0 + r.1), Some(NEW));
    assert!(d.iter().any(|r| r.0 <= OLD && r.0 + r.1 == NEW), "{d:?}");
    assert!(s.check().unwrap().is_clean());
    // all of it survives a reopen
    s.flush().unwrap();
    drop(s);
    let mut s = Store::open(origin, dev, opts()).unwrap();
    assert_eq!(s.size(), NEW);
    assert_eq!(s.dev_size(Dev::Snap(old)).unwrap(), OLD);
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    assert_eq!(read_all(&mut s, Dev::Snap(child)), want);
    assert_eq!(read_all(&mut s, Dev::Origin(0)), o);
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn chunks_past_every_snapshot_copy_nothing_out() {
    let (origin, _dev, mut s, before) = store();
    let old = s.create_snapshot("old", None, 1).unwrap();
    origin.extend(NEW);
    s.grow_origin(0, NEW).unwrap();
    let u0 = used(&s);
    // chunks 11.. start past the snapshot's 10.5 chunks: no copy-out
    for a in 11..NEW / CS {
        s.write(Dev::Origin(0), a * CS, &pattern(a, CS as usize))
            .unwrap();
    }
    assert_eq!(
        used(&s),
        u0,
        "writes past every snapshot's size used store space"
    );
    // the second half of chunk 10 lies past the snapshot, its first half inside: the
    // chunk copies out whole, once
    s.write(Dev::Origin(0), OLD, &[1u8; (CS / 2) as usize])
        .unwrap();
    assert_eq!(
        used(&s),
        u0 + 1,
        "the snapshot's short last chunk was not copied out"
    );
    s.write(Dev::Origin(0), 10 * CS, &[2u8; CS as usize])
        .unwrap();
    assert_eq!(used(&s), u0 + 1);
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    // a snapshot taken now covers the whole origin: its first writes copy out again
    let new = s.create_snapshot("new", None, 2).unwrap();
    let want = read_all(&mut s, Dev::Origin(0));
    s.write(Dev::Origin(0), 20 * CS, &[3u8; CS as usize])
        .unwrap();
    assert_eq!(used(&s), u0 + 2);
    assert_eq!(read_all(&mut s, Dev::Snap(new)), want);
    // deleting the large snapshot makes the grown part copy-free again
    s.delete_snapshot(new).unwrap();
    s.run_background(100).unwrap();
    let u1 = used(&s);
    s.write(Dev::Origin(0), 21 * CS, &[4u8; CS as usize])
        .unwrap();
    assert_eq!(used(&s), u1);
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn bad_sizes_and_merges_of_a_smaller_snapshot_are_refused() {
    let (origin, _dev, mut s, before) = store();
    let old = s.create_snapshot("old", None, 1).unwrap();
    let txn = s.txn_id();
    let refused = |s: &mut Store, len: u64, says: &str| {
        let e = s.grow_origin(0, len).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{len}: {e}");
        assert!(e.to_string().contains(says), "{len}: {e}");
    };
    refused(&mut s, OLD, "already");
    refused(&mut s, OLD - 512, "cannot shrink");
    refused(&mut s, OLD + 100, "512-byte sectors");
    refused(&mut s, NEW, "extend it first");
    assert_eq!((s.txn_id(), s.size()), (txn, OLD));
    origin.extend(NEW);
    s.grow_origin(0, NEW - CS).unwrap();
    let e = s.merge_snapshot(old).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert!(e.to_string().contains("taken at"), "{e}");
    assert!(!s.is_failed());
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    // a snapshot of the grown origin merges as before
    let same = s.create_snapshot("same", None, 2).unwrap();
    s.write(Dev::Origin(0), 0, &[6u8; CS as usize]).unwrap();
    s.merge_snapshot(same).unwrap();
    s.run_background(100).unwrap();
    assert_eq!(
        &read_all(&mut s, Dev::Origin(0))[..OLD as usize],
        &before[..]
    );
    // a merge in progress refuses a growth
    let m = s.create_snapshot("m", None, 3).unwrap();
    s.write(Dev::Origin(0), 0, &[7u8; CS as usize]).unwrap();
    s.merge_snapshot(m).unwrap();
    let e = s.grow_origin(0, NEW).unwrap_err();
    assert!(matches!(e, Error::Busy(_)), "{e}");
    s.run_background(100).unwrap();
    s.grow_origin(0, NEW).unwrap();
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn a_grown_origin_device_opens_at_the_stores_size_until_grown() {
    let (origin, dev, mut s, before) = store();
    s.flush().unwrap();
    drop(s);
    origin.extend(NEW);
    let mut s = Store::open(origin.clone(), dev.clone(), opts()).unwrap();
    assert_eq!(s.size(), OLD);
    assert_eq!(s.origin_device_len(0).unwrap(), NEW);
    assert_eq!(read_all(&mut s, Dev::Origin(0)), before);
    s.grow_origin(0, NEW).unwrap();
    drop(s);
    let s = Store::open(origin, dev, opts()).unwrap();
    assert_eq!(s.size(), NEW);
}

#[test]
fn shared_growth_under_concurrent_origin_writes() {
    let (origin, _dev, mut s, before) = store();
    let old = s.create_snapshot("old", None, 1).unwrap();
    let shared = Arc::new(SharedStore::new(s));
    let w = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for i in 0..200u64 {
                let a = i % 10;
                shared
                    .write(Dev::Origin(0), a * CS, &pattern(i, CS as usize))
                    .unwrap();
            }
        })
    };
    origin.extend(NEW);
    let g = shared.grow_origin(0, NEW).unwrap();
    assert_eq!(g.new_len, NEW);
    assert_eq!(shared.size(), NEW);
    assert_eq!(shared.dev_size(Dev::Snap(old)).unwrap(), OLD);
    shared
        .write(Dev::Origin(0), NEW - CS, &[9u8; CS as usize])
        .unwrap();
    w.join().unwrap();
    shared.flush(Dev::Origin(0)).unwrap();
    let mut s = shared.lock();
    assert_eq!(read_all(&mut s, Dev::Snap(old)), before);
    assert!(s.check().unwrap().is_clean());
}

#[test]
fn power_cut_at_every_point_of_the_growth() {
    let (origin, dev, mut s, before) = store();
    s.create_snapshot("old", None, 1).unwrap();
    s.write(Dev::Origin(0), 0, &[1u8; CS as usize]).unwrap();
    s.flush().unwrap();
    drop(s);
    let base_origin = origin.crash_image(CrashMode::DropAll, 0);
    let base_store = dev.crash_image(CrashMode::DropAll, 0);
    // after: the growth, then writes into the old last chunk and the new part, flushed
    let mut after = base_origin.clone();
    after.resize(NEW as usize, 0);
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (10 * CS, pattern(11, CS as usize)),
        (15 * CS, pattern(12, 2 * CS as usize)),
    ];
    for (off, d) in &writes {
        after[*off as usize..*off as usize + d.len()].copy_from_slice(d);
    }
    let mut grown_before = base_origin.clone();
    grown_before.resize(NEW as usize, 0);
    let (old_h, new_h) = (sector_hashes(&grown_before), sector_hashes(&after));
    let (mut at_old, mut at_new) = (0, 0);
    let cuts = at_every_power_cut(
        &base_origin,
        &base_store,
        &opts,
        |o, _| o.extend(NEW),
        |s, _| {
            s.grow_origin(0, NEW)?;
            for (off, data) in &writes {
                s.write(Dev::Origin(0), *off, data)?;
            }
            s.flush().map(drop)
        },
        |mut s, what| {
            let len = s.size();
            assert!(len == OLD || len == NEW, "{what}: origin size {len}");
            if len == OLD {
                at_old += 1;
            } else {
                at_new += 1;
            }
            let rep = s.check().unwrap();
            assert!(rep.errors.is_empty(), "{what}: {:?}", rep.errors);
            let sid = Dev::Snap(s.lookup("old").unwrap());
            assert_eq!(read_all(&mut s, sid), before, "{what}: snapshot");
            let got = sector_hashes(&read_all(&mut s, Dev::Origin(0)));
            for (i, h) in got.iter().enumerate() {
                assert!(
                    *h == old_h[i] || *h == new_h[i],
                    "{what}: origin sector {i} reads neither its old nor its new data"
                );
            }
            if len == OLD {
                s.grow_origin(0, NEW)
                    .unwrap_or_else(|e| panic!("{what}: grow again: {e}"));
            }
            for (off, data) in &writes {
                s.write(Dev::Origin(0), *off, data).unwrap();
            }
            s.flush().unwrap();
            assert!(s.check().unwrap().is_clean(), "{what}");
            assert_eq!(read_all(&mut s, sid), before);
            assert_eq!(read_all(&mut s, Dev::Origin(0)), after);
        },
    );
    assert!(
        cuts > 3,
        "the growth and its writes made only {cuts} store writes"
    );
    assert!(
        at_old > 0 && at_new > 0,
        "crashes landed at the old size {at_old} times, at the new {at_new}"
    );
    eprintln!(
        "{cuts} power-cut points, 4 crash modes each: {at_old} at the old size, {at_new} at the new"
    );
}

/// A shared store over memory: an origin of `len` bytes of `seed`'s pattern.
fn mem_store(len: u64, seed: u64) -> (Arc<blockdev::MemDevice>, SharedStore) {
    let origin = Arc::new(blockdev::MemDevice::from_vec(pattern(seed, len as usize)));
    let dev = Arc::new(blockdev::MemDevice::new(400 * CS));
    let s = Store::format(origin.clone(), dev, CS as u32, opts()).unwrap();
    (origin, SharedStore::new(s))
}

fn send_of(s: &SharedStore, b: &str, from: Option<&str>) -> Vec<u8> {
    use exception_store::replicate::{send, SendSpec};
    let id = |n: &str| s.lock().lookup(n).unwrap();
    let spec = SendSpec {
        snap: id(b),
        from: from.map(id),
        stream_id: [7; 16],
        resume_offset: None,
    };
    let mut out = Vec::new();
    send(s, &spec, &mut out, &mut |_| {}).unwrap();
    out
}

fn receive_of(
    s: &SharedStore,
    stream: &[u8],
) -> Result<exception_store::replicate::Received, exception_store::replicate::ReceiveError> {
    use exception_store::replicate::{receive, ReceiveOptions};
    receive(
        s,
        stream,
        None,
        ReceiveOptions::default(),
        &mut |_| Ok(()),
        &mut |_| {},
    )
}

fn snap_bytes(s: &SharedStore, name: &str) -> Vec<u8> {
    let mut st = s.lock();
    let id = st.lookup(name).unwrap();
    read_all(&mut st, Dev::Snap(id))
}

/// Replication of snapshots of different sizes: a stream has B's own size, an
/// incremental from a smaller A carries everything past A's size, and a receiver
/// whose origin has another size refuses (saying to grow it) until it is grown.
#[test]
fn snapshots_of_different_sizes_replicate() {
    let (src_origin, src) = mem_store(OLD, 1);
    src.lock().create_snapshot("a", None, 1).unwrap();
    src_origin.extend(NEW);
    src.grow_origin(0, NEW).unwrap();
    src.write(Dev::Origin(0), 0, &pattern(2, CS as usize))
        .unwrap();
    src.write(Dev::Origin(0), OLD, &pattern(3, (NEW - OLD) as usize))
        .unwrap();
    src.lock().create_snapshot("b", None, 2).unwrap();
    let full_a = send_of(&src, "a", None);
    let incr = send_of(&src, "b", Some("a"));
    // the target: an origin of A's size
    let (dst_origin, dst) = mem_store(OLD, 9);
    receive_of(&dst, &full_a).unwrap();
    assert_eq!(snap_bytes(&dst, "a"), snap_bytes(&src, "a"));
    let e = receive_of(&dst, &incr).unwrap_err();
    assert!(e.to_string().contains("resize-origin"), "{e}");
    assert!(dst.lock().lookup("b").is_none());
    dst_origin.extend(NEW);
    dst.grow_origin(0, NEW).unwrap();
    receive_of(&dst, &incr).unwrap();
    let b = snap_bytes(&dst, "b");
    assert_eq!(b.len() as u64, NEW);
    assert_eq!(b, snap_bytes(&src, "b"));
    assert_eq!(snap_bytes(&dst, "a"), snap_bytes(&src, "a"));
    // a full stream of B into an origin of A's size: refused
    let (_o, small) = mem_store(OLD, 5);
    let e = receive_of(&small, &send_of(&src, "b", None)).unwrap_err();
    assert!(e.to_string().contains(&format!("{NEW}-byte")), "{e}");
    assert!(dst.lock().check().unwrap().errors.is_empty());
}
