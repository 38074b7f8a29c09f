//! `grow-store`: the store takes the space its file or block device gained
//! (`exception_store::Store::grow_store`), online through the daemon
//! ([`Service::grow_store`](crate::service::Service::grow_store)) or offline
//! ([`grow_offline`]). The reply, [`GrownStore`], is the same for both.
use crate::{lock::StoreLock, protocol::GrownStore, service::Service, Error, Result};
use blockdev::FileDevice;
use exception_store::{Grown, Preallocation, Store};
use std::{path::Path, sync::Arc};

fn warn_sparse(g: &Grown) {
    if let Preallocation::Unsupported(why) = &g.preallocation {
        tracing::warn!(
            why,
            "the new part of the store is sparse: a full filesystem can fail copy-outs"
        );
    }
}

impl Service {
    /// `grow-store`: origin writes go on meanwhile; ones refused for lack of space
    /// succeed once it returns.
    pub fn grow_store(&self, sparse: bool) -> Result<GrownStore> {
        let g = self.store().grow_store(sparse)?;
        warn_sparse(&g);
        let nr_free = self.store().lock().status().nr_free;
        Ok(GrownStore::new(&g, nr_free))
    }
}

/// `grow-store --store PATH`: the same on a store no daemon serves (refused while one
/// does). The origin is not needed.
pub fn grow_offline(store: &Path, sparse: bool) -> Result<GrownStore> {
    let _lock = StoreLock::acquire(store)?;
    let dev = FileDevice::open(store).map_err(Error::io("open", store))?;
    let mut s = Store::open_offline(Arc::new(dev))?;
    let g = s.grow_store(sparse)?;
    warn_sparse(&g);
    // it was closed cleanly before (or recovered at this open): say so again
    s.commit_clean_shutdown()?;
    Ok(GrownStore::new(&g, s.status().nr_free))
}
