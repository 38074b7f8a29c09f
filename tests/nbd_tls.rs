//! NBD over TLS (`NBD_OPT_STARTTLS`) with clients nobody here wrote: qemu-img with
//! `--object tls-creds-x509` (TLS 1.3, and 1.2 through a GnuTLS priority string),
//! libnbd's `nbdinfo` and `nbdcopy` with `nbds://` and `nbds+unix://` URIs and
//! `tls-certificates=DIR`, Debian's `nbd-client -l` with its certificate options; certificates made by `certtool` (tests/common/tls.rs).
//! Refusals: a client certificate of another CA, a name not in the allow-list, no
//! client certificate, a client that does not trust our CA, a client that skips
//! TLS; and with a raw client: every option before STARTTLS gets
//! `NBD_REP_ERR_TLS_REQD` and tells nothing, and what was negotiated before
//! STARTTLS is forgotten after it (the raw client's TLS is rustls's). The daemon's
//! service and NBD server run in process on temporary files (no kernel needed).
#![allow(clippy::big_endian_bytes)]
mod common;

use common::{
    nbd::{self, Setup},
    pattern,
    tls::Pki,
};
use exception_store::Dev;
use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Output},
    sync::Arc,
};
use ublk_snapd::nbd::{Security, Tls};

const LEN: u64 = 8 << 20;
const REP_ACK: u32 = 1;
const REP_ERR_INVALID: u32 = 0x8000_0003;
const REP_ERR_TLS_REQD: u32 = 0x8000_0005;

/// A server with TLS on its TCP listener and its Unix socket, an exported snapshot
/// "s1" (read-only) and the origin "o" (writable); returns the setup, its port
/// and the contents of s1.
fn tls_setup(pki: &Pki, mutual: bool, allow: &[&str]) -> (Setup, u16, Vec<u8>) {
    let tls = Tls::load(&pki.server_files(mutual, allow)).unwrap();
    let sec = Security {
        tls: Some(tls),
        insecure_tcp: false,
    };
    let (s, port) = nbd::setup_with(LEN, 64 << 20, sec, true, Default::default());

    let svc = s.fix.service();
    let data = pattern(5, LEN as usize);
    svc.store().write(Dev::Origin(0), 0, &data).unwrap();
    svc.create("s1", None, false).unwrap();
    svc.store().write(Dev::Origin(0), 0, &[9; 65536]).unwrap();
    let e = svc.export("s1", false, None).unwrap();
    // status and `snapctl export` say TCP is TLS (nbds:// URIs)
    assert!(
        e.listen.contains(&format!("tls:127.0.0.1:{port}")),
        "{:?}",
        e.listen
    );
    svc.export("origin", true, Some("o")).unwrap();
    (s, port, data)
}

fn output(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (apt-get install qemu-utils libnbd-bin): {e}"))
}

/// Run a tool; panics with its output unless it exits 0.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = output(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run a tool that must fail; returns its stderr.
fn refused(cmd: &str, args: &[&str]) -> String {
    let out = output(cmd, args);
    assert!(
        !out.status.success(),
        "{cmd} {args:?} should have been refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn nbds(port: u16, export: &str, dir: &Path) -> String {
    format!(
        "nbds://127.0.0.1:{port}/{export}?tls-certificates={}",
        dir.display()
    )
}

/// qemu's `--object` and `--image-opts` for export `export` at `port` with the
/// client directory `dir` and GnuTLS priority `prio`.
fn qemu_args(port: u16, export: &str, dir: &Path, prio: Option<&str>) -> (String, String) {
    let mut obj = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        dir.display()
    );
    if let Some(p) = prio {
        obj.push_str(&format!(",priority={p}"));
    }
    let img = format!(
        "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},\
         export={export},tls-creds=tls0"
    );
    (obj, img)
}

