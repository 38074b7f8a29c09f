//! `memdisk`: serve a RAM- or file-backed volume as `/dev/ublkbN` until SIGINT/SIGTERM.
//!
//! ```text
//! memdisk [--size-mib N] [--queues N] [--depth N] [--bs 512|4096] [--id N]
//!         [--file PATH] [--user-recovery] [--recover ID]
//! ```
//! Prints the block device path on stdout once it exists. `--file` serves (and
//! creates, at `--size-mib`) a file instead of memory; `--recover ID` takes over device
//! ID after its previous daemon was killed (the device needs `--user-recovery`, and the
//! file so the data survives).
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::FileExt},
    process::ExitCode,
    sync::Arc,
};

use ublk_target::{Device, DeviceOptions, MemTarget, Target};

/// A volume in a regular file: pread/pwrite, fdatasync, hole punching.
struct FileTarget {
    file: File,
    size_bytes: u64,
}

impl FileTarget {
    fn open(path: &str, size_bytes: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let size_bytes = if len == 0 {
            file.set_len(size_bytes)?;
            size_bytes
        } else {
            len
        };
        Ok(FileTarget { file, size_bytes })
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let bad = |_| io::Error::from_raw_os_error(libc::EINVAL);
        let (off, len) = (
            libc::off_t::try_from(offset).map_err(bad)?,
            libc::off_t::try_from(len).map_err(bad)?,
        );
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate only reads its integer arguments; the fd is owned by
        // `self.file` and open for the whole call.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Target for FileTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.punch_hole(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.punch_hole(offset, len)
    }
}

#[derive(Debug, Default)]
struct Args {
    size_mib: u64,
    file: Option<String>,
    recover: Option<u32>,
    opts: DeviceOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        size_mib: 64,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        let small = |n: u64| u16::try_from(n).map_err(|e| format!("{flag}: {e}"));
        let id = |n: u64| u32::try_from(n).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--size-mib" => a.size_mib = num(value()?)?,
            "--queues" => a.opts.nr_queues = small(num(value()?)?)?,
            "--depth" => a.opts.queue_depth = small(num(value()?)?)?,
            "--bs" => a.opts.logical_block_size = id(num(value()?)?)?,
            "--id" => a.opts.dev_id = Some(id(num(value()?)?)?),
            "--file" => a.file = Some(value()?),
            "--user-recovery" => a.opts.user_recovery = true,
            "--recover" => a.recover = Some(id(num(value()?)?)?),
            "-h" | "--help" => {
                return Err("usage: see the module docs of examples/memdisk.rs".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.opts.name = "memdisk".into();
    Ok(a)
}

/// Block SIGINT and SIGTERM in this thread (and every thread it spawns later).
fn block_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(set)
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Wait for one of the signals in `set` (blocked beforehand).
fn wait_for_signal(set: &libc::sigset_t) -> io::Result<i32> {
    let mut sig = 0;
    // SAFETY: both pointers are valid for the call; `set` was initialised above.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc == 0 {
        Ok(sig)
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn run(args: Args) -> Result<(), String> {
    let signals = block_signals().map_err(|e| format!("blocking signals: {e}"))?;
    let size_bytes = args.size_mib << 20;
    let target: Arc<dyn Target> = match &args.file {
        Some(path) => {
            Arc::new(FileTarget::open(path, size_bytes).map_err(|e| format!("{path}: {e}"))?)
        }
        None => Arc::new(MemTarget::new(size_bytes).map_err(|e| e.to_string())?),
    };
    let dev = match args.recover {
        Some(id) => Device::recover(id, target, args.opts),
        None => Device::start(target, args.opts),
    }
    .map_err(|e| format!("starting the device: {e}"))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", dev.bdev_path().display()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);

    let sig = wait_for_signal(&signals).map_err(|e| format!("sigwait: {e}"))?;
    eprintln!(
        "memdisk: signal {sig}, stopping {}",
        dev.bdev_path().display()
    );
    dev.stop()
        .map_err(|e| format!("stopping the device: {e}"))?;
    eprintln!("memdisk: stopped");
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memdisk: {e}");
            ExitCode::FAILURE
        }
    }
}
