//! The NBD server under hostile clients, with its memory measured: while 123 idle
//! clients hold connections, one client sends 32 MiB writes without reading a
//! reply, one asks for whole-export reads and never reads, one trickles its
//! handshake a byte at a time, and one reads the whole export in one request, the
//! daemon's resident memory (this process's `VmRSS`, sampled every 10 ms) must
//! stay within [`RSS_GROWTH_MAX`] of what it was before, the non-reading client
//! must be dropped after the write timeout, the trickling one after the handshake
//! deadline, and an honest client (the 128th connection) must be served
//! throughout. The server runs in process with shortened timeouts (1 s writes,
//! 2 s handshakes) so that the test takes seconds. `NBD_HOSTILE_ROUNDS=N` repeats
//! the hostile round N times (the soak, docs/cli.md), under the same bound.
//!
//! Before requests were streamed, the writer alone made the server buffer its
//! queued payloads (16 x 32 MiB per connection), far over the bound.
#![allow(clippy::big_endian_bytes)]
mod common;

use common::{
    nbd::{self, Client},
    pattern,
};
use exception_store::Dev;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use ublk_snapd::nbd::{Security, Timeouts};

const LEN: u64 = 256 << 20;
/// What the hostile clients may add to the resident memory, at most.
const RSS_GROWTH_MAX: u64 = 96 << 20;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

/// Read one reply to a READ of `len` bytes from `s` (structured), dropping the
/// data; returns the bytes of data received.
fn drain_read_reply(s: &mut UnixStream, len: u64) -> u64 {
    let mut got = 0;
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x668e_33ef);
        let flags = u16::from_be_bytes([h[4], h[5]]);
        let typ = u16::from_be_bytes([h[6], h[7]]);
        let n = u32::from_be_bytes(h[16..20].try_into().unwrap()) as u64;
        assert_eq!(typ, 1, "offset data");
        let mut off = [0u8; 8];
        s.read_exact(&mut off).unwrap();
        assert_eq!(u64::from_be_bytes(off), got, "pieces in order");
        std::io::copy(&mut (&mut *s).take(n - 8), &mut std::io::sink()).unwrap();
        got += n - 8;
        if flags & 1 != 0 {
            assert_eq!(got, len);
            return got;
        }
    }
}

/// One round of hostile clients (see the module documentation), with the honest
/// client served meanwhile; every hostile connection is gone at its end.
fn round(svc: &ublk_snapd::service::Service, sock: &std::path::Path, honest: &mut Client) {
    let sock = sock.to_path_buf();
    // 1. 32 MiB writes (4 of them, 128 MiB), no reply read until all are sent
    let writer = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&sock, "o", &[]);
            let piece = pattern(3, 1 << 20);
            let mut cookies = Vec::new();
            for i in 0..4u64 {
                let off = (64 << 20) + i * (32 << 20);
                cookies.push(c.send(nbd::WRITE, 0, off, 32 << 20, &[]));
                for _ in 0..32 {
                    c.s.write_all(&piece).unwrap();
                }
            }
            for k in cookies {
                assert_eq!(c.reply(k).error, 0);
            }
        })
    };
    // 2. whole-export reads, never read
    let mut sleeper = Client::connect(&sock, "o", &[]);
    for _ in 0..16 {
        sleeper.send(nbd::READ, 0, 0, LEN as u32, &[]);
    }
    // 3. a handshake trickled a byte every 200 ms
    let trickler = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut c = UnixStream::connect(&sock).unwrap();
            let mut g = [0u8; 18];
            c.read_exact(&mut g).unwrap();
            let start = Instant::now();
            let bytes = [0u8, 0, 0, 3, b'I', b'H', b'A', b'V', b'E', b'O', b'P', b'T'];
            for b in bytes.iter().cycle().take(100) {
                if c.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
                let mut x = [0u8; 1];
                c.set_nonblocking(true).unwrap();
                let closed = matches!(c.read(&mut x), Ok(0));
                c.set_nonblocking(false).unwrap();
                if closed {
                    break;
                }
            }
            start.elapsed()
        })
    };
    // 4. the whole export in one read, by a client that reads
    let mut big = Client::connect(&sock, "o", &[]);
    let k = big.send(nbd::READ, 0, 0, LEN as u32, &[]);
    let _ = k;
    assert_eq!(drain_read_reply(&mut big.s, LEN), LEN);
    // meanwhile the honest client is served
    for i in 0..20u64 {
        let data = pattern(i, 4096);
        assert_eq!(honest.write(i * 4096, &data), 0);
        assert_eq!(honest.read(i * 4096, 4096), data);
    }
    writer.join().unwrap();
    let trickled = trickler.join().unwrap();
    assert!(
        trickled < Duration::from_millis(3500),
        "the trickling handshake was dropped after {trickled:?}"
    );
    // the non-reading client is dropped by the server (without it reading a
    // byte more): 123 idle, the honest and the big reader are left
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let n = svc.exports().connections().get("o").copied().unwrap_or(0);
        if n == 125 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{n} connections: the non-reader is still served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // what it can still read ends in EOF
    let mut rest = 0u64;
    sleeper
        .s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match sleeper.s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest += n as u64,
            Err(e) => panic!("the non-reading client was not dropped: {e}"),
        }
    }
    assert!(rest < 16 * LEN, "it was dropped before all its replies");
    drop(big);
    drop(sleeper);
    // back to the idle clients and the honest one
    let until = Instant::now() + Duration::from_secs(10);
    while svc.exports().connections().get("o").copied().unwrap_or(0) != 124 {
        assert!(Instant::now() < until, "hostile connections linger");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_clients_bounded_memory_honest_client_served() {
    let timeouts = Timeouts {
        handshake: Duration::from_secs(2),
        write: Duration::from_secs(1),
    };
    let (s, _) = nbd::setup_with(LEN, 64 << 20, Security::default(), false, timeouts);
    let svc = s.fix.service();
    svc.export("origin", true, Some("o")).unwrap();
    let sock = s.sock.clone();
    let mut honest = Client::connect(&sock, "o", &[]);
    assert_eq!(honest.write(0, b"hello"), 0);
    assert_eq!(honest.read(0, 5), b"hello");
    let idle: Vec<Client> = (0..123).map(|_| Client::connect(&sock, "o", &[])).collect();
    let base = rss_bytes();
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let t0 = Instant::now();
    // NBD_HOSTILE_ROUNDS=N repeats the round (a soak: memory must not grow with
    // the rounds either)
    let rounds: u32 = std::env::var("NBD_HOSTILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 0..rounds {
        round(svc, &sock, &mut honest);
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "hostile: VmRSS before {} MiB, peak {} MiB (+{} MiB), {rounds} round(s) in {:?}, 128 connections",
        base >> 20,
        peak >> 20,
        (peak - base) >> 20,
        t0.elapsed()
    );
    assert!(
        peak - base < RSS_GROWTH_MAX,
        "resident memory grew by {} MiB",
        (peak - base) >> 20
    );
    // the writes landed
    let mut got = vec![0u8; 1 << 20];
    svc.store()
        .read(Dev::Origin(0), (64 << 20) + (100 << 20), &mut got)
        .unwrap();
    assert!(got == pattern(3, 1 << 20));
    assert_eq!(honest.read(0, 4096), pattern(0, 4096));
    drop(idle);
}
