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

#[cfg(feature = "testing")]
#[test]
fn faulty_conforms() {
    conformance(&crate::FaultyDevice::new(1 << 20));
}
