//! `grow_store` through the daemon's control protocol, on a full store served by the
//! origin's ublk target (what the kernel calls): refused while the store file did not
//! grow, then, once it was extended, the new chunks are free, the write refused with
//! ENOSPC goes through, the snapshot keeps its data and the online check is clean.
mod common;

use common::daemon::{remote_code, Fixture, CHUNK};
use exception_store::Dev;
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, Reply},
};
use ublk_target::Target;

const ORIGIN_LEN: u64 = 8 << 20;

#[test]
fn a_full_store_grown_through_the_daemon_accepts_the_refused_write() {
    let f = Fixture::start(ORIGIN_LEN, 2 << 20, Limits::default());
    let s = f.socket.clone();
    let svc = f.service().clone();
    let origin = svc.target(Dev::Origin(0));
    let Reply::Created(c) = request(
        &s,
        Op::Create {
            name: "s1".into(),
            from: None,
            freeze: false,
        },
    )
    .unwrap() else {
        panic!("create")
    };
    let s1 = Dev::Snap(blockdev::ids::SnapId(c.id));
    let data = vec![0xAB; CHUNK as usize];
    let mut n = 0;
    let err = loop {
        match origin.write(n * CHUNK, &data) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < ORIGIN_LEN / CHUNK, "a 2 MiB store took every copy-out");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // not grown: invalid, nothing changed
    let usage = |s: &std::path::Path| match request(s, Op::Status).unwrap() {
        Reply::Status(st) => (st.usage, st.txn_id),
        other => panic!("{other:?}"),
    };
    let before = usage(&s);
    assert_eq!(
        remote_code(request(&s, Op::GrowStore { sparse: false })),
        ErrorCode::Invalid
    );
    assert_eq!(usage(&s), before);
    // extended by hand, then grown online
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.store_path())
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let Reply::GrownStore(g) = request(&s, Op::GrowStore { sparse: false }).unwrap() else {
        panic!("grow_store")
    };
    assert_eq!((g.old_bytes, g.new_bytes), (2 << 20, 16 << 20));
    assert_eq!(g.added_chunks, (14 << 20) / CHUNK);
    let Reply::Status(st) = request(&s, Op::Status).unwrap() else {
        panic!("status")
    };
    assert_eq!(st.usage.nr_chunks, (16 << 20) / CHUNK);
    assert_eq!(st.txn_id, g.txn_id);
    // the refused write, and the rest of the origin, now fit
    for c in n..ORIGIN_LEN / CHUNK {
        origin.write(c * CHUNK, &data).unwrap();
    }
    let mut one = vec![1u8; ORIGIN_LEN as usize];
    svc.store().read(s1, 0, &mut one).unwrap();
    assert!(one.iter().all(|&b| b == 0), "s1 changed");
    let Reply::Checked(r) = request(&s, Op::Check).unwrap() else {
        panic!("check")
    };
    assert!(r.clean, "{r:?}");
}
