//! Space per origin through the daemon's control socket: `origin list` and `status`
//! show what each origin's snapshots hold and its quota; `origin quota` refuses that
//! origin's writes that need more (ENOSPC through its device's target, as the
//! kernel's queues see it) and leaves the other origins alone. Needs no kernel.
mod common;

use common::daemon::{remote_code, Fixture, CHUNK};
use exception_store::Dev;
use std::path::Path;
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    protocol::{ErrorCode, Op, Origin, Reply},
};
use ublk_target::Target;

fn origins(s: &Path) -> Vec<Origin> {
    match request(s, Op::OriginList).unwrap() {
        Reply::Origins(l) => l.origins,
        other => panic!("{other:?}"),
    }
}

fn quota(s: &Path, name: &str, bytes: u64) -> Result<Origin, ErrorCode> {
    match request(
        s,
        Op::OriginQuota {
            name: name.into(),
            quota_bytes: bytes,
        },
    ) {
        Ok(Reply::OriginQuota(o)) => Ok(o),
        other => Err(remote_code(other)),
    }
}

fn create(s: &Path, name: &str) {
    match request(
        s,
        Op::Create {
            name: name.into(),
            from: None,
            freeze: false,
        },
    ) {
        Ok(Reply::Created(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_origin_shows_its_space_and_a_quota_refuses_its_writes_only() {
    let fx = Fixture::start(8 << 20, 32 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    let b = extra.path().join("b.img");
    std::fs::File::create(&b).unwrap().set_len(4 << 20).unwrap();
    match request(
        &fx.socket,
        Op::OriginAdd {
            name: "b".into(),
            device: b.display().to_string(),
        },
    ) {
        Ok(Reply::OriginAdded(o)) => assert_eq!((o.used_bytes, o.quota_bytes), (0, 0)),
        other => panic!("{other:?}"),
    }
    // a quota of a chunk and a half is two chunks
    let o = quota(&fx.socket, "b", CHUNK + CHUNK / 2).unwrap();
    assert_eq!(o.quota_bytes, 2 * CHUNK);
    assert_eq!(
        quota(&fx.socket, "nope", CHUNK).map(drop),
        Err(ErrorCode::NoSuchOrigin)
    );
    create(&fx.socket, "b@s");
    create(&fx.socket, "origin@s");
    let svc = fx.service().clone();
    let (ta, tb) = (svc.target(Dev::Origin(0)), svc.target(Dev::Origin(1)));
    tb.write(0, &[1; 4096]).unwrap();
    tb.write(CHUNK, &[1; 4096]).unwrap();
    let e = tb.write(2 * CHUNK, &[1; 4096]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // the refused write wrote nothing; the chunks b@s owns take writes
    let mut got = [9u8; 4096];
    tb.read(2 * CHUNK, &mut got).unwrap();
    assert_eq!(got, [0; 4096]);
    tb.write(CHUNK + 4096, &[2; 4096]).unwrap();
    // the other origin is not limited
    for c in 0..5 {
        ta.write(c * CHUNK, &[3; 4096]).unwrap();
    }
    let l = origins(&fx.socket);
    let space: Vec<(&str, u64, u64)> = l
        .iter()
        .map(|o| (o.name.as_str(), o.used_bytes, o.quota_bytes))
        .collect();
    assert_eq!(
        space,
        vec![("origin", 5 * CHUNK, 0), ("b", 2 * CHUNK, 2 * CHUNK)]
    );
    match request(&fx.socket, Op::Status).unwrap() {
        Reply::Status(st) => {
            assert_eq!(st.origins, l, "status shows every origin's share");
            assert!(st.usage.nr_used >= 7, "the pool's usage holds both");
            assert_eq!(st.enospc_writes, 1);
        }
        other => panic!("{other:?}"),
    }
    // lifted: the write goes through
    assert_eq!(quota(&fx.socket, "b", 0).unwrap().quota_bytes, 0);
    tb.write(2 * CHUNK, &[1; 4096]).unwrap();
    assert_eq!(origins(&fx.socket)[1].used_bytes, 3 * CHUNK);
}
