//! `create --freeze`: the filesystems mounted on the devices a snapshot captures are
//! frozen (`FIFREEZE`) around it, so the snapshot is filesystem-consistent (no
//! journal to replay), not only crash-consistent.
//!
//! - The mounts are found in `/proc/self/mountinfo` by the devices' major:minor.
//! - The freeze pushes dirty data through our own devices' queues, so it runs on
//!   the control request's thread (never an I/O thread) with no store lock held;
//!   the fence and the create come after it.
//! - A watchdog thaws every frozen filesystem after the timeout whatever happens
//!   (a create that hangs, a panic), and a freeze that does not return within the
//!   timeout aborts the snapshot.
//!
//! # Invariants
//! - Every filesystem this froze is thawed exactly once: by `Frozen`'s drop or by
//!   the watchdog, whichever comes first.
use crate::{Error, Result};
use parking_lot::Mutex;
use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::Duration,
};

/// `_IOWR('X', 119, int)`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `_IOWR('X', 120, int)`.
const FITHAW: libc::c_ulong = 0xC004_5878;

/// What freezes and thaws a mount point (the kernel's ioctls; a fake in tests).
pub(crate) trait Freezer: Send + Sync + 'static {
    /// Freeze the filesystem mounted at `path`.
    fn freeze(&self, path: &Path) -> std::io::Result<()>;
    /// Thaw it.
    fn thaw(&self, path: &Path) -> std::io::Result<()>;
}

/// `FIFREEZE` / `FITHAW` on the mount point.
pub(crate) struct Kernel;

impl Kernel {
    fn ioctl(path: &Path, req: libc::c_ulong) -> std::io::Result<()> {
        let f = std::fs::File::open(path)?;
        let mut arg: libc::c_int = 0;
        // SAFETY: `f` is an open descriptor for the whole call; FIFREEZE and
        // FITHAW take a pointer to an int the kernel does not keep, and `arg`
        // outlives the call.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, &mut arg as *mut libc::c_int) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Freezer for Kernel {
    fn freeze(&self, path: &Path) -> std::io::Result<()> {
        Self::ioctl(path, FIFREEZE)
    }
    fn thaw(&self, path: &Path) -> std::io::Result<()> {
        Self::ioctl(path, FITHAW)
    }
}

/// The mount points of the filesystems on the block devices `devs` (their
/// major:minor), from `mountinfo` (the text of `/proc/self/mountinfo`).
pub(crate) fn mounts_on(mountinfo: &str, devs: &[(u32, u32)]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(majmin), Some(point)) = (f.get(2), f.get(4)) else {
            continue;
        };
        let Some((maj, min)) = majmin.split_once(':') else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) else {
            continue;
        };
        if devs.contains(&(maj, min)) {
            let p = PathBuf::from(unescape(point));
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The major:minor of the block device at `path`.
pub(crate) fn dev_numbers(path: &str) -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(Error::io("stat", path))?;
    let rdev = m.rdev();
    Ok((libc::major(rdev), libc::minor(rdev)))
}

/// Filesystems frozen by [`freeze`]: thawed on drop, or by the watchdog once the
/// timeout has passed, whichever comes first.
pub(crate) struct Frozen {
    left: Arc<Mutex<Vec<PathBuf>>>,
    freezer: Arc<dyn Freezer>,
    done: Option<mpsc::Sender<()>>,
    /// The mount points frozen.
    pub(crate) paths: Vec<PathBuf>,
}

impl Frozen {
    /// Whether the watchdog thawed them already (the timeout passed).
    pub(crate) fn timed_out(&self) -> bool {
        self.left.lock().is_empty() && !self.paths.is_empty()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        thaw_all(&*self.freezer, &self.left);
        if let Some(d) = self.done.take() {
            let _ = d.send(());
        }
    }
}

fn thaw_all(freezer: &dyn Freezer, left: &Mutex<Vec<PathBuf>>) {
    for p in std::mem::take(&mut *left.lock()) {
        match freezer.thaw(&p) {
            Ok(()) => tracing::info!(mount = %p.display(), "thawed"),
            Err(e) => tracing::error!(mount = %p.display(), error = %e, "cannot thaw"),
        }
    }
}

