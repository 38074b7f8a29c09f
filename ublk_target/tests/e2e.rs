//! Kernel end-to-end tests: real `/dev/ublkbN` devices served from a [`MemTarget`].
//!
//! They need root and the `ublk_drv` module; without them each test prints `SKIP` and
//! passes. On a development host run them in the VM:
//! `CARGO_TARGET_DIR=/tmp/target-ublk cargo test -p ublk_target --test e2e --no-run`, then
//! `bash tests/vm/run.sh ublk_target/tests/vm_e2e.sh`.
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    sync::Arc,
};

use ublk_target::{ublk_available, Device, DeviceOptions, Error, MemTarget, Target};

fn have_ublk(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !(root && ublk_available()) {
        eprintln!("SKIP {test}: needs root and /dev/ublk-control (modprobe ublk_drv)");
        return false;
    }
    true
}

/// A 4 KiB-aligned buffer for O_DIRECT.
struct Aligned(Vec<u8>, usize);

impl Aligned {
    fn new(len: usize) -> Self {
        let v = vec![0u8; len + 4096];
        let skew = v.as_ptr().align_offset(4096);
        Aligned(v, skew)
    }
    fn buf(&mut self, len: usize) -> &mut [u8] {
        &mut self.0[self.1..self.1 + len]
    }
}

fn open_direct(dev: &Device) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev.bdev_path())
}

/// `seed ^ block` stamp, as thinp's Stamper: every 8 bytes name their block.
fn stamp(buf: &mut [u8], seed: u64, first_block: u64) {
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        let block = first_block + (i as u64 * 8) / 4096;
        word.copy_from_slice(&(seed ^ block).to_le_bytes());
    }
}

#[test]
fn write_read_through_the_kernel() -> Result<(), Box<dyn std::error::Error>> {
    if !have_ublk("write_read_through_the_kernel") {
        return Ok(());
    }
    // Inline queues, and queues offloading to worker threads.
    for workers in [0u16, 3] {
        let target = Arc::new(MemTarget::new(32 << 20)?);
        let opts = DeviceOptions {
            nr_queues: 2,
            queue_depth: 16,
            workers_per_queue: workers,
            ..DeviceOptions::default()
        };
        let dev = Device::start(target.clone(), opts)?;
        let f = open_direct(&dev)?;
        let mut a = Aligned::new(1 << 20);
        let buf = a.buf(1 << 20);
        stamp(buf, 0x5eed + u64::from(workers), 256);
        f.write_all_at(buf, 1 << 20)?;
        f.sync_all()?;

        // The target saw exactly what was written ...
        let mut seen = vec![0u8; 1 << 20];
        target.read(1 << 20, &mut seen)?;
        assert!(
            seen == *buf,
            "workers {workers}: target content differs from what was written"
        );
        // ... and the kernel reads it back.
        let mut b = Aligned::new(1 << 20);
        let back = b.buf(1 << 20);
        f.read_exact_at(back, 1 << 20)?;
        assert!(back == &seen[..], "workers {workers}: read back differs");
        drop(f);
        dev.stop()?;
    }
    Ok(())
}

#[test]
fn target_errors_reach_the_reader() -> Result<(), Box<dyn std::error::Error>> {
    if !have_ublk("target_errors_reach_the_reader") {
        return Ok(());
    }
    /// Reads past 1 MiB fail with ENOSPC (an errno the block layer passes through).
    struct HalfBroken(MemTarget);
    impl Target for HalfBroken {
        fn size_bytes(&self) -> u64 {
            self.0.size_bytes()
        }
        fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            if offset >= 1 << 20 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.0.read(offset, buf)
        }
        fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
            self.0.write(offset, buf)
        }
        fn flush(&self) -> io::Result<()> {
            self.0.flush()
        }
        fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
            self.0.discard(offset, len)
        }
        fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
            self.0.write_zeroes(offset, len)
        }
    }
    let dev = Device::start(
        Arc::new(HalfBroken(MemTarget::new(4 << 20)?)),
        DeviceOptions::default(),
    )?;
    let f = open_direct(&dev)?;
    let mut a = Aligned::new(4096);
    f.read_exact_at(a.buf(4096), 0)?;
    let err = f.read_exact_at(a.buf(4096), 2 << 20).unwrap_err();
    // blk_status keeps ENOSPC distinct; anything else would have become EIO.
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    dev.stop()?;
    Ok(())
}

#[test]
fn taken_dev_id_fails_cleanly() -> Result<(), Box<dyn std::error::Error>> {
    if !have_ublk("taken_dev_id_fails_cleanly") {
        return Ok(());
    }
    let first = Device::start(Arc::new(MemTarget::new(1 << 20)?), DeviceOptions::default())?;
    let again = Device::start(
        Arc::new(MemTarget::new(1 << 20)?),
        DeviceOptions {
            dev_id: Some(first.dev_id()),
            ..DeviceOptions::default()
        },
    );
    assert!(
        matches!(again, Err(Error::Ublk { op: "add", .. })),
        "{again:?}"
    );
    assert!(first.bdev_path().exists());
    // Dropping stops and deletes too.
    let path = first.bdev_path();
    drop(first);
    assert!(!path.exists());
    Ok(())
}

#[test]
fn recover_refuses_devices_without_user_recovery() -> Result<(), Box<dyn std::error::Error>> {
    if !have_ublk("recover_refuses_devices_without_user_recovery") {
        return Ok(());
    }
    let dev = Device::start(Arc::new(MemTarget::new(1 << 20)?), DeviceOptions::default())?;
    let r = Device::recover(
        dev.dev_id(),
        Arc::new(MemTarget::new(1 << 20)?),
        DeviceOptions::default(),
    );
    assert!(matches!(r, Err(Error::NotRecoverable { .. })), "{r:?}");
    dev.stop()?;
    Ok(())
}
