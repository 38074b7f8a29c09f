//! `ublk-snapd`: serve an origin and its snapshots as ublk block devices.
//! See `docs/cli.md`.
use clap::Parser;
use exception_store::SpacePolicy;
use std::{path::PathBuf, process::ExitCode};
use ublk_snapd::{
    daemon::{self, Outcome, Readiness},
    exit, offline,
    service::Config,
    DEFAULT_RUN_DIR, DEFAULT_SOCKET,
};
use ublk_target::DeviceOptions;

/// Serve an origin device and its snapshots as ublk block devices (/dev/ublkbN).
///
/// Without --foreground the daemon detaches and this command exits once the devices
/// exist, printing the origin's device; with it, it prints the device and keeps
/// running until SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "ublk-snapd", version)]
struct Args {
    /// The origin: a file or block device.
    #[arg(long, value_name = "PATH")]
    origin: PathBuf,
    /// The exception store (formatted with `snapctl format`).
    #[arg(long, value_name = "PATH")]
    store: PathBuf,
    /// The control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Stay in the foreground (logs on stderr).
    #[arg(long)]
    foreground: bool,
    /// Queues (threads) per device.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Requests in flight per queue.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    queue_depth: u16,
    /// Worker threads per queue: up to N requests of a queue are served at once (a
    /// request waiting for a commit does not stall the others); 0 serves them one at
    /// a time on the queue's own thread (origin writes then share one commit per
    /// batch). At most --queue-depth. Measured to pay only when the store's flushes
    /// are slow (tests/vm/bench_queue.sh), hence 0 by default.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=4096))]
    workers_per_queue: u16,
    /// How origin reads outside a merge are done: `uring` reads the origin file with
    /// the queue's io_uring (many in flight per queue), `sync` with a blocking pread
    /// on the queue (or worker) thread.
    #[arg(long, value_name = "HOW", default_value = "uring", value_parser = ["uring", "sync"])]
    origin_reads: String,
    /// Zero copy where the kernel's ublk driver offers it (auto buffer registration,
    /// 7.x kernels): `auto` uses it there and copies elsewhere (6.12), `off` always
    /// copies request data through the daemon. `snapctl status` shows each device's
    /// data path.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "off"])]
    zero_copy: String,
    /// Metadata cache, MiB.
    #[arg(long, value_name = "N", default_value_t = 64)]
    cache_mb: usize,
    /// What a full store does to origin writes: fail them with ENOSPC, or delete the
    /// oldest snapshots that are not held until the write fits.
    #[arg(long, value_name = "POLICY", default_value = "fail", value_parser = parse_space_policy)]
    space_policy: SpacePolicy,
    /// Store space kept free (e.g. 1G): origin writes that would use it act as if the
    /// store were full. Rounded up to whole chunks.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = offline::parse_size_u64)]
    min_free: u64,
    /// The NBD server's Unix socket (mode 0600). Default: beside the control
    /// socket, its name with `.nbd.sock` for `.sock` (/run/ublk-snap/ublk-snapd.nbd.sock).
    #[arg(long, value_name = "PATH")]
    nbd_socket: Option<PathBuf>,
    /// Also serve NBD on TCP, HOST:PORT. Needs TLS (--nbd-tls-cert, --nbd-tls-key),
    /// which TCP clients must then start, unless --nbd-listen-insecure.
    #[arg(long, value_name = "HOST:PORT")]
    nbd_listen: Option<String>,
    /// Serve NBD on TCP without TLS: no encryption, no authentication (a trusted
    /// network or loopback only).
    #[arg(long, requires = "nbd_listen")]
    nbd_listen_insecure: bool,
    /// NBD TLS: the server's certificate chain (PEM). With it, TCP clients must
    /// STARTTLS; the Unix socket offers TLS (nbds+unix://) but does not require it.
    #[arg(long, value_name = "PEM", requires = "nbd_tls_key")]
    nbd_tls_cert: Option<PathBuf>,
    /// NBD TLS: the server's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "nbd_tls_cert")]
    nbd_tls_key: Option<PathBuf>,
    /// NBD TLS: clients must present a certificate signed by this CA (PEM).
    #[arg(long, value_name = "PEM", requires = "nbd_tls_cert")]
    nbd_tls_client_ca: Option<PathBuf>,
    /// NBD TLS: only client certificates valid for NAME (a DNS name or IP address
    /// of their subjectAltName) are let in; repeat for more names.
    #[arg(long, value_name = "NAME", requires = "nbd_tls_client_ca")]
    nbd_tls_allow: Vec<String>,
    /// Do not lock the daemon's memory (mlockall). Locked by default: the daemon
    /// serves the devices the kernel may write to in order to free memory, so its
    /// pages must not be reclaimed (see docs/cli.md for what that costs).
    #[arg(long)]
    no_mlock: bool,
    /// Where the state file for crash recovery lives.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_RUN_DIR)]
    state_dir: PathBuf,
    /// `create --freeze`: filesystems are thawed this many seconds after the freeze
    /// began at the latest, whatever happens (a freeze still running then aborts the
    /// snapshot).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    freeze_timeout: u64,
    /// More logging (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less logging (errors only).
    #[arg(short, long)]
    quiet: bool,
    #[arg(long = "daemon-child", hide = true)]
    daemon_child: bool,
}

