//! One ublk queue: its thread's loop that fetches requests, serves them from the
//! [`Target`] synchronously, and commits the results.
use std::sync::Arc;

use libublk::{
    io::{UblkDev, UblkIOCtx, UblkQueue},
    BufDesc, BufDescList, UblkIORes,
};
use parking_lot::Mutex;

use crate::{
    error::ublk_to_io,
    request::{serve, Request},
    Error, Target,
};

/// The first queue-setup failure of a device, reported by `Device::start`.
pub(crate) type SetupFailure = Arc<Mutex<Option<Error>>>;

/// Serve queue `qid` of `dev` until the device stops. Runs on the queue's thread.
pub(crate) fn run(qid: u16, dev: &UblkDev, target: &dyn Target, failure: &SetupFailure) {
    // One buffer per tag; the queue keeps their addresses, so `bufs` outlives `queue`.
    let mut bufs = dev.alloc_queue_io_bufs();
    let queue = match UblkQueue::new(qid, dev)
        .and_then(|q| q.submit_fetch_commands_unified(BufDescList::Slices(Some(&bufs))))
    {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(qid, error = %e, "ublk queue setup failed");
            failure.lock().get_or_insert(Error::QueueSetup {
                qid,
                source: ublk_to_io(e),
            });
            // libublk 0.4.8 keeps its "queue setup failed" notification private, so
            // `start_dev` would wait for this queue's buffers forever. Its public
            // mlock-failure report makes it give up instead; `Device::start` then
            // returns the failure recorded above, not the EPERM.
            dev.notify_buffer_registration_complete(true);
            return;
        }
    };
    tracing::debug!(qid, dev_id = dev.dev_info.dev_id, "ublk queue serving");

    queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, _ctx: &UblkIOCtx| {
        let iod = q.get_iod(tag);
        let buf = bufs[usize::from(tag)].as_mut_slice();
        let res = match Request::decode(iod.op_flags, iod.start_sector, iod.nr_sectors) {
            Ok(req) => serve(target, &req, buf),
            Err(errno) => -errno,
        };
        let desc = BufDesc::Slice(bufs[usize::from(tag)].as_slice());
        if let Err(e) = q.complete_io_cmd_unified(tag, desc, Ok(UblkIORes::Result(res))) {
            tracing::error!(qid = q.get_qid(), tag, error = %e, "ublk commit failed");
        }
    });
    tracing::debug!(qid, dev_id = dev.dev_info.dev_id, "ublk queue stopped");
}
