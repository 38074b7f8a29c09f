//! The daemon tests' fixture: a formatted origin and store on temporary files, the
//! `Service` configuration that opens them, and a control server on a socket beside
//! them, served from its own thread.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    thread,
};
use ublk_snapd::{
    daemon::control::{self, Limits},
    offline::{self, FormatOptions},
    protocol::{ErrorCode, Reply},
    service::{Config, Service},
    Error,
};

/// The chunk size every fixture store is formatted with.
pub const CHUNK: u64 = 64 << 10;

/// A sparse (all-zero) origin of `origin_len` bytes and a store of `store_len`
/// bytes formatted for it, as `dir/origin.img` and `dir/store.img`.
pub fn files(dir: &Path, origin_len: u64, store_len: u64) -> (PathBuf, PathBuf) {
    let origin = dir.join("origin.img");
    std::fs::File::create(&origin)
        .unwrap()
        .set_len(origin_len)
        .unwrap();
    let store = format_store(dir, &origin, store_len);
    (origin, store)
}

/// A store of `store_len` bytes, `dir/store.img`, formatted for `origin`.
pub fn format_store(dir: &Path, origin: &Path, store_len: u64) -> PathBuf {
    let store = dir.join("store.img");
    std::fs::File::create(&store)
        .unwrap()
        .set_len(store_len)
        .unwrap();
    offline::format(&FormatOptions {
        origin: origin.to_path_buf(),
        store: store.clone(),
        chunk_size: CHUNK as u32,
        sparse: true,
    })
    .unwrap();
    store
}

/// A daemon configuration for these files: a 4 MiB cache, no state file.
pub fn config(origin: &Path, store: &Path) -> Config {
    Config {
        origin: origin.to_path_buf(),
        store: store.to_path_buf(),
        cache_bytes: 4 << 20,
        state_dir: None,
        ..Config::default()
    }
}

/// The code of an error reply; panics on anything else.
pub fn remote_code(r: Result<Reply, Error>) -> ErrorCode {
    match r {
        Err(Error::Remote { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// A service on fresh files, served on `socket` until the fixture is stopped or
/// dropped.
pub struct Fixture {
    // Field order is drop order: the service goes before the directory.
    service: Option<Arc<Service>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<thread::JoinHandle<()>>,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Format an origin of `origin_len` bytes and a store of `store_len` bytes,
    /// open them and serve the control socket with `limits`.
    pub fn start(origin_len: u64, store_len: u64, limits: Limits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (origin, store) = files(dir.path(), origin_len, store_len);
        let service = Arc::new(Service::open(config(&origin, &store)).unwrap());
        let socket = dir.path().join("ctl.sock");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sock_path = socket.clone();
        let s = service.clone();
        let server = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sock = control::bind(&sock_path).unwrap();
                ready_tx.send(()).unwrap();
                let s2 = s.clone();
                let handler: control::Handler = Arc::new(move |op| s.handle(op));
                let streams: control::StreamHandler =
                    Arc::new(move |op, conn, left| s2.handle_stream(op, conn, left));
                control::serve_with(sock, handler, Some(streams), limits, async {
                    let _ = rx.await;
                })
                .await;
            });
        });
        ready_rx.recv().unwrap();
        Fixture {
            service: Some(service),
            stop: Some(tx),
            server: Some(server),
            socket,
            dir,
        }
    }

    pub fn service(&self) -> &Arc<Service> {
        self.service.as_ref().unwrap()
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("store.img")
    }

    pub fn origin_path(&self) -> PathBuf {
        self.dir.path().join("origin.img")
    }

    /// Stop the server and shut the service down (releasing the store lock).
    pub fn stop(&mut self) {
        self.stop_server();
        if let Some(s) = self.service.take() {
            s.shutdown().unwrap();
        }
    }

    fn stop_server(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server.take() {
            // A server thread that panicked fails the test, unless it is failing already.
            if t.join().is_err() && !thread::panicking() {
                panic!("the control server thread panicked");
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Retry `write` every 5 ms until it fails (a receive has begun and refuses the
/// origin's writes), and return that error; panics after 30 s.
pub fn until_refused(mut write: impl FnMut() -> std::io::Result<()>) -> std::io::Error {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match write() {
            Err(e) => return e,
            Ok(()) => {
                assert!(std::time::Instant::now() < deadline, "never refused");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
