//! Codec tests: round trip, every flipped byte and every cut refused, order enforced,
//! random input never panics.
use super::*;
use proptest::prelude::*;

fn header(size: u64) -> Header {
    Header {
        stream_id: [1; 16],
        source_uuid: [2; 16],
        chunk_size: 4096,
        size,
        name: "b@1".into(),
        created: 1_700_000_000,
        guid: [3; 16],
        from_guid: Some([4; 16]),
        resume_offset: None,
    }
}

fn sample() -> (Vec<u8>, Vec<Record>) {
    let recs = vec![
        Record::Data {
            offset: 0,
            data: (0..5000u32).map(|i| i as u8).collect(),
        },
        Record::Zero {
            offset: 8192,
            len: 1 << 20,
        },
        Record::Data {
            offset: (1 << 20) + 8192,
            data: vec![7; 4096],
        },
    ];
    let mut e = Encoder::new(Vec::new(), &header(4 << 20)).unwrap();
    for r in &recs {
        match r {
            Record::Data { offset, data } => e.data(*offset, data).unwrap(),
            Record::Zero { offset, len } => e.zero(*offset, *len).unwrap(),
        }
    }
    (e.finish().unwrap().0, recs)
}

fn decode_all(b: &[u8]) -> Result<(Header, Vec<Record>), StreamError> {
    let mut d = Decoder::new(b)?;
    let mut out = Vec::new();
    while let Some(r) = d.next_record()? {
        out.push(r);
    }
    Ok((d.header().clone(), out))
}

#[test]
fn round_trip() {
    let (b, recs) = sample();
    let (h, got) = decode_all(&b).unwrap();
    assert_eq!(h, header(4 << 20));
    assert_eq!(got, recs);
}

#[test]
fn every_flipped_byte_is_refused() {
    let (b, _) = sample();
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x10;
        let e = decode_all(&c).expect_err("a flipped byte must be refused");
        assert!(!e.is_cut(), "flip at {i} reported as a cut: {e}");
    }
}

#[test]
fn every_cut_is_truncated() {
    let (b, _) = sample();
    for n in 0..b.len() {
        match decode_all(&b[..n]) {
            Err(StreamError::Truncated { at }) => assert_eq!(at, n as u64),
            other => panic!("cut at {n}: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes_refused() {
    let (mut b, _) = sample();
    b.push(0);
    assert!(matches!(decode_all(&b), Err(StreamError::Trailing)));
}

#[test]
fn encoder_refuses_out_of_order_and_out_of_range() {
    let mut e = Encoder::new(Vec::new(), &header(1 << 20)).unwrap();
    e.data(4096, &[1; 10]).unwrap();
    assert!(matches!(
        e.data(0, &[1]),
        Err(StreamError::OutOfOrder { .. })
    ));
    assert!(matches!(
        e.zero(1 << 20, 1),
        Err(StreamError::OutOfRange { .. })
    ));
    assert!(matches!(
        e.zero(8192, 0),
        Err(StreamError::OutOfRange { .. })
    ));
}

#[test]
fn swapped_records_refused_as_out_of_order() {
    // Re-encode the records of the sample in the wrong order, bypassing the encoder's
    // check, with valid crcs everywhere: the decoder must say out of order.
    use super::record::{encode_header, KIND_DATA, KIND_END};
    let h = header(4 << 20).encode();
    let mut b = h.to_vec();
    let d1 = vec![9u8; 100];
    let d0 = vec![8u8; 100];
    b.extend_from_slice(&encode_header(KIND_DATA, 8192, 100, crc32c::crc32c(&d1)));
    b.extend_from_slice(&d1);
    b.extend_from_slice(&encode_header(KIND_DATA, 0, 100, crc32c::crc32c(&d0)));
    b.extend_from_slice(&d0);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&encode_header(KIND_END, 2, 0, crc));
    assert!(matches!(
        decode_all(&b),
        Err(StreamError::OutOfOrder {
            offset: 0,
            prev_end: 8292
        })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_all(&b);
    }

    #[test]
    fn random_corruption_never_panics_and_never_passes(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<Option<usize>>(),
    ) {
        let (mut b, recs) = sample();
        for (i, x) in &edits {
            let n = b.len();
            b[i % n] ^= x;
        }
        if let Some(c) = cut {
            let n = b.len();
            b.truncate(c % n);
        }
        if let Ok((_, got)) = decode_all(&b) {
            // Only edits that cancelled out (x == 0 or a double flip) may pass.
            prop_assert_eq!(got, recs);
        }
    }
}

#[test]
fn committed_fuzz_seeds_decode() {
    // Made independently of this encoder (see fuzz/gen_corpus.rs for their content):
    // the layout of docs/format.md, not just our own round trip.
    let (h, recs) = decode_all(include_bytes!("../../../fuzz/corpus/stream/full")).unwrap();
    assert_eq!(
        (h.name.as_str(), h.size, h.from_guid),
        ("s1", 1 << 20, None)
    );
    assert_eq!(
        recs,
        [
            Record::Data {
                offset: 0,
                data: vec![7; 100]
            },
            Record::Zero {
                offset: 4096,
                len: 8192
            },
            Record::Data {
                offset: 65536,
                data: vec![9; 4096]
            },
        ]
    );
    let (h, recs) = decode_all(include_bytes!(
        "../../../fuzz/corpus/stream/incremental-resumed"
    ))
    .unwrap();
    assert_eq!((h.from_guid, h.resume_offset), (Some([4; 16]), Some(4096)));
    assert_eq!(
        recs,
        [Record::Zero {
            offset: 4096,
            len: 4096
        }]
    );
}
