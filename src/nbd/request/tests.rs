use super::*;

fn shape() -> Shape {
    Shape {
        size: 1 << 20,
        writable: false,
        structured: true,
        has_contexts: true,
    }
}

fn req(cmd: u16, flags: u16, offset: u64, len: u32) -> Request {
    Request {
        flags,
        cmd,
        cookie: 7,
        offset,
        len,
    }
}

#[test]
fn round_trip_and_magic() {
    let r = req(CMD_READ, CMD_FLAG_DF, 4096, 512);
    let b = encode(&r);
    assert_eq!(decode(&b), Some(r));
    let mut bad = b;
    bad[0] ^= 1;
    assert_eq!(decode(&bad), None);
}

#[test]
fn verdicts() {
    let s = shape();
    assert_eq!(check(&req(CMD_READ, 0, 0, 4096), &s), Verdict::Serve);
    assert_eq!(
        check(&req(CMD_READ, 0, (1 << 20) - 1, 2), &s),
        Verdict::Error(EINVAL)
    );
    assert_eq!(
        check(&req(CMD_READ, 0, u64::MAX, 2), &s),
        Verdict::Error(EINVAL)
    );
    assert_eq!(check(&req(CMD_WRITE, 0, 0, 512), &s), Verdict::Error(EPERM));
    assert_eq!(
        check(&req(CMD_WRITE, 0, 0, (1 << 20) + 1), &s),
        Verdict::Fatal
    );
    assert_eq!(check(&req(CMD_FLUSH, 0, 0, 0), &s), Verdict::Serve);
    assert_eq!(check(&req(CMD_DISC, 0, 0, 0), &s), Verdict::Disconnect);
    assert_eq!(check(&req(99, 0, 0, 0), &s), Verdict::Error(EINVAL));
    assert_eq!(
        check(&req(CMD_READ, CMD_FLAG_FUA, 0, 1), &s),
        Verdict::Error(EINVAL)
    );
    assert_eq!(
        check(&req(CMD_BLOCK_STATUS, 0, 0, 0), &s),
        Verdict::Error(EINVAL)
    );
    let huge = Shape { size: 1 << 40, ..s };
    // any length within the export, past the advertised maximum payload
    assert_eq!(check(&req(CMD_READ, 0, 0, u32::MAX), &huge), Verdict::Serve);
    let huge_w = Shape {
        writable: true,
        ..huge
    };
    assert_eq!(
        check(&req(CMD_WRITE, 0, 0, u32::MAX), &huge_w),
        Verdict::Serve
    );
    let w = Shape {
        writable: true,
        ..s
    };
    assert_eq!(
        check(&req(CMD_WRITE, CMD_FLAG_FUA, 0, 512), &w),
        Verdict::Serve
    );
    assert_eq!(
        check(&req(CMD_TRIM, 0, 1 << 20, 1), &w),
        Verdict::Error(ENOSPC)
    );
    let simple = Shape {
        structured: false,
        ..s
    };
    assert_eq!(
        check(&req(CMD_READ, CMD_FLAG_DF, 0, 1), &simple),
        Verdict::Error(EINVAL)
    );
    assert_eq!(
        check(&req(CMD_BLOCK_STATUS, 0, 0, 512), &simple),
        Verdict::Error(EINVAL)
    );
}

#[test]
fn reply_layouts() {
    let v = simple_reply(0x0102, 5);
    assert_eq!(v.len(), 16);
    assert_eq!(be::get_u32(&v, 0), SIMPLE_REPLY_MAGIC);
    assert_eq!(be::get_u32(&v, 4), 5);
    assert_eq!(be::get_u64(&v, 8), 0x0102);
    let c = block_status_chunk(9, true, 2, &[(4096, 1), (512, 0)]);
    assert_eq!(c.len(), 20 + 4 + 16);
    assert_eq!(be::get_u16(&c, 4), REPLY_FLAG_DONE);
    assert_eq!(be::get_u16(&c, 6), REPLY_TYPE_BLOCK_STATUS);
    assert_eq!(be::get_u32(&c, 16), 20);
    assert_eq!(be::get_u32(&c, 20), 2);
    assert_eq!(be::get_u32(&c, 28), 1);
    let e = error_chunk(9, EIO, "bad");
    assert_eq!(be::get_u32(&e, 16), 9);
    assert_eq!(be::get_u32(&e, 20), EIO);
    assert_eq!(be::get_u16(&e, 24), 3);
}