/// The NBD TLS files, made absolute (the daemon changes directory).
fn nbd_tls(args: &Args) -> Option<ublk_snapd::nbd::TlsFiles> {
    let (cert, key) = (args.nbd_tls_cert.as_deref()?, args.nbd_tls_key.as_deref()?);
    Some(ublk_snapd::nbd::TlsFiles {
        cert: absolute(cert),
        key: absolute(key),
        client_ca: args.nbd_tls_client_ca.as_deref().map(absolute),
        allow: args.nbd_tls_allow.clone(),
    })
}

fn parse_space_policy(s: &str) -> Result<SpacePolicy, String> {
    match s {
        "fail" => Ok(SpacePolicy::Fail),
        "delete-oldest" => Ok(SpacePolicy::DeleteOldest),
        _ => Err(format!("{s:?}: use fail or delete-oldest")),
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.verbose, args.quiet);
    if !args.foreground && !args.daemon_child {
        return match daemon::detach() {
            Ok(Outcome::Ready(dev)) => {
                println!("{dev}");
                ExitCode::SUCCESS
            }
            Ok(Outcome::Failed { code, message }) => {
                eprintln!("ublk-snapd: {message}");
                ExitCode::from(code)
            }
            Err(e) => {
                eprintln!("ublk-snapd: {e}");
                ExitCode::from(exit::exit_code([&e as &(dyn std::error::Error + 'static)]))
            }
        };
    }
    let ready = Readiness::new(args.daemon_child);
    match run(&args, &ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit::exit_code(e.chain());
            let msg = format!("{e:#}");
            if !ready.failed(code, &msg) {
                eprintln!("ublk-snapd: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args, ready: &Readiness) -> anyhow::Result<()> {
    let (origin, store, socket, state_dir) = (
        absolute(&args.origin),
        absolute(&args.store),
        absolute(&args.socket),
        absolute(&args.state_dir),
    );
    if ready.is_child() {
        daemon::enter_child()?;
    }
    daemon::memory::prepare(!args.no_mlock);
    let cfg = Config {
        origin,
        store,
        cache_bytes: args.cache_mb.saturating_mul(1 << 20),
        device: DeviceOptions {
            nr_queues: args.queues,
            queue_depth: args.queue_depth,
            workers_per_queue: args.workers_per_queue.min(args.queue_depth),
            user_recovery: true,
            user_recovery_reissue: true,
            zero_copy: args.zero_copy == "auto",
            ..DeviceOptions::default()
        },
        state_dir: Some(state_dir),
        space_policy: args.space_policy,
        min_free_bytes: args.min_free,
        uring_reads: args.origin_reads == "uring",
        nbd_socket: Some(
            args.nbd_socket
                .as_deref()
                .map_or_else(|| ublk_snapd::nbd::default_socket(&socket), absolute),
        ),
        nbd_listen: args.nbd_listen.clone(),
        nbd_tls: nbd_tls(args),
        nbd_insecure: args.nbd_listen_insecure,
        freeze_timeout: Some(std::time::Duration::from_secs(args.freeze_timeout)),
    };
    daemon::serve(cfg, &socket, ready)?;
    Ok(())
}
