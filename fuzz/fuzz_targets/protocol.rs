//! The control protocol parser: any line is a request or an error reply, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ublk_snapd::protocol::parse_request(data);
});
