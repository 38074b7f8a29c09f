//! The replication stream decoder: any bytes decode to checked records or an error,
//! never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut d) = exception_store::stream::Decoder::new(data) {
        while let Ok(Some(_)) = d.next_record() {}
    }
});
