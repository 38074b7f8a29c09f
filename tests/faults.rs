//! I/O errors from the devices: for every write (and every flush) of a fixed workload,
//! fail exactly that one, then check that nothing panicked, that the failing call
//! returned an I/O error, that a failed metadata write latches the store (further
//! changes refused with `PreviousIo`, reads still served), and that after reopening
//! every device reads what it held at the last flush that succeeded, except that the
//! step that failed may have landed in part (sector by sector, as on any disk).
mod common;

use blockdev::{BlockDevice, CrashMode, FaultyDevice};
use common::*;
use exception_store::{Dev, Error, Store};
use std::sync::Arc;

const CS: u64 = 4096;

/// A workload of 40 steps with a flush after each; returns the model after each step.
fn workload(s: &mut Store, m: &mut Model, upto: usize) -> Result<Vec<Model>, (usize, Error)> {
    let mut states = Vec::new();
    let mut snaps = Vec::new();
    for i in 0..40usize.min(upto) {
        let r = (|| -> Result<(), Error> {
            match i % 8 {
                0 => {
                    let id = s.create_snapshot(
                        &format!("f{i}"),
                        snaps.first().copied().filter(|_| i % 16 == 8),
                        i as u64,
                    )?;
                    let src = if i % 16 == 8 && !snaps.is_empty() {
                        Dev::Snap(snaps[0])
                    } else {
                        Dev::Origin(0)
                    };
                    m.devs.insert(Dev::Snap(id), m.devs[&src].clone());
                    snaps.push(id);
                }
                5 if snaps.len() > 2 => {
                    let id = snaps.remove(1);
                    s.delete_snapshot(id)?;
                    m.devs.remove(&Dev::Snap(id));
                }
                k => {
                    let d = if k % 2 == 0 || snaps.is_empty() {
                        Dev::Origin(0)
                    } else {
                        Dev::Snap(*snaps.last().unwrap())
                    };
                    let off = (i as u64 * 5 % 12) * CS + 512 * (k as u64 % 3);
                    let data = pattern(i as u64, 2 * CS as usize);
                    s.write(d, off, &data)?;
                    m.write(d, off, &data);
                }
            }
            s.background_step(2)?;
            s.flush()?;
            Ok(())
        })();
        if let Err(e) = r {
            return Err((i, e));
        }
        states.push(m.clone());
    }
    Ok(states)
}

fn fresh() -> (Arc<FaultyDevice>, Arc<FaultyDevice>, Store, Model) {
    let origin = Arc::new(FaultyDevice::from_vec(pattern(3, 16 * CS as usize)));
    let dev = Arc::new(FaultyDevice::new(4 << 20));
    let mut s = Store::format(origin.clone(), dev.clone(), CS as u32, opts()).unwrap();
    let m = Model::new(read_all(&mut s, Dev::Origin(0)));
    (origin, dev, s, m)
}

#[test]
fn every_failed_write_or_flush_is_an_error_and_loses_nothing_flushed() {
    // count the store writes and flushes of the whole workload
    let (_o, dev, mut s, mut m) = fresh();
    let (_, w0, f0) = dev.counts();
    let full = workload(&mut s, &mut m, usize::MAX).unwrap();
    let (_, w1, f1) = dev.counts();
    let (nw, nf) = (w1 - w0, f1 - f0);
    assert!(nw > 100 && nf > 40, "{nw} writes, {nf} flushes");
    // the campaign's figure (README "Measured"): `cargo test --test faults -- --nocapture`
    eprintln!("faults: failing each of {nw} store writes and {nf} flushes in turn");
    for (kind, n) in (0..nw)
        .map(|n| ("write", n))
        .chain((0..nf).map(|n| ("flush", n)))
    {
        let (origin, dev, mut s, mut m) = fresh();
        {
            let plan = dev.plan();
            let mut p = plan.lock();
            if kind == "write" {
                p.fail_write_in = Some(n);
            } else {
                p.fail_flush_in = Some(n);
            }
        }
        let (step, err) = match workload(&mut s, &mut m, usize::MAX) {
            Ok(_) => panic!("{kind} {n}: the injected failure went unnoticed"),
            Err(x) => x,
        };
        assert!(
            matches!(err, Error::Io { .. } | Error::PreviousIo),
            "{kind} {n}: {err}"
        );
        if s.is_failed() {
            // latched: no more changes, reads still served
            assert!(matches!(
                s.write(Dev::Origin(0), 0, &[1; 512]),
                Err(Error::PreviousIo)
            ));
            let _ = read_all(&mut s, Dev::Origin(0));
        }
        // what is on the media now (unflushed writes lost) opens clean and holds every
        // flushed step
        let img = Arc::new(dev.crash(CrashMode::DropAll, 0));
        let oimg: Arc<dyn BlockDevice> = Arc::new(origin.crash(CrashMode::DropAll, 0));
        let mut s2 = Store::open(oimg, img, opts())
            .unwrap_or_else(|e| panic!("{kind} {n} (step {step}): reopen: {e}"));
        assert!(s2.check().unwrap().errors.is_empty(), "{kind} {n}");
        let want = if step == 0 {
            Model::new(full[0].devs[&Dev::Origin(0)].clone())
        } else {
            full[step - 1].clone()
        };
        for (d, v) in &want.devs {
            if let Dev::Snap(_) = d {
                if !s2.exists(*d) && !full[step].devs.contains_key(d) {
                    continue; // deleted by the failing step, whose commit landed
                }
                if !s2.exists(*d) {
                    panic!("{kind} {n} (step {step}): flushed snapshot {d:?} lost");
                }
            }
            let got = read_all(&mut s2, *d);
            // the failing step itself may have landed in part, sector by sector, like
            // any write that was never acknowledged by a flush
            let next = full[step].devs.get(d).unwrap_or(v);
            for (i, sec) in got.chunks(512).enumerate() {
                let r = i * 512..(i * 512 + sec.len());
                assert!(
                    sec == &v[r.clone()] || sec == &next[r],
                    "{kind} {n} (step {step}): {d:?} sector {i} holds neither the flushed nor the new data"
                );
            }
        }
    }
}

