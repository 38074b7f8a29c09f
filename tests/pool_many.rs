//! A pool of 64 origins through the daemon (issue 21: "at least 64 tested"): each
//! added online with its own size, written through its own device's target, one
//! group snapshot of all 64 in one commit, then each member read back, a restart
//! that attaches all 64 from their recorded paths, and a clean check. Needs no kernel.
mod common;

use common::daemon::{config, Fixture, CHUNK};
use exception_store::Dev;
use ublk_snapd::{
    client::request,
    daemon::control::Limits,
    protocol::{Op, Reply},
    service::Service,
};
use ublk_target::Target;

const N: usize = 64;

/// Origin `i`'s size: whole chunks, no two alike.
fn size(i: usize) -> u64 {
    (2 + (i as u64 % 7)) * CHUNK
}

#[test]
fn sixty_four_origins_in_one_pool() {
    let mut fx = Fixture::start(4 * CHUNK, 64 << 20, Limits::default());
    let extra = tempfile::tempdir().unwrap();
    let mut names = vec!["origin".to_owned()];
    for i in 1..N {
        let p = extra.path().join(format!("o{i}.img"));
        std::fs::File::create(&p).unwrap().set_len(size(i)).unwrap();
        let name = format!("o{i}");
        match request(
            &fx.socket,
            Op::OriginAdd {
                name: name.clone(),
                device: p.display().to_string(),
            },
        ) {
            Ok(Reply::OriginAdded(o)) => {
                assert_eq!((o.id as usize, o.size_bytes), (i, size(i)))
            }
            other => panic!("{other:?}"),
        }
        names.push(name);
    }
    let svc = fx.service().clone();
    let write_all = |v: u8| {
        for (k, _) in names.iter().enumerate() {
            svc.target(Dev::Origin(k as u32))
                .write(CHUNK, &[v ^ k as u8; 4096])
                .unwrap();
        }
    };
    write_all(1);
    let members = match request(
        &fx.socket,
        Op::CreateGroup {
            name: "all".into(),
            origins: names.clone(),
            freeze: false,
        },
    ) {
        Ok(Reply::GroupCreated(g)) => g.members,
        other => panic!("{other:?}"),
    };
    assert_eq!(members.len(), N);
    write_all(2);
    let check_members = |svc: &Service| {
        let s = svc.store().lock();
        let ids: Vec<_> = (0..N)
            .map(|k| s.lookup_in(k as u32, "all").expect("member"))
            .collect();
        drop(s);
        for (k, id) in ids.into_iter().enumerate() {
            let mut got = [0u8; 4096];
            svc.store().read(Dev::Snap(id), CHUNK, &mut got).unwrap();
            assert_eq!(got, [1 ^ k as u8; 4096], "member of origin {k}");
            svc.store()
                .read(Dev::Origin(k as u32), CHUNK, &mut got)
                .unwrap();
            assert_eq!(got, [2 ^ k as u8; 4096], "origin {k}");
        }
    };
    check_members(&svc);
    drop(svc);
    let (origin, store) = (fx.origin_path(), fx.store_path());
    fx.stop();
    let svc = Service::open(config(&origin, &store)).unwrap();
    assert!(!svc.origins_missing());
    let l = svc.origin_list();
    assert_eq!(l.origins.len(), N);
    for o in &l.origins {
        assert_eq!(o.snapshots, 1);
        assert_eq!(o.used_bytes, CHUNK, "{}: one chunk copied out", o.name);
    }
    check_members(&svc);
    let rep = svc.store().lock().check().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
    svc.shutdown().unwrap();
}
