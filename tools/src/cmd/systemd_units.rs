//! `snapctl systemd-units`: print (or write) a service and timer for rolling snapshots.
use crate::{
    cmd::prune,
    output::{utc_compact, Output},
};
use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use ublk_snapd::{Error, DEFAULT_SOCKET};

/// The units' base name.
pub const UNIT: &str = "ublk-snap-snapshot";

/// Print a systemd service and timer that take a snapshot periodically and prune.
///
/// The service runs `snapctl create --auto-name PREFIX` (names PREFIX-YYYYmmdd-HHMMSS,
/// UTC), then `snapctl prune --prefix PREFIX- ARGS`, so only these snapshots are
/// pruned. Snapshots are crash-consistent (as after a power cut), or with `--freeze`
/// filesystem-consistent (the origin's filesystems frozen around each). In a pool,
/// `--origins A,B` takes each as a group snapshot of those origins. Install:
/// `snapctl systemd-units --dir /etc/systemd/system && systemctl daemon-reload &&
/// systemctl enable --now ublk-snap-snapshot.timer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often: a systemd time span (5min, 1h, 1d).
    #[arg(long, value_name = "SPAN", default_value = "1h")]
    every: String,
    /// Prefix of the snapshots' names.
    #[arg(long, value_name = "PREFIX", default_value = "auto")]
    prefix: String,
    /// The prune rules (snapctl prune's options), as one argument.
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "--keep-last 24 --daily 7",
        allow_hyphen_values = true
    )]
    prune: String,
    /// The snapctl the units run (default: this one).
    #[arg(long, value_name = "PATH")]
    snapctl: Option<PathBuf>,
    /// Write the two files into DIR instead of printing them.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Take each snapshot with `create --freeze` (filesystem-consistent: the
    /// filesystems on the origin are frozen around it).
    #[arg(long)]
    freeze: bool,
    /// A pool: take each as a group snapshot of these origins (`create --origins`,
    /// one instant, one commit); `prune` counts a group once and deletes it whole.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    origins: Vec<String>,
}

#[derive(Debug, Parser)]
#[command(name = "prune")]
struct PruneOnly {
    #[command(flatten)]
    a: prune::Args,
}

/// The two units.
#[derive(Debug, Serialize)]
pub struct Units {
    /// `ublk-snap-snapshot.service`.
    pub service: String,
    /// `ublk-snap-snapshot.timer`.
    pub timer: String,
}

fn invalid(msg: String) -> anyhow::Error {
    Error::Invalid(msg).into()
}

/// Words that go into a unit file unquoted: no whitespace, quotes, `%`, `$` or `\`.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'%$\\;".contains(c))
}

/// Build the units (validating every argument).
pub fn units(a: &Args, socket: &Path) -> anyhow::Result<Units> {
    if !a.every.chars().all(|c| c.is_ascii_alphanumeric()) || a.every.is_empty() {
        return Err(invalid(format!(
            "--every {:?}: use a time span such as 5min or 1h",
            a.every
        )));
    }
    exception_store::validate_name(&format!("{}-{}", a.prefix, utc_compact(0)))
        .map_err(|e| invalid(format!("--prefix {:?}: {e}", a.prefix)))?;
    let mut words: Vec<String> = a.prune.split_whitespace().map(str::to_owned).collect();
    let parsed =
        PruneOnly::try_parse_from(std::iter::once("prune".to_owned()).chain(words.clone()))
            .map_err(|e| invalid(format!("--prune {:?}: {}", a.prune, e.kind())))?;
    parsed.a.policy()?;
    if parsed.a.prefix.is_none() {
        words.splice(0..0, ["--prefix".to_owned(), format!("{}-", a.prefix)]);
    }
    let exe = match &a.snapctl {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let exe = exe.display().to_string();
    for o in &a.origins {
        exception_store::validate_name(o)
            .ok()
            .filter(|()| plain(o) && !o.contains('@'))
            .ok_or_else(|| invalid(format!("--origins: {o:?} is not an origin name")))?;
    }
    if !exe.starts_with('/') || !plain(&exe) || !words.iter().all(|w| plain(w)) {
        return Err(invalid(
            "the snapctl path and prune arguments must be absolute/plain words (no spaces, quotes, % or $)".into(),
        ));
    }
    let mut base = exe.clone();
    if socket != Path::new(DEFAULT_SOCKET) {
        let s = socket.display().to_string();
        if !plain(&s) {
            return Err(invalid(format!(
                "--socket {s:?}: not usable in a unit file"
            )));
        }
        base = format!("{exe} --socket {s}");
    }
    let service = format!(
        "[Unit]\n\
         Description=ublk-snap: take a rolling snapshot ({prefix}-*) and prune old ones\n\
         After=ublk-snapd.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={base} create --auto-name {prefix}{origins}{freeze}\n\
         ExecStart={base} prune {prune}\n",
        origins = if a.origins.is_empty() {
            String::new()
        } else {
            format!(" --origins {}", a.origins.join(","))
        },
        freeze = if a.freeze { " --freeze" } else { "" },
        prefix = a.prefix,
        prune = words.join(" "),
    );
    let timer = format!(
        "[Unit]\n\
         Description=ublk-snap: rolling snapshots every {every}\n\
         \n\
         [Timer]\n\
         OnBootSec={every}\n\
         OnUnitActiveSec={every}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        every = a.every,
    );
    Ok(Units { service, timer })
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let u = units(&a, &out.socket)?;
    if let Some(dir) = &a.dir {
        let svc = dir.join(format!("{UNIT}.service"));
        let tmr = dir.join(format!("{UNIT}.timer"));
        std::fs::write(&svc, &u.service).with_context(|| format!("write {}", svc.display()))?;
        std::fs::write(&tmr, &u.timer).with_context(|| format!("write {}", tmr.display()))?;
        return out.emit(&serde_json::json!({"service": svc, "timer": tmr}), || {
            format!("wrote {} and {}", svc.display(), tmr.display())
        });
    }
    out.emit(&u, || {
        format!(
            "# {UNIT}.service\n{}\n# {UNIT}.timer\n{}",
            u.service, u.timer
        )
    })
}
