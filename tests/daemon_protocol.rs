//! The control protocol's parsing: what a daemon answers to malformed requests.
use ublk_snapd::protocol::{
    parse_request, to_line, ErrorCode, Op, Reply, Request, Response, PROTOCOL_VERSION,
};

#[test]
fn requests_round_trip() {
    let ops = [
        Op::Create {
            name: "a".into(),
            from: Some("b".into()),
            freeze: false,
        },
        Op::Create {
            name: "a".into(),
            from: None,
            freeze: false,
        },
        Op::Delete { name: "a".into() },
        Op::List,
        Op::Status,
        Op::Activate { name: "a".into() },
        Op::Deactivate { name: "a".into() },
    ];
    for op in ops {
        let line = to_line(&Request::new(op.clone()));
        assert_eq!(line.last(), Some(&b'\n'));
        let back = parse_request(&line[..line.len() - 1]).unwrap();
        assert_eq!(back.op, op);
    }
}

#[test]
fn wire_format_is_stable() {
    let r = parse_request(br#"{"version":1,"op":"create","name":"x"}"#).unwrap();
    assert_eq!(
        r.op,
        Op::Create {
            name: "x".into(),
            from: None,
            freeze: false,
        }
    );
    let line = to_line(&Response::error(ErrorCode::NoSuchSnapshot, "no"));
    assert_eq!(
        std::str::from_utf8(&line).unwrap(),
        "{\"version\":1,\"error\":{\"code\":\"no_such_snapshot\",\"message\":\"no\"}}\n"
    );
}

#[test]
fn bad_requests_get_error_codes() {
    let cases: [(&[u8], ErrorCode); 9] = [
        (b"", ErrorCode::BadRequest),
        (b"not json", ErrorCode::BadRequest),
        (b"[1,2]", ErrorCode::BadRequest),
        (br#"{"op":"list"}"#, ErrorCode::BadRequest),
        (br#"{"version":"1","op":"list"}"#, ErrorCode::BadRequest),
        (
            br#"{"version":2,"op":"list"}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            br#"{"version":1,"op":"frobnicate","name":"x"}"#,
            ErrorCode::BadRequest,
        ),
        (br#"{"version":1,"op":"merge"}"#, ErrorCode::BadRequest),
        (br#"{"version":1,"op":"create"}"#, ErrorCode::BadRequest),
    ];
    for (line, code) in cases {
        let e = parse_request(line).unwrap_err();
        assert_eq!(e.code, code, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn replies_parse_back() {
    let r = Response::new(Reply::Deleted(ublk_snapd::protocol::Changed {
        name: "x".into(),
        txn_id: 9,
    }));
    let line = to_line(&r);
    let back: Response = serde_json::from_slice(&line).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.version, PROTOCOL_VERSION);
}