#[test]
fn failed_origin_read_or_write_is_reported_not_latched() {
    let (origin, _dev, mut s, _m) = fresh();
    let id = s.create_snapshot("s", None, 0).unwrap();
    origin.plan().lock().fail_write_in = Some(0);
    assert!(matches!(
        s.write(Dev::Origin(0), 0, &[9; 4096]),
        Err(Error::Io {
            device: "origin",
            ..
        })
    ));
    assert!(!s.is_failed());
    // the snapshot still reads the old data; the store keeps working
    s.write(Dev::Origin(0), 0, &[9; 4096]).unwrap();
    let mut b = vec![0u8; 4096];
    s.read(Dev::Snap(id), 0, &mut b).unwrap();
    assert_eq!(b, pattern(3, 16 * 4096)[..4096]);
    origin.plan().lock().fail_read_in = Some(0);
    assert!(s.read(Dev::Origin(0), 0, &mut b).is_err());
    s.read(Dev::Origin(0), 0, &mut b).unwrap();
    assert_eq!(b, vec![9; 4096]);
}

/// The origin's flush runs beside the store's commit (a FLUSH, a snapshot create).
/// A failed origin flush: a FLUSH reports it and the store stays writable; a create
/// fails and latches the store, so the snapshot, whose origin data may not be
/// durable, never commits.
#[test]
fn failed_origin_flush_fails_the_flush_and_never_commits_a_create() {
    let (origin, dev, mut s, _m) = fresh();
    s.write(Dev::Origin(0), 0, &[7; 4096]).unwrap();
    origin.plan().lock().fail_flush_in = Some(0);
    assert!(matches!(
        s.flush(),
        Err(Error::Io {
            device: "origin",
            ..
        })
    ));
    assert!(!s.is_failed());
    s.flush().unwrap();

    origin.plan().lock().fail_flush_in = Some(0);
    assert!(s.create_snapshot("t", None, 0).is_err());
    assert!(
        s.is_failed(),
        "a create whose origin flush failed latches the store"
    );
    assert!(s.commit().is_err());
    drop(s);
    let img: Arc<dyn BlockDevice> = Arc::new(dev.crash(CrashMode::KeepAll, 0));
    let mut s = Store::open(origin, img, opts()).unwrap();
    assert!(
        s.snapshots().is_empty(),
        "the failed create never committed"
    );
    assert!(s.check().unwrap().is_clean());

    // SharedStore's FLUSH (the daemon's) reports it too
    let (origin, _dev, s, _m) = fresh();
    let shared = exception_store::SharedStore::new(s);
    shared.write(Dev::Origin(0), 0, &[7; 4096]).unwrap();
    origin.plan().lock().fail_flush_in = Some(0);
    assert!(matches!(
        shared.flush(Dev::Origin(0)),
        Err(Error::Io {
            device: "origin",
            ..
        })
    ));
    shared.flush(Dev::Origin(0)).unwrap();
}