#[test]
fn qemu_img_and_libnbd_over_tls_with_client_certificates() {
    let pki = Pki::new();
    let (s, port, data) = tls_setup(&pki, true, &["client1.test"]);
    let good = pki.path("good");
    let dir = tempfile::tempdir().unwrap();
    let want = dir.path().join("want.raw");
    std::fs::write(&want, &data).unwrap();
    // qemu-img: TLS 1.3 (GnuTLS's default), then TLS 1.2 only
    for prio in [None, Some("NORMAL:-VERS-TLS1.3")] {
        let (obj, img) = qemu_args(port, "s1", &good, prio);
        let info = run(
            "qemu-img",
            &[
                "info",
                "--output=json",
                "--object",
                &obj,
                "--image-opts",
                &img,
            ],
        );
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["virtual-size"], LEN, "{prio:?}");
        let conv = dir.path().join("conv.raw");
        run(
            "qemu-img",
            &[
                "convert",
                "--object",
                &obj,
                "--image-opts",
                &img,
                "-O",
                "raw",
                conv.to_str().unwrap(),
            ],
        );
        assert!(std::fs::read(&conv).unwrap() == data, "{prio:?}");
    }
    // libnbd over TCP: info, map, copy out
    let u = nbds(port, "s1", &good);
    let info: serde_json::Value = serde_json::from_str(&run("nbdinfo", &["--json", &u])).unwrap();
    assert_eq!(info["exports"][0]["export-size"], LEN);
    assert_eq!(info["TLS"], true, "{info}");
    let map = run("nbdinfo", &["--map", &u]);
    assert!(map.contains("data"), "{map}");
    let copy = dir.path().join("copy.raw");
    run("nbdcopy", &["--connections=2", &u, copy.to_str().unwrap()]);
    assert!(std::fs::read(&copy).unwrap() == data);
    // and writes into the origin, read back over a second connection
    let src = dir.path().join("src.raw");
    let new = pattern(6, LEN as usize);
    std::fs::write(&src, &new).unwrap();
    let o = nbds(port, "o", &good);
    run("nbdcopy", &[src.to_str().unwrap(), &o]);
    let back = dir.path().join("back.raw");
    run("nbdcopy", &[&o, back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == new);
    // Debian's nbd-client (GnuTLS, TLS 1.2 forced) lists the exports over TLS with
    // its certificate options (attaching a device needs the kernel: tests/vm)
    let g = |f: &str| good.join(f).to_str().unwrap().to_owned();
    let port_s = port.to_string();
    let list = run(
        "nbd-client",
        &[
            "-l",
            "127.0.0.1",
            &port_s,
            "-cacertfile",
            &g("ca-cert.pem"),
            "-certfile",
            &g("client-cert.pem"),
            "-keyfile",
            &g("client-key.pem"),
            "-tlshostname",
            "localhost",
        ],
    );
    assert!(list.lines().any(|l| l.trim() == "s1"), "{list}");
    assert!(list.lines().any(|l| l.trim() == "o"), "{list}");
    // nbds+unix:// on the Unix socket
    let unix = format!(
        "nbds+unix:///s1?socket={}&tls-certificates={}",
        s.sock.display(),
        good.display()
    );
    let info: serde_json::Value =
        serde_json::from_str(&run("nbdinfo", &["--json", &unix])).unwrap();
    assert_eq!(info["TLS"], true, "{info}");
    let copy2 = dir.path().join("copy2.raw");
    run("nbdcopy", &[&unix, copy2.to_str().unwrap()]);
    assert!(std::fs::read(&copy2).unwrap() == data);
}

