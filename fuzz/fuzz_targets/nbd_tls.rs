//! The NBD handshake's TLS path, as a client would drive it: the first input byte
//! picks the listener's policy (TLS required, as on TCP, or offered, as on the Unix
//! socket); the rest is what the client sends: options in the clear until an
//! acknowledged `STARTTLS`, then (the TLS layer being transparent here) options of
//! the phase over TLS, parsed from a fresh state. Checked on every input, besides
//! no panic, hang or runaway allocation: with TLS required, no reply before
//! `STARTTLS` but the acknowledgement of `ABORT` or `STARTTLS` is anything but an
//! error, and no export is chosen; over TLS, `STARTTLS` is never acknowledged again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read, Write};
use ublk_snapd::nbd::{
    dirty::Candidate,
    handshake::{self, Catalog, ExportInfo, Outcome, TlsPolicy},
};

/// Reads come from the input; replies are kept for the checks.
struct Wire<'a> {
    input: &'a [u8],
    out: Vec<u8>,
}

impl Read for Wire<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.input.read(b)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        // bounded: a phase has at most MAX_OPTIONS replies of bounded size
        self.out.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Cat;

impl Catalog for Cat {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        let writable = match name {
            "" | "o" => true,
            "s" => false,
            _ => return None,
        };
        Some(ExportInfo {
            name: name.to_owned(),
            size: 1 << 20,
            writable,
            preferred_block: 4096,
            description: "fuzz".into(),
            bitmaps: vec![Candidate {
                name: "a".into(),
                snap: 1,
            }],
        })
    }
    fn names(&self) -> Vec<String> {
        vec!["o".into(), "s".into()]
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

const REPLY_MAGIC: [u8; 8] = [0, 3, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9];

/// Every option reply in `out`: (option, type). Only an `EXPORT_NAME` answer (not
/// an option reply) may follow them; with `whole`, nothing may.
fn replies(out: &[u8], whole: bool) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 20 <= out.len() && out[at..at + 8] == REPLY_MAGIC {
        let (opt, typ, len) = (be32(&out[at + 8..]), be32(&out[at + 12..]), be32(&out[at + 16..]));
        v.push((opt, typ));
        at += 20 + len as usize;
    }
    if whole {
        assert_eq!(at, out.len(), "option replies, whole, and nothing else");
    }
    v
}

const OPT_ABORT: u32 = 2;
const OPT_STARTTLS: u32 = 5;
const REP_ACK: u32 = 1;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let policy = if sel & 1 == 0 {
        TlsPolicy::Required
    } else {
        TlsPolicy::Offered
    };
    let mut w = Wire {
        input: rest,
        out: Vec::new(),
    };
    let Ok(no_zeroes) = handshake::greet(&mut w) else {
        return;
    };
    w.out.clear();
    let first = handshake::options(&mut w, &Cat, policy, no_zeroes);
    if policy == TlsPolicy::Required {
        assert!(!matches!(first, Ok(Outcome::Go(_))), "an export before TLS");
        for (opt, typ) in replies(&w.out, true) {
            let acked = typ == REP_ACK && matches!(opt, OPT_ABORT | OPT_STARTTLS);
            assert!(acked || typ & (1 << 31) != 0, "option {opt} answered {typ:#x} before TLS");
        }
    }
    if !matches!(first, Ok(Outcome::StartTls)) {
        return;
    }
    w.out.clear();
    let second = handshake::options(&mut w, &Cat, TlsPolicy::Done, no_zeroes);
    assert!(!matches!(second, Ok(Outcome::StartTls)), "STARTTLS twice");
    if !matches!(second, Err(_)) {
        for (opt, typ) in replies(&w.out, false) {
            assert!(opt != OPT_STARTTLS || typ != REP_ACK, "STARTTLS acknowledged over TLS");
        }
    }
});
