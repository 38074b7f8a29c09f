use super::*;
use std::io::Cursor;

/// Reads the client's bytes, keeps the server's.
struct Wire {
    input: Cursor<Vec<u8>>,
    out: Vec<u8>,
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.input.read(b)
    }
}

impl Write for Wire {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
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
        (name == "o").then(|| ExportInfo {
            name: name.into(),
            size: 1 << 20,
            writable: true,
            preferred_block: 4096,
            description: String::new(),
            bitmaps: vec![Candidate {
                name: "a".into(),
                snap: 1,
            }],
        })
    }
    fn names(&self) -> Vec<String> {
        vec!["o".into()]
    }
}

fn opt(v: &mut Vec<u8>, o: u32, data: &[u8]) {
    be::put_u64(v, IHAVEOPT);
    be::put_u32(v, o);
    be::put_u32(v, data.len() as u32);
    v.extend_from_slice(data);
}

fn go_body() -> Vec<u8> {
    let mut g = Vec::new();
    be::put_u32(&mut g, 1);
    g.extend_from_slice(b"o");
    be::put_u16(&mut g, 0);
    g
}

fn meta_body(q: &str) -> Vec<u8> {
    let mut m = Vec::new();
    be::put_u32(&mut m, 1);
    m.extend_from_slice(b"o");
    be::put_u32(&mut m, 1);
    be::put_u32(&mut m, q.len() as u32);
    m.extend_from_slice(q.as_bytes());
    m
}

/// (option, reply type) of every reply in `out`.
fn replies(out: &[u8]) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let len = be::get_u32(out, at + 16) as usize;
        v.push((be::get_u32(out, at + 8), be::get_u32(out, at + 12)));
        at += 20 + len;
    }
    v
}

fn wire(input: Vec<u8>) -> Wire {
    Wire {
        input: Cursor::new(input),
        out: Vec::new(),
    }
}

#[test]
fn required_refuses_everything_but_abort_and_starttls() {
    let mut i = Vec::new();
    opt(&mut i, OPT_LIST, &[]);
    opt(&mut i, OPT_STRUCTURED_REPLY, &[]);
    opt(&mut i, OPT_SET_META_CONTEXT, &meta_body("base:allocation"));
    opt(&mut i, OPT_GO, &go_body());
    opt(&mut i, OPT_STARTTLS, &[]);
    let mut w = wire(i);
    let o = options(&mut w, &Cat, TlsPolicy::Required, true).unwrap();
    assert_eq!(o, Outcome::StartTls);
    assert_eq!(
        replies(&w.out),
        [
            (OPT_LIST, REP_ERR_TLS_REQD),
            (OPT_STRUCTURED_REPLY, REP_ERR_TLS_REQD),
            (OPT_SET_META_CONTEXT, REP_ERR_TLS_REQD),
            (OPT_GO, REP_ERR_TLS_REQD),
            (OPT_STARTTLS, REP_ACK),
        ]
    );
    // EXPORT_NAME in the clear closes
    let mut i = Vec::new();
    opt(&mut i, OPT_EXPORT_NAME, b"o");
    let mut w = wire(i);
    assert!(options(&mut w, &Cat, TlsPolicy::Required, true).is_err());
    assert!(w.out.is_empty());
    // ABORT is acknowledged
    let mut i = Vec::new();
    opt(&mut i, OPT_ABORT, &[]);
    let mut w = wire(i);
    assert_eq!(
        options(&mut w, &Cat, TlsPolicy::Required, true).unwrap(),
        Outcome::Left
    );
    assert_eq!(replies(&w.out), [(OPT_ABORT, REP_ACK)]);
}

#[test]
fn after_starttls_the_state_is_fresh() {
    // offered: structured replies and a context before STARTTLS
    let mut i = Vec::new();
    opt(&mut i, OPT_STRUCTURED_REPLY, &[]);
    opt(
        &mut i,
        OPT_SET_META_CONTEXT,
        &meta_body("qemu:dirty-bitmap:a"),
    );
    opt(&mut i, OPT_STARTTLS, &[]);
    let mut w = wire(i);
    let o = options(&mut w, &Cat, TlsPolicy::Offered, true).unwrap();
    assert_eq!(o, Outcome::StartTls);
    assert_eq!(
        replies(&w.out),
        [
            (OPT_STRUCTURED_REPLY, REP_ACK),
            (OPT_SET_META_CONTEXT, REP_META_CONTEXT),
            (OPT_SET_META_CONTEXT, REP_ACK),
            (OPT_STARTTLS, REP_ACK),
        ]
    );
    // over TLS: no structured replies, no contexts; STARTTLS again is invalid
    let mut i = Vec::new();
    opt(&mut i, OPT_SET_META_CONTEXT, &meta_body("base:allocation"));
    opt(&mut i, OPT_STARTTLS, &[]);
    opt(&mut i, OPT_GO, &go_body());
    let mut w = wire(i);
    let Outcome::Go(n) = options(&mut w, &Cat, TlsPolicy::Done, true).unwrap() else {
        panic!("no GO");
    };
    assert!(!n.structured && n.contexts.is_empty() && n.bitmaps.is_empty());
    assert_eq!(n.flags & TF_SEND_DF, 0);
    let r = replies(&w.out);
    assert_eq!(r[0], (OPT_SET_META_CONTEXT, REP_ERR_INVALID));
    assert_eq!(r[1], (OPT_STARTTLS, REP_ERR_INVALID));
}

#[test]
fn without_tls_starttls_is_refused_and_offered_tls_is_optional() {
    let mut i = Vec::new();
    opt(&mut i, OPT_STARTTLS, &[]);
    opt(&mut i, OPT_GO, &go_body());
    let mut w = wire(i);
    assert!(matches!(
        options(&mut w, &Cat, TlsPolicy::Off, true).unwrap(),
        Outcome::Go(_)
    ));
    assert_eq!(replies(&w.out)[0], (OPT_STARTTLS, REP_ERR_POLICY));
    let mut i = Vec::new();
    opt(&mut i, OPT_GO, &go_body());
    let mut w = wire(i);
    assert!(matches!(
        options(&mut w, &Cat, TlsPolicy::Offered, true).unwrap(),
        Outcome::Go(_)
    ));
}

#[test]
fn dirty_bitmaps_are_listed_and_selected() {
    let mut i = Vec::new();
    opt(&mut i, OPT_STRUCTURED_REPLY, &[]);
    opt(
        &mut i,
        OPT_LIST_META_CONTEXT,
        &meta_body("qemu:dirty-bitmap:"),
    );
    opt(
        &mut i,
        OPT_SET_META_CONTEXT,
        &meta_body("qemu:dirty-bitmap:a"),
    );
    opt(&mut i, OPT_GO, &go_body());
    let mut w = wire(i);
    let Outcome::Go(n) = options(&mut w, &Cat, TlsPolicy::Off, true).unwrap() else {
        panic!("no GO");
    };
    assert_eq!(n.bitmaps.len(), 1);
    assert_eq!(n.bitmaps[0].snap, 1);
    assert!(n.contexts.is_empty());
    let listed = replies(&w.out)
        .into_iter()
        .filter(|r| *r == (OPT_LIST_META_CONTEXT, REP_META_CONTEXT))
        .count();
    assert_eq!(listed, 1, "the prefix query lists the bitmap alone");
}
