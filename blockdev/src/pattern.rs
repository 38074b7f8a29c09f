//! [`pattern`]: deterministic pseudo-random bytes for tests (feature `testing`), so
//! that every test writes data that differs per seed and a failure prints a seed,
//! not a buffer.

/// `len` bytes of an xorshift stream seeded by `seed`; the same seed gives the same
/// bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
