//! Table records and element values: decode never panics; what decodes re-encodes.
#![no_main]
use btree::{
    elements::{ElemKey, ElemVal},
    Codec,
};
use exception_store::tables::{JobRec, SnapRec, SnapRecRaw, VersionRec};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: Codec + PartialEq>(b: &[u8]) {
    if b.len() < T::SIZE {
        return;
    }
    if let Ok(v) = T::decode(&b[..T::SIZE]) {
        let mut out = vec![0u8; T::SIZE];
        v.encode(&mut out);
        assert!(T::decode(&out).ok() == Some(v));
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<ElemKey>(data);
    roundtrip::<ElemVal>(data);
    roundtrip::<VersionRec>(data);
    roundtrip::<JobRec>(data);
    if data.len() >= exception_store::format::SNAP_REC_SIZE {
        if let Ok(raw) = SnapRecRaw::decode(&data[..exception_store::format::SNAP_REC_SIZE]) {
            let rec = SnapRec::from_raw(&raw).expect("decoded");
            assert_eq!(SnapRec::from_raw(&rec.to_raw()).ok(), Some(rec));
        }
    }
});
