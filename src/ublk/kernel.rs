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

/// The `status` entry of a running device.
pub fn active_device(snapshot: Option<String>, d: &Device) -> protocol::ActiveDevice {
    let f = d.features();
    protocol::ActiveDevice {
        snapshot,
        device: d.bdev_path().display().to_string(),
        data_path: f.data_path().name().to_owned(),
        features: f.names(),
    }
}

/// The name of every bit of a feature mask (`status`'s `driver_features`), in bit
/// order; unknown bits as `bitN`.
pub fn feature_names(mask: u64) -> Vec<String> {
    Features(mask).names()
}
