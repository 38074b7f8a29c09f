//! The growing ops of the [`Service`], online: `grow-store` (the store takes the
//! space its file or block device gained, `exception_store::Store::grow_store`) and
//! `resize-origin` (an origin takes the size its file or block device grew to,
//! `exception_store::Store::grow_origin`). Their offline halves are
//! `offline::grow_offline` and `offline::resize_offline`; the replies
//! ([`GrownStore`], [`ResizedOrigin`]) are the same for both.
//!
//! # Online: resize-origin
//! Of any origin of a pool (`resize-origin NAME`; the first by default). The store
//! grows first (one commit), then the size the origin's ublk device serves
//! (`Target::size_bytes`, read by every request's bounds check), and last the kernel
//! is told (`UBLK_U_CMD_UPDATE_SIZE`), so it never sends a request past what the
//! target serves. Only where the driver offers `UBLK_F_UPDATE_SIZE` (Linux 6.16+):
//! elsewhere a running origin device is refused before anything changes, since the
//! store would serve a size the kernel never shows. Snapshot devices keep their size;
//! NBD connections keep the size they negotiated, new ones see the new size.
use super::Service;
use crate::{
    offline::{target_size, warn_sparse},
    protocol::{GrownStore, ResizedOrigin},
    Error, Result,
};
use exception_store::Dev;

impl Service {
    /// `grow-store`: origin writes go on meanwhile; ones refused for lack of space
    /// succeed once it returns.
    pub fn grow_store(&self, sparse: bool) -> Result<GrownStore> {
        let g = self.store().grow_store(sparse)?;
        warn_sparse(&g);
        let nr_free = self.store().lock().status().nr_free;
        Ok(GrownStore::new(&g, nr_free))
    }

    /// `resize-origin` of origin `origin` (`None`: the first; module
    /// documentation). Refused, changing nothing, on a driver without
    /// `UBLK_F_UPDATE_SIZE` while the origin's device runs.
    pub fn resize_origin(&self, origin: Option<&str>, size: Option<u64>) -> Result<ResizedOrigin> {
        // the device set stays as it is until the kernel has been told
        let devs = self.devices();
        let (k, new_len) = {
            let s = self.store().lock();
            let k = crate::names::origin_or_first(&s, origin)?;
            (k, target_size(&s, k, size)?)
        };
        let dev = devs.get(Dev::Origin(k));
        if let Some(d) = dev {
            if !self.driver_offers(ublk_target::Features::UPDATE_SIZE) {
                return Err(Error::Invalid(format!(
                    "this kernel's ublk driver does not offer UBLK_F_UPDATE_SIZE (Linux \
                     6.16 and later do): the origin's device {} cannot grow while it runs; \
                     nothing changed (stop ublk-snapd, run snapctl resize-origin --store \
                     STORE --origin ORIGIN, and start it again)",
                    d.bdev_path().display()
                )));
            }
        }
        let g = self.store().grow_origin(k, new_len)?;
        // a daemon that dies here leaves a larger store than the kernel's device: the
        // restart's recovery tells the kernel (`ublk_target::Device::recover`)
        crate::crash_point::at("resize-committed");
        let Some(d) = dev else {
            return Ok(ResizedOrigin::new(&g, None));
        };
        let path = d.bdev_path().display().to_string();
        d.update_size(g.new_len).map_err(|e| {
            tracing::error!(device = %path, error = %e, "the kernel refused the new size");
            Error::Invalid(format!(
                "the origin grew to {} bytes (transaction {}), but the kernel refused to \
                 resize {path}: {e}; it serves {} bytes until ublk-snapd restarts",
                g.new_len, g.txn_id.0, g.old_len
            ))
        })?;
        Ok(ResizedOrigin::new(&g, Some(path)))
    }
}
