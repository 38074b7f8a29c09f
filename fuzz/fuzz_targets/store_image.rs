//! A whole store image: open, check, read every device, dump. Checksums of every block
//! that looks like a superblock or a node are fixed up first, so the fuzzer reaches
//! the structural checks behind them. Errors are fine; panics, hangs and unbounded
//! memory are not.
#![no_main]
use blockdev::{le, BlockDevice, MemDevice};
use exception_store::{Dev, Store};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const BS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if data.len() > 512 * BS {
        return;
    }
    let mut img = data.to_vec();
    img.resize(img.len().div_ceil(BS).max(16) * BS, 0);
    for b in img.chunks_mut(BS) {
        let kind = le::get_u32(b, 4);
        let salt = match kind {
            exception_store::format::SUPERBLOCK_KIND => exception_store::format::SUPERBLOCK_CSUM_SALT,
            btree::format::KIND_LEAF => btree::format::LEAF_CSUM_SALT,
            btree::format::KIND_INTERNAL => btree::format::INTERNAL_CSUM_SALT,
            _ => continue,
        };
        let c = crc32fast::hash(&b[4..]) ^ salt;
        le::put_u32(b, 0, c);
    }
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::from_vec(img));
    let Ok(mut s) = Store::open_offline(dev) else {
        return;
    };
    if s.size() > 1 << 24 {
        return; // reading a huge origin of zeros proves nothing and takes long
    }
    let _ = s.check();
    let _ = s.dump(true);
    let mut devs = vec![Dev::Origin(0)];
    devs.extend(s.snapshots().iter().map(|i| Dev::Snap(i.id)));
    let mut buf = vec![0u8; s.size().min(1 << 20) as usize];
    for d in devs.into_iter().take(8) {
        let _ = s.read(d, 0, &mut buf);
    }
});
