//! The `rbd diff v1` reader (`receive --format rbd-diff`): any bytes are extents or
//! an error, never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = exception_store::stream::rbd_diff::Reader::new(data) {
        while let Ok(Some(_)) = r.next_record() {}
    }
});
