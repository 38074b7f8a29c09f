//! What the kernel's ublk driver offers and what each device uses, for the log and
//! `status`: the driver's feature mask (`UBLK_U_CMD_GET_FEATURES`), read once when the
//! devices start, and each device's own flags and data path.
//!
//! Feature detection, never version checks: a kernel is judged by the bits its
//! driver reports.
use crate::protocol;
use ublk_target::{Device, Features};

/// Read the driver's feature mask and log it; `None` when there is no driver or it
/// does not answer `GET_FEATURES` (kernels before 6.5).
pub fn driver_features() -> Option<Features> {
    match Features::of_driver() {
        Ok(Some(f)) => {
            tracing::info!(
                features = %f,
                offers_zero_copy = f.data_path() == ublk_target::DataPath::ZeroCopy,
                "ublk driver features"
            );
            Some(f)
        }
        Ok(None) => {
            tracing::info!("the ublk driver does not report its features (before 6.5)");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the ublk driver's features");
            None
        }
    }
}

/// Why new devices copy request data although the daemon was asked for zero copy
/// where possible (`--zero-copy auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason {
    /// `--zero-copy off`.
    Off,
    /// The driver lacks auto buffer registration or user copy (6.12), or did not
    /// say what it offers.
    Driver,
    /// `--workers-per-queue N`: requests are served on worker threads, and a
    /// zero-copy request's buffer belongs to its queue's own io_uring.
    Workers(u16),
    /// The origin has no descriptor for fixed-buffer writes.
    Origin,
}

impl CopyReason {
    /// Whether zero copy was asked for and is possible but something the user chose
    /// or the origin turns it off (worth a warning, unlike `Off` and `Driver`).
    pub fn is_surprise(self) -> bool {
        matches!(self, CopyReason::Workers(_) | CopyReason::Origin)
    }
}

impl std::fmt::Display for CopyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyReason::Off => f.write_str("--zero-copy off"),
            CopyReason::Driver => {
                f.write_str("the ublk driver does not offer auto_buf_reg with user_copy")
            }
            CopyReason::Workers(n) => write!(
                f,
                "--workers-per-queue {n}: zero copy needs each queue to serve its requests itself"
            ),
            CopyReason::Origin => f.write_str("the origin takes no fixed-buffer writes"),
        }
    }
}

/// Why a new device would copy (`None`: it will be zero-copy): zero copy `wanted`
/// (`--zero-copy auto`), the `driver`'s features, the queues' `workers`, and whether
/// the origin takes fixed-buffer writes.
pub fn copy_reason(
    wanted: bool,
    driver: Option<Features>,
    workers: u16,
    origin_direct: bool,
) -> Option<CopyReason> {
    if !wanted {
        Some(CopyReason::Off)
    } else if !driver.is_some_and(|f| f.has(ublk_target::ZERO_COPY_FLAGS)) {
        Some(CopyReason::Driver)
    } else if workers > 0 {
        Some(CopyReason::Workers(workers))
    } else if !origin_direct {
        Some(CopyReason::Origin)
    } else {
        None
    }
}

/// The `status` entry of a running device; `copy_reason` is why new devices copy
/// (reported for a device whose data path is copy).
pub fn active_device(
    snapshot: Option<String>,
    d: &Device,
    copy_reason: Option<CopyReason>,
) -> protocol::ActiveDevice {
    let f = d.features();
    let path = f.data_path();
    protocol::ActiveDevice {
        snapshot,
        origin: None,
        device: d.bdev_path().display().to_string(),
        data_path: path.name().to_owned(),
        features: f.names(),
        copy_reason: copy_reason
            .filter(|_| path == ublk_target::DataPath::Copy)
            .map(|r| r.to_string()),
    }
}

/// The name of every bit of a feature mask (`status`'s `driver_features`), in bit
/// order; unknown bits as `bitN`.
pub fn feature_names(mask: u64) -> Vec<String> {
    Features(mask).names()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZC_DRIVER: Option<Features> = Some(Features(0xfffff));

    #[test]
    fn why_a_device_copies() {
        assert_eq!(copy_reason(true, ZC_DRIVER, 0, true), None);
        assert_eq!(
            copy_reason(false, ZC_DRIVER, 0, true),
            Some(CopyReason::Off)
        );
        assert_eq!(
            copy_reason(true, Some(Features(0x1fe)), 4, true),
            Some(CopyReason::Driver)
        );
        assert_eq!(copy_reason(true, None, 0, true), Some(CopyReason::Driver));
        let w = copy_reason(true, ZC_DRIVER, 4, true);
        assert_eq!(w, Some(CopyReason::Workers(4)));
        assert!(w.is_some_and(CopyReason::is_surprise));
        assert!(w.is_some_and(|r| r.to_string().contains("--workers-per-queue 4")));
        assert_eq!(
            copy_reason(true, ZC_DRIVER, 0, false),
            Some(CopyReason::Origin)
        );
        assert!(!CopyReason::Off.is_surprise() && !CopyReason::Driver.is_surprise());
    }
}
