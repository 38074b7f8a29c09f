use super::*;

#[test]
fn status_fields_parse() {
    let s = "Name:\tublk-snapd\nVmLck:\t  131072 kB\nVmRSS:\t  140000 kB\n";
    assert_eq!(field_kib(s, "VmRSS:"), Some(140_000));
    assert_eq!(field_kib(s, "VmLck:"), Some(131_072));
    assert_eq!(field_kib(s, "VmHWM:"), None);
    assert_eq!(field_kib("VmRSS:\tmany kB\n", "VmRSS:"), None);
    let (rss, _locked) = resident().expect("/proc/self/status has VmRSS and VmLck");
    assert!(rss > 0);
}

/// The flag is per thread and inherited by threads created afterwards (what
/// `prepare` relies on by running before any thread starts); a refusal is EPERM
/// (no CAP_SYS_RESOURCE) or EINVAL (before Linux 5.6) and leaves the flag off.
#[test]
fn io_flusher_is_inherited_by_later_threads() {
    std::thread::spawn(|| {
        assert!(
            !is_io_flusher().unwrap_or(false),
            "a fresh thread is no flusher"
        );
        match set_io_flusher() {
            Ok(()) => {
                assert!(is_io_flusher().expect("PR_GET_IO_FLUSHER after a set"));
                let child = std::thread::spawn(is_io_flusher).join().expect("thread");
                assert!(
                    child.expect("PR_GET_IO_FLUSHER"),
                    "a later thread inherits it"
                );
            }
            Err(e) => {
                let errno = e.raw_os_error();
                assert!(matches!(errno, Some(libc::EPERM | libc::EINVAL)), "{e}");
                assert!(!is_io_flusher().unwrap_or(false));
            }
        }
    })
    .join()
    .expect("test thread");
    assert!(
        !is_io_flusher().unwrap_or(false),
        "other threads are untouched"
    );
}