#[test]
fn refusals_wrong_certificate_unknown_ca_name_not_allowed_no_tls() {
    let pki = Pki::new();
    let (s, port, _) = tls_setup(&pki, true, &["client1.test"]);
    // a certificate of another CA, a name not allowed, no certificate: the server
    // refuses the TLS handshake; a client that does not trust our CA refuses us
    for dir in ["rogue", "other", "anon", "distrust"] {
        let err = refused("nbdinfo", &[&nbds(port, "s1", &pki.path(dir))]);
        eprintln!("{dir}: {err}");
        let (obj, img) = qemu_args(port, "s1", &pki.path(dir), None);
        let qerr = refused(
            "qemu-img",
            &["info", "--object", &obj, "--image-opts", &img],
        );
        eprintln!("{dir}: {qerr}");
        if dir == "distrust" {
            // the client refuses our certificate
            assert!(qerr.contains("certificate"), "{dir}: {qerr}");
            assert!(err.contains("certificate"), "{dir}: {err}");
        } else {
            // we refuse theirs: a fatal alert in the TLS handshake
            assert!(qerr.contains("TLS fatal alert"), "{dir}: {qerr}");
            assert!(err.to_lowercase().contains("alert"), "{dir}: {err}");
        }
    }
    // nbd-client with another CA's certificate, and without TLS
    let r = |f: &str| pki.path("rogue").join(f).to_str().unwrap().to_owned();
    let port_s = port.to_string();
    let err = refused(
        "nbd-client",
        &[
            "-l",
            "127.0.0.1",
            &port_s,
            "-cacertfile",
            &r("ca-cert.pem"),
            "-certfile",
            &r("client-cert.pem"),
            "-keyfile",
            &r("client-key.pem"),
            "-tlshostname",
            "localhost",
        ],
    );
    let _ = err;
    let out = output("nbd-client", &["-l", "127.0.0.1", &port_s]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("s1"), "listed without TLS: {said}");
    assert!(
        !out.status.success() && said.contains("TLS is required"),
        "{said}"
    );
    // a client that skips TLS: the server requires it
    let err = refused("nbdinfo", &[&format!("nbd://127.0.0.1:{port}/s1")]);
    // (libnbd reports NBD_REP_ERR_TLS_REQD to GO as "Operation not supported")
    assert!(err.contains("opt_go"), "{err}");
    let err = refused("qemu-img", &["info", &format!("nbd://127.0.0.1:{port}/s1")]);
    assert!(err.contains("TLS negotiation required"), "{err}");
    // the Unix socket offers TLS but does not require it: the same client gets in
    // there with the right certificate, and in the clear
    let u = format!(
        "nbds+unix:///s1?socket={}&tls-certificates={}",
        s.sock.display(),
        pki.path("other").display()
    );
    refused("nbdinfo", &[&u]);
    run(
        "nbdinfo",
        &[&format!("nbd+unix:///s1?socket={}", s.sock.display())],
    );
}

// ---- a raw client, for what real clients never send ----

fn send_option<S: Write>(s: &mut S, opt: u32, data: &[u8]) {
    let mut v = Vec::new();
    v.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    s.write_all(&v).unwrap();
    s.flush().unwrap();
}

fn option_reply<S: Read>(s: &mut S) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], &0x0003_e889_0455_65a9u64.to_be_bytes());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut d = vec![0u8; len as usize];
    s.read_exact(&mut d).unwrap();
    let opt = u32::from_be_bytes(h[8..12].try_into().unwrap());
    let typ = u32::from_be_bytes(h[12..16].try_into().unwrap());
    (opt, typ, d)
}

fn greet<S: Read + Write>(s: &mut S) {
    let mut g = [0u8; 18];
    s.read_exact(&mut g).unwrap();
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    s.write_all(&3u32.to_be_bytes()).unwrap();
}

