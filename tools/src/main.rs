//! `snapctl`: manage ublk-snap stores and snapshots. See `docs/cli.md`.
//!
//! Each subcommand lives in `cmd/<name>.rs` and calls one library function or sends
//! one request to `ublk-snapd`; output and exit codes are shared (`output.rs`).
use clap::{Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};
use ublk_snapd::DEFAULT_SOCKET;

mod cmd;
mod output;

/// Manage ublk-snap stores and snapshots.
///
/// `format`, `grow-store --store`, `resize-origin --store`, and `check` (and `check --repair`), `dump`, `map` and `diff` with --store, work offline
/// (the daemon must not be running on the store); the other commands talk to ublk-snapd over its control
/// socket. Exit codes: 0 ok, 1 check found problems, 2 usage, 3 I/O error,
/// 4 corruption, 5 daemon not running, 6 no such snapshot, 7 conflict, 8 store full,
/// 9 protocol error, 11 an origin not served (`origin list`; see docs/cli.md).
#[derive(Debug, Parser)]
#[command(name = "snapctl", version)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON (one object) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Format(cmd::format::Args),
    GrowStore(cmd::grow_store::Args),
    ResizeOrigin(cmd::resize_origin::Args),
    Create(cmd::create::Args),
    List(cmd::list::Args),
    Status(cmd::status::Args),
    Activate(cmd::activate::Args),
    Deactivate(cmd::deactivate::Args),
    Delete(cmd::delete::Args),
    Merge(cmd::merge::Args),
    Hold(cmd::hold::Args),
    Release(cmd::hold::ReleaseArgs),
    Prune(cmd::prune::Args),
    Check(cmd::check::Args),
    Dump(cmd::dump::Args),
    Map(cmd::map::Args),
    Diff(cmd::diff::Args),
    Export(cmd::export::Args),
    Origin(cmd::origin::Args),
    Unexport(cmd::export::UnexportArgs),
    Send(cmd::send::Args),
    Receive(cmd::receive::Args),
    SystemdUnits(cmd::systemd_units::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.json, cli.socket);
    let r = match cli.cmd {
        Cmd::Format(a) => cmd::format::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::GrowStore(a) => cmd::grow_store::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::ResizeOrigin(a) => cmd::resize_origin::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Create(a) => cmd::create::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::List(a) => cmd::list::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Status(a) => cmd::status::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Activate(a) => cmd::activate::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Deactivate(a) => cmd::deactivate::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Delete(a) => cmd::delete::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Merge(a) => cmd::merge::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Hold(a) => cmd::hold::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Release(a) => cmd::hold::release(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Prune(a) => cmd::prune::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Check(a) => cmd::check::run(a, &out).map(ExitCode::from),
        Cmd::Dump(a) => cmd::dump::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Map(a) => cmd::map::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Diff(a) => cmd::diff::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Export(a) => cmd::export::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Origin(a) => cmd::origin::run(a, &out),
        Cmd::Unexport(a) => cmd::export::unexport(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Send(a) => cmd::send::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::Receive(a) => cmd::receive::run(a, &out).map(|()| ExitCode::SUCCESS),
        Cmd::SystemdUnits(a) => cmd::systemd_units::run(a, &out).map(|()| ExitCode::SUCCESS),
    };
    match r {
        Ok(code) => code,
        Err(e) => ExitCode::from(out.error(&e)),
    }
}