/// Freeze every filesystem of `paths`, each within `timeout` of the start (a
/// freeze still running then aborts it: what was frozen is thawed, the error names
/// the mount). The watchdog thaws them `timeout` after the start at the latest.
pub(crate) fn freeze(
    freezer: Arc<dyn Freezer>,
    paths: Vec<PathBuf>,
    timeout: Duration,
) -> Result<Frozen> {
    let left = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        // the watchdog
        let (left, freezer) = (left.clone(), freezer.clone());
        std::thread::Builder::new()
            .name("freeze-watchdog".into())
            .spawn(move || {
                if done_rx.recv_timeout(timeout).is_err() && !left.lock().is_empty() {
                    tracing::error!(
                        timeout_secs = timeout.as_secs_f64(),
                        "frozen filesystems outlived the freeze timeout: thawing them now"
                    );
                    thaw_all(&*freezer, &left);
                }
            })
            .map_err(Error::io("start", "the freeze watchdog"))?;
    }
    let frozen = Frozen {
        left: left.clone(),
        freezer: freezer.clone(),
        done: Some(done_tx),
        paths: paths.clone(),
    };
    let start = std::time::Instant::now();
    for p in paths {
        // each freeze on its own thread, so that a hung one cannot hold us past
        // the timeout (it thaws what it froze if we gave up meanwhile)
        let (tx, rx) = mpsc::channel();
        let (fz, lf, path) = (freezer.clone(), left.clone(), p.clone());
        std::thread::Builder::new()
            .name("freeze".into())
            .spawn(move || {
                let r = fz.freeze(&path);
                if r.is_ok() {
                    lf.lock().push(path.clone());
                }
                if tx.send(r).is_err() {
                    // given up on: thaw it ourselves (the watchdog may be gone)
                    let mut l = lf.lock();
                    if let Some(i) = l.iter().position(|x| *x == path) {
                        l.remove(i);
                        drop(l);
                        let _ = fz.thaw(&path);
                    }
                }
            })
            .map_err(Error::io("start", "a freeze thread"))?;
        let rest = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(rest) {
            Ok(Ok(())) => tracing::info!(mount = %p.display(), "frozen"),
            Ok(Err(e)) => {
                return Err(Error::Io {
                    what: "freeze",
                    path: p,
                    error: e,
                })
            }
            Err(_) => {
                return Err(Error::Invalid(format!(
                    "freezing {} took longer than the freeze timeout ({:.1} s): no snapshot taken",
                    p.display(),
                    timeout.as_secs_f64()
                )))
            }
        }
    }
    Ok(frozen)
}

/// Thaw `frozen` (if any) and name what was frozen; an error when the watchdog had
/// thawed them before the snapshot was taken (it may then be only crash-consistent).
pub(crate) fn thawed(frozen: Option<Frozen>) -> Result<Vec<String>> {
    let Some(f) = frozen else {
        return Ok(Vec::new());
    };
    let late = f.timed_out();
    let paths: Vec<String> = f.paths.iter().map(|p| p.display().to_string()).collect();
    drop(f);
    if late {
        return Err(Error::Invalid(format!(
            "the snapshot took longer than the freeze timeout: {} was thawed before it \
             (it is crash-consistent, not frozen)",
            paths.join(", ")
        )));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Fake {
        frozen: Mutex<Vec<PathBuf>>,
        thaws: AtomicUsize,
        hang: Option<PathBuf>,
    }

    impl Freezer for Fake {
        fn freeze(&self, path: &Path) -> std::io::Result<()> {
            if self.hang.as_deref() == Some(path) {
                std::thread::sleep(Duration::from_millis(600));
            }
            self.frozen.lock().push(path.to_path_buf());
            Ok(())
        }
        fn thaw(&self, path: &Path) -> std::io::Result<()> {
            self.thaws.fetch_add(1, Ordering::SeqCst);
            let mut f = self.frozen.lock();
            match f.iter().position(|x| x == path) {
                Some(i) => {
                    f.remove(i);
                    Ok(())
                }
                None => Err(std::io::Error::other("not frozen")),
            }
        }
    }

    #[test]
    fn mountinfo_finds_the_devices_mounts() {
        let info = "22 1 259:1 / / rw,relatime - ext4 /dev/nvme0n1p1 rw\n\
                    40 22 259:3 / /mnt/a rw - ext4 /dev/ublkb0 rw\n\
                    41 22 259:4 / /mnt/with\\040space rw - ext4 /dev/ublkb1 rw\n\
                    42 22 259:3 /sub /mnt/bind rw - ext4 /dev/ublkb0 rw\n\
                    garbage\n";
        assert_eq!(
            mounts_on(info, &[(259, 3), (259, 4)]),
            vec![
                PathBuf::from("/mnt/a"),
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/mnt/bind")
            ]
        );
        assert!(mounts_on(info, &[(7, 0)]).is_empty());
    }

    #[test]
    fn frozen_filesystems_thaw_once_on_drop() {
        let fake = Arc::new(Fake::default());
        let f = freeze(
            fake.clone(),
            vec!["/a".into(), "/b".into()],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(fake.frozen.lock().len(), 2);
        drop(f);
        assert!(fake.frozen.lock().is_empty());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(fake.thaws.load(Ordering::SeqCst), 2, "each thawed once");
    }

    #[test]
    fn the_watchdog_thaws_what_outlives_the_timeout() {
        let fake = Arc::new(Fake::default());
        let f = freeze(fake.clone(), vec!["/a".into()], Duration::from_millis(200)).unwrap();
        // the snapshot hangs: the watchdog thaws at the timeout, not at the drop
        std::thread::sleep(Duration::from_millis(500));
        assert!(fake.frozen.lock().is_empty(), "thawed by the watchdog");
        assert!(f.timed_out());
        drop(f);
        assert_eq!(fake.thaws.load(Ordering::SeqCst), 1, "not thawed twice");
    }

    #[test]
    fn a_freeze_that_hangs_past_the_timeout_aborts_and_is_thawed() {
        let fake = Arc::new(Fake {
            hang: Some("/slow".into()),
            ..Fake::default()
        });
        let t = std::time::Instant::now();
        let r = freeze(
            fake.clone(),
            vec!["/a".into(), "/slow".into()],
            Duration::from_millis(300),
        );
        assert!(r.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(550),
            "gave up at the timeout"
        );
        // the hung freeze returns later: it is thawed then, as /a was on the abort
        std::thread::sleep(Duration::from_millis(600));
        assert!(fake.frozen.lock().is_empty(), "{:?}", fake.frozen.lock());
    }
}
