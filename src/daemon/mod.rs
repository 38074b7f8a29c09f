//! The process: [`serve`] (open the service, bind the control socket, start the
//! devices, the NBD server and the background worker, answer requests until a
//! signal, shut down cleanly), and daemon mode.
//!
//! - this file: [`serve`].
//! - [`detach`](mod@detach): daemon mode (the detached child, its readiness line).
//! - [`control`]: the control socket server (bounds, peer credentials, one task per
//!   client), generic over a handler, so it is tested without a service.
//! - [`worker`]: background passes and the periodic commit.
//! - [`memory`]: the I/O-flusher mark and locked memory (`main.rs` calls it first).
//!
//! # Invariants
//! The top of the crate: it may use everything below it (the service, NBD, the
//! ublk glue), and nothing but `main.rs` uses it.
use crate::{
    service::{Config, Service},
    Error, Result,
};
use control::Limits;
use std::{path::Path, sync::Arc};
use worker::Worker;

pub mod control;
pub mod detach;
pub mod memory;
pub mod worker;

pub use detach::{detach, enter_child, Outcome, Readiness, CHILD_FLAG};

/// Run the daemon until SIGTERM or SIGINT: open the store, start (or recover) the
/// devices, serve the socket, then shut down cleanly (stop the devices, commit).
pub fn serve(cfg: Config, socket: &Path, ready: &Readiness) -> Result<()> {
    // NBD's TLS files and the TCP-without-TLS refusal: checked before anything starts
    let nbd_security = crate::nbd::Security::new(
        cfg.nbd_tls.as_ref(),
        cfg.nbd_listen.is_some(),
        cfg.nbd_insecure,
    )?;
    ublk_target::check_available()?;
    let cfg_nbd = (cfg.nbd_socket.clone(), cfg.nbd_listen.clone());
    let service = Arc::new(Service::open(cfg)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("start", "the tokio runtime"))?;
    let (mut term, mut int) = rt
        .block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate())?;
            let int = signal(SignalKind::interrupt())?;
            Ok::<_, std::io::Error>((term, int))
        })
        .map_err(Error::io("install", "signal handlers"))?;
    let sock = rt.block_on(async { control::bind(socket) })?;
    let mut listeners = Vec::new();
    if let Some(p) = &cfg_nbd.0 {
        listeners.push(crate::nbd::Listener::unix(p)?);
    }
    if let Some(a) = &cfg_nbd.1 {
        listeners.push(crate::nbd::Listener::tcp(a)?);
    }
    let origin = match service.start_devices() {
        Ok(p) => p,
        Err(e) => {
            service.abort();
            return Err(e);
        }
    };
    let tick: Box<dyn Fn() + Send> = {
        let s = service.clone();
        Box::new(move || s.start_deferred_merge())
    };
    let worker = Worker::start(service.store().clone(), service.progress().clone(), tick)
        .map_err(Error::io("start", "the worker"));
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            service.abort();
            return Err(e);
        }
    };
    let nbd = crate::nbd::Server::start(
        service.store().clone(),
        service.exports().clone(),
        listeners,
        nbd_security,
    );
    let nbd = match nbd {
        Ok(n) => n,
        Err(e) => {
            worker.stop();
            service.abort();
            return Err(e);
        }
    };
    service.set_nbd_listen(nbd.addresses().to_vec());
    tracing::info!(device = %origin, socket = %socket.display(), nbd = ?nbd.addresses(), "ready");
    ready.ready(&origin);
    let handler: control::Handler = {
        let s = service.clone();
        Arc::new(move |op| s.handle(op))
    };
    let streams: control::StreamHandler = {
        let s = service.clone();
        Arc::new(move |op, conn, leftover| s.handle_stream(op, conn, leftover))
    };
    let limits = Limits::default();
    rt.block_on(control::serve_with(
        sock,
        handler,
        Some(streams),
        limits,
        async {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        },
    ));
    nbd.stop();
    worker.stop();
    let r = service.shutdown();
    drop(rt);
    r
}