fn go_body(export: &str) -> Vec<u8> {
    let mut v = (export.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(export.as_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v
}

/// GO to `export`; returns (size, transmission flags).
fn go<S: Read + Write>(s: &mut S, export: &str) -> (u64, u16) {
    send_option(s, 7, &go_body(export));
    let (mut size, mut flags) = (0, 0);
    loop {
        let (_, t, d) = option_reply(s);
        match t {
            1 => return (size, flags),
            3 if d[..2] == [0, 0] => {
                size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                flags = u16::from_be_bytes(d[10..12].try_into().unwrap());
            }
            3 => {}
            t => panic!("GO: reply {t:#x}"),
        }
    }
}

#[test]
fn tcp_client_that_skips_tls_gets_tls_reqd_and_learns_nothing() {
    let pki = Pki::new();
    let (_s, port, _) = tls_setup(&pki, false, &[]);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    greet(&mut c);
    let meta = {
        let mut v = go_body("s1");
        v.truncate(6);
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(&15u32.to_be_bytes());
        v.extend_from_slice(b"base:allocation");
        v
    };
    // LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT, unknown, EXTENDED
    let opts: [(u32, Vec<u8>); 8] = [
        (3, vec![]),
        (6, go_body("s1")),
        (7, go_body("s1")),
        (8, vec![]),
        (9, meta.clone()),
        (10, meta),
        (99, vec![1, 2, 3]),
        (11, vec![]),
    ];
    for (opt, body) in &opts {
        send_option(&mut c, *opt, body);
        let (o, t, d) = option_reply(&mut c);
        assert_eq!((o, t), (*opt, REP_ERR_TLS_REQD), "option {opt}");
        let text = String::from_utf8_lossy(&d);
        assert!(
            !text.contains("s1") && !text.contains("origin"),
            "option {opt} told {text:?}"
        );
    }
    // STARTTLS with data is invalid; ABORT is acknowledged
    send_option(&mut c, 5, &[1]);
    assert_eq!(option_reply(&mut c).1, REP_ERR_INVALID);
    send_option(&mut c, 2, &[]);
    assert_eq!(option_reply(&mut c).1, REP_ACK);
    // EXPORT_NAME before STARTTLS: closed without a byte
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    greet(&mut c);
    send_option(&mut c, 1, b"s1");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    // TCP without TLS is refused unless asked for by name
    assert!(Security::new(None, true, false).is_err());
    assert!(Security::new(None, true, true).is_ok());
    assert!(Security::new(None, false, false).is_ok());
}

/// A rustls client trusting the test CA.
fn tls_client<S: Read + Write>(
    pki: &Pki,
    sock: S,
) -> rustls::StreamOwned<rustls::ClientConnection, S> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.path("ca-cert.pem")).unwrap();
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn starttls_forgets_what_was_negotiated_before_it() {
    let pki = Pki::new();
    let (s, _port, data) = tls_setup(&pki, false, &[]);
    let mut c = std::os::unix::net::UnixStream::connect(&s.sock).unwrap();
    greet(&mut c);
    // in the clear on the Unix socket (TLS offered, not required)
    send_option(&mut c, 8, &[]);
    assert_eq!(option_reply(&mut c).1, REP_ACK);
    send_option(&mut c, 5, &[]);
    assert_eq!(option_reply(&mut c), (5, REP_ACK, vec![]));
    let mut t = tls_client(&pki, c);
    // structured replies are forgotten: meta contexts need them first
    let mut meta = (2u32).to_be_bytes().to_vec();
    meta.extend_from_slice(b"s1");
    meta.extend_from_slice(&0u32.to_be_bytes());
    send_option(&mut t, 10, &meta);
    assert_eq!(option_reply(&mut t).1, REP_ERR_INVALID);
    // a second STARTTLS is invalid
    send_option(&mut t, 5, &[]);
    assert_eq!(option_reply(&mut t).1, REP_ERR_INVALID);
    let (size, flags) = go(&mut t, "o");
    assert_eq!(size, LEN);
    assert_eq!(
        flags & (1 << 7),
        0,
        "no DF: structured replies were forgotten"
    );
    // a write of 3 MiB and a read of 5 MiB over TLS (simple replies)
    let w = pattern(8, 3 << 20);
    let mut req = Vec::new();
    for (cmd, off, len) in [(1u16, 65536u64, w.len() as u32), (0, 0, 5 << 20)] {
        req.clear();
        req.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&cmd.to_be_bytes());
        req.extend_from_slice(&7u64.to_be_bytes());
        req.extend_from_slice(&off.to_be_bytes());
        req.extend_from_slice(&len.to_be_bytes());
        if cmd == 1 {
            req.extend_from_slice(&w);
        }
        t.write_all(&req).unwrap();
        t.flush().unwrap();
        let mut h = [0u8; 16];
        t.read_exact(&mut h).unwrap();
        assert_eq!(
            &h[..8],
            &[0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0],
            "reply {cmd}"
        );
        if cmd == 0 {
            let mut got = vec![0u8; len as usize];
            t.read_exact(&mut got).unwrap();
            let mut want = data[..len as usize].to_vec();
            want[..65536].fill(9);
            want[65536..65536 + w.len()].copy_from_slice(&w);
            assert!(got == want, "read back over TLS");
        }
    }
}
