//! A minimal NBD client for the tests that need to send what real clients never
//! send (garbage, oversized or out-of-range requests) or to check replies byte for
//! byte: fixed newstyle, `NBD_OPT_STRUCTURED_REPLY`, `NBD_OPT_SET_META_CONTEXT`,
//! `NBD_OPT_GO`, simple and structured replies.
#![allow(clippy::big_endian_bytes)]
use super::daemon::Fixture;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};
use ublk_snapd::{
    daemon::control::Limits,
    nbd::{Listener, Security, Server, Timeouts},
};

/// A daemon fixture (origin of `len` bytes, store of `store_len`) with an NBD server
/// on a Unix socket beside its control socket; the server stops on drop.
pub struct Setup {
    pub fix: Fixture,
    server: Option<Server>,
    pub sock: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

pub fn setup(len: u64, store_len: u64) -> Setup {
    setup_with(
        len,
        store_len,
        Security::default(),
        false,
        Timeouts::default(),
    )
    .0
}

/// [`setup`] with `security`, and (if `tcp`) a TCP listener on 127.0.0.1 too, whose
/// port is returned.
pub fn setup_with(
    len: u64,
    store_len: u64,
    security: Security,
    tcp: bool,
    timeouts: Timeouts,
) -> (Setup, u16) {
    let fix = Fixture::start(len, store_len, Limits::default());
    let sock = fix.socket.with_file_name("nbd.sock");
    let svc = fix.service().clone();
    let mut listeners = vec![Listener::unix(&sock).unwrap()];
    if tcp {
        listeners.push(Listener::tcp("127.0.0.1:0").unwrap());
    }
    let server = Server::start_with(
        svc.store().clone(),
        svc.exports().clone(),
        listeners,
        security,
        timeouts,
    )
    .unwrap();
    let port = server
        .addresses()
        .iter()
        .find_map(|a| {
            a.rsplit_once(':')
                .filter(|_| a.starts_with("tcp:") || a.starts_with("tls:"))
        })
        .map_or(0, |(_, p)| p.parse().unwrap());
    svc.set_nbd_listen(server.addresses().to_vec());
    (
        Setup {
            fix,
            server: Some(server),
            sock,
        },
        port,
    )
}

pub const READ: u16 = 0;
pub const WRITE: u16 = 1;
pub const DISC: u16 = 2;
pub const FLUSH: u16 = 3;
pub const TRIM: u16 = 4;
pub const CACHE: u16 = 5;
pub const WRITE_ZEROES: u16 = 6;
pub const BLOCK_STATUS: u16 = 7;
pub const FLAG_FUA: u16 = 1;
pub const FLAG_NO_HOLE: u16 = 2;
pub const FLAG_REQ_ONE: u16 = 8;

pub struct Client {
    pub s: UnixStream,
    pub size: u64,
    pub flags: u16,
    pub structured: bool,
    /// (id, name) of the contexts the server selected.
    pub contexts: Vec<(u32, String)>,
    cookie: u64,
}

/// One reply: error 0 or an errno; data of a read; (context id, descriptors) of a
/// block status.
#[derive(Debug, Default)]
pub struct Reply {
    pub error: u32,
    pub data: Vec<u8>,
    pub status: Vec<(u32, Vec<(u32, u32)>)>,
}

fn u16be(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn u32be(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}
fn u64be(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

pub fn send_option(s: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut v = Vec::new();
    v.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    s.write_all(&v).unwrap();
}

/// One option reply: (option, type, data).
pub fn option_reply(s: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(u64be(&h), 0x0003_e889_0455_65a9, "option reply magic");
    let mut d = vec![0u8; u32be(&h[16..]) as usize];
    s.read_exact(&mut d).unwrap();
    (u32be(&h[8..]), u32be(&h[12..]), d)
}

/// Read the greeting and send the client flags.
pub fn greet(sock: &Path) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).unwrap();
    assert_eq!(&g[..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s
}

fn name_and(name: &str) -> Vec<u8> {
    let mut v = (name.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

/// Contexts request body: export name, count, queries.
pub fn meta_body(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut v = name_and(export);
    v.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        v.extend_from_slice(&name_and(q));
    }
    v
}

impl Client {
    /// Connect with structured replies and `contexts` (if any), and GO to `export`.
    pub fn connect(sock: &Path, export: &str, contexts: &[&str]) -> Client {
        let mut s = greet(sock);
        send_option(&mut s, 8, &[]);
        assert_eq!(option_reply(&mut s).1, 1, "structured reply ACK");
        let mut selected = Vec::new();
        if !contexts.is_empty() {
            send_option(&mut s, 10, &meta_body(export, contexts));
            loop {
                let (_, t, d) = option_reply(&mut s);
                if t == 1 {
                    break;
                }
                assert_eq!(t, 4, "meta context reply");
                selected.push((u32be(&d), String::from_utf8(d[4..].to_vec()).unwrap()));
            }
        }
        let mut go = name_and(export);
        go.extend_from_slice(&1u16.to_be_bytes());
        go.extend_from_slice(&3u16.to_be_bytes());
        send_option(&mut s, 7, &go);
        let (mut size, mut flags) = (0, 0);
        loop {
            let (_, t, d) = option_reply(&mut s);
            match t {
                1 => break,
                3 if u16be(&d) == 0 => {
                    size = u64be(&d[2..]);
                    flags = u16be(&d[10..]);
                }
                3 => {}
                t => panic!(
                    "GO failed: reply type {t:#x} {:?}",
                    String::from_utf8_lossy(&d)
                ),
            }
        }
        Client {
            s,
            size,
            flags,
            structured: true,
            contexts: selected,
            cookie: 1,
        }
    }

    /// Send a raw request header (and payload).
    pub fn send(&mut self, cmd: u16, flags: u16, offset: u64, len: u32, payload: &[u8]) -> u64 {
        self.cookie += 1;
        let mut v = Vec::new();
        v.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        v.extend_from_slice(&cmd.to_be_bytes());
        v.extend_from_slice(&self.cookie.to_be_bytes());
        v.extend_from_slice(&offset.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(payload);
        self.s.write_all(&v).unwrap();
        self.cookie
    }

    /// Read the (whole) reply to `cookie`.
    pub fn reply(&mut self, cookie: u64) -> Reply {
        let mut r = Reply::default();
        loop {
            let mut m = [0u8; 4];
            self.s.read_exact(&mut m).unwrap();
            match u32be(&m) {
                0x6744_6698 => {
                    let mut h = [0u8; 12];
                    self.s.read_exact(&mut h).unwrap();
                    assert_eq!(u64be(&h[4..]), cookie);
                    r.error = u32be(&h);
                    return r;
                }
                0x668e_33ef => {
                    let mut h = [0u8; 16];
                    self.s.read_exact(&mut h).unwrap();
                    let (flags, typ) = (u16be(&h), u16be(&h[2..]));
                    assert_eq!(u64be(&h[4..]), cookie);
                    let mut d = vec![0u8; u32be(&h[12..]) as usize];
                    self.s.read_exact(&mut d).unwrap();
                    match typ {
                        0 => {}
                        1 => r.data.extend_from_slice(&d[8..]),
                        5 => r.status.push((
                            u32be(&d),
                            d[4..]
                                .chunks(8)
                                .map(|c| (u32be(c), u32be(&c[4..])))
                                .collect(),
                        )),
                        t if t & 0x8000 != 0 => r.error = u32be(&d),
                        t => panic!("unexpected chunk type {t}"),
                    }
                    if flags & 1 != 0 {
                        return r;
                    }
                }
                m => panic!("bad reply magic {m:#x}"),
            }
        }
    }

    pub fn call(&mut self, cmd: u16, flags: u16, offset: u64, len: u32, payload: &[u8]) -> Reply {
        let c = self.send(cmd, flags, offset, len, payload);
        self.reply(c)
    }

    pub fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
        let r = self.call(READ, 0, offset, len, &[]);
        assert_eq!(r.error, 0, "read at {offset}");
        r.data
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> u32 {
        self.call(WRITE, 0, offset, data.len() as u32, data).error
    }
}
