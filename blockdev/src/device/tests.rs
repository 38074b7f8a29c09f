//! Conformance suite run against every [`BlockDevice`] implementation.
use super::*;

/// Exercise the contract every backend must honour.
pub fn conformance(dev: &dyn BlockDevice) {
    let len = dev.len();
    assert!(len >= 64 * 1024, "conformance needs 64 KiB");
    let pattern: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    dev.write_at(&pattern, 1234).unwrap();
    let mut back = vec![0u8; pattern.len()];
    dev.read_at(&mut back, 1234).unwrap();
    assert_eq!(back, pattern);
    // overlapping overwrite
    dev.write_at(&[0xAA; 100], 1300).unwrap();
    let mut b = [0u8; 300];
    dev.read_at(&mut b, 1234).unwrap();
    assert_eq!(&b[..66], &pattern[..66]);
    assert!(b[66..166].iter().all(|&x| x == 0xAA));
    assert_eq!(&b[166..], &pattern[166..300]);
    // edges
    dev.write_at(&[1, 2, 3], len - 3).unwrap();
    let mut e = [0u8; 3];
    dev.read_at(&mut e, len - 3).unwrap();
    assert_eq!(e, [1, 2, 3]);
    assert!(dev.write_at(&[0; 4], len - 3).is_err());
    assert!(dev.read_at(&mut [0; 1], len).is_err());
    assert!(dev.read_at(&mut [0; 1], u64::MAX).is_err());
    dev.flush().unwrap();
    dev.discard(0, 4096).unwrap();
}

#[test]
fn mem_conforms() {
    conformance(&crate::MemDevice::new(1 << 20));
}

#[test]
fn file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let dev = crate::FileDevice::create(&dir.path().join("f"), 1 << 20).unwrap();
    conformance(&dev);
}

#[test]
fn file_grows_only_through_grow_and_never_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let dev = crate::FileDevice::create(&p, 1 << 16).unwrap();
    dev.write_at(b"keep", 100).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(1 << 17).unwrap();
    // extended outside: not addressable until grow
    assert_eq!(dev.len(), 1 << 16);
    assert!(dev.write_at(&[1], 1 << 16).is_err());
    assert_eq!(dev.grow().unwrap(), 1 << 17);
    assert_eq!(dev.len(), 1 << 17);
    dev.write_at(&[1, 2], (1 << 17) - 2).unwrap();
    let mut b = [0u8; 4];
    dev.read_at(&mut b, 100).unwrap();
    assert_eq!(&b, b"keep");
    // shrunk outside: grow reports the smaller size, len stays
    f.set_len(1 << 15).unwrap();
    assert_eq!(dev.grow().unwrap(), 1 << 15);
    assert_eq!(dev.len(), 1 << 17);
}

#[test]
fn file_allocate_gives_the_range_blocks() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    let dev = crate::FileDevice::create(&p, 1 << 20).unwrap();
    let before = std::fs::metadata(&p).unwrap().blocks();
    match dev.allocate(0, 1 << 20) {
        Ok(()) => {
            let after = std::fs::metadata(&p).unwrap().blocks();
            assert!(after * 512 >= (1 << 20), "{before} -> {after} blocks");
        }
        // a filesystem without fallocate (the caller warns and goes on sparse)
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}"),
    }
    assert!(dev.allocate(1 << 20, 1).is_err());
    assert_eq!(dev.len(), 1 << 20);
}

#[test]
fn mem_extends() {
    let dev = crate::MemDevice::new(4096);
    dev.extend(8192);
    assert_eq!(dev.grow().unwrap(), 8192);
    dev.write_at(&[1], 8191).unwrap();
    dev.extend(100);
    assert_eq!(dev.len(), 8192);
}

#[cfg(feature = "testing")]
#[test]
fn faulty_extends_both_images() {
    use crate::CrashMode;
    let dev = crate::FaultyDevice::new(4096);
    dev.extend(8192);
    dev.write_at(&[7], 8000).unwrap();
    assert_eq!(dev.crash_image(CrashMode::DropAll, 0).len(), 8192);
    assert_eq!(dev.crash_image(CrashMode::KeepAll, 0)[8000], 7);
}

#[cfg(feature = "testing")]
#[test]
fn faulty_conforms() {
    conformance(&crate::FaultyDevice::new(1 << 20));
}

/// `start_writeback` of a file: written bytes stay what they are (it only starts
/// their writeback), a range past the end is refused like any I/O, and devices
/// without a cache of their own accept it.
#[test]
fn start_writeback_of_a_file_keeps_its_bytes_and_checks_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let dev = crate::FileDevice::create(&dir.path().join("f"), 1 << 20).unwrap();
    dev.write_at(&[7u8; 8192], 4096).unwrap();
    dev.start_writeback(4096, 8192).unwrap();
    dev.start_writeback(0, 0).unwrap();
    let mut b = [0u8; 8192];
    dev.read_at(&mut b, 4096).unwrap();
    assert_eq!(b, [7u8; 8192]);
    let past = dev.start_writeback((1 << 20) - 4096, 8192).unwrap_err();
    assert_eq!(past.kind(), io::ErrorKind::InvalidInput);
    let mem = crate::MemDevice::new(1 << 16);
    mem.start_writeback(0, 1 << 16).unwrap();
    assert!(mem.start_writeback(1 << 16, 1).is_err());
}
