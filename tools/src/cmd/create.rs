//! `snapctl create`.
use crate::{
    cmd::{pick, request_one},
    output::{utc_compact, Output},
};
use ublk_snapd::{
    protocol::{Op, Reply},
    Error,
};

/// Create a snapshot of the origin, or of another snapshot.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new snapshot's name (unique; letters, digits and . _ : @ + -).
    #[arg(required_unless_present = "auto_name", conflicts_with = "auto_name")]
    name: Option<String>,
    /// Name it PREFIX-YYYYmmdd-HHMMSS (the current time, UTC) instead.
    #[arg(long, value_name = "PREFIX")]
    auto_name: Option<String>,
    /// Take it of this snapshot instead of the origin.
    #[arg(long, value_name = "SNAPSHOT")]
    from: Option<String>,
    /// A group snapshot: NAME of each of these origins (a pool), at one instant and
    /// in one commit (ORIGIN@NAME each; `delete`, `hold`, `release` and `prune`
    /// take the group by NAME).
    #[arg(
        long,
        value_name = "A,B,...",
        value_delimiter = ',',
        conflicts_with = "from"
    )]
    origins: Vec<String>,
    /// Freeze the filesystems mounted on the devices it captures (FIFREEZE, found
    /// from the mount table) around it, so it is filesystem-consistent; the daemon
    /// thaws them after its freeze timeout whatever happens.
    #[arg(long)]
    freeze: bool,
    /// Run this (`sh -c`) first, e.g. to quiesce a database; a failure or a run past
    /// --hook-timeout aborts the snapshot. $UBLK_SNAP_NAME is the snapshot's name.
    #[arg(long, value_name = "CMD")]
    pre_hook: Option<String>,
    /// Run this (`sh -c`) after the snapshot, whether it was taken or not (with
    /// $UBLK_SNAP_RESULT `ok` or `failed`).
    #[arg(long, value_name = "CMD")]
    post_hook: Option<String>,
    /// Seconds each hook may run before it is killed.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    hook_timeout: u64,
}

/// Run `cmd` with `sh -c`, killed after `timeout`; an error unless it exits 0.
fn hook(
    what: &str,
    cmd: &str,
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(cmd);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .spawn()
        .map_err(|e| anyhow::anyhow!(std::io::Error::other(format!("{what} {cmd:?}: {e}"))))?;
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return match st.success() {
                true => Ok(()),
                false => Err(std::io::Error::other(format!("{what} {cmd:?} failed: {st}")).into()),
            };
        }
        if t0.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "{what} {cmd:?} ran past --hook-timeout ({} s): killed",
                timeout.as_secs()
            ))
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let name = match (a.name.clone(), a.auto_name.clone()) {
        (Some(n), _) => n,
        (None, Some(p)) => format!("{p}-{}", utc_compact(ublk_snapd::now_secs())),
        (None, None) => return Err(Error::Invalid("give a NAME or --auto-name".into()).into()),
    };
    let timeout = std::time::Duration::from_secs(a.hook_timeout);
    if let Some(cmd) = &a.pre_hook {
        // a failing pre-hook aborts the snapshot; the post-hook still runs
        if let Err(e) = hook("pre-hook", cmd, &[("UBLK_SNAP_NAME", &name)], timeout) {
            if let Some(post) = &a.post_hook {
                let env = [
                    ("UBLK_SNAP_NAME", name.as_str()),
                    ("UBLK_SNAP_RESULT", "failed"),
                ];
                if let Err(pe) = hook("post-hook", post, &env, timeout) {
                    eprintln!("snapctl: {pe}");
                }
            }
            return Err(e.context("no snapshot taken"));
        }
    }
    let r = create(&a, name.clone(), out);
    if let Some(post) = &a.post_hook {
        let result = if r.is_ok() { "ok" } else { "failed" };
        let env = [
            ("UBLK_SNAP_NAME", name.as_str()),
            ("UBLK_SNAP_RESULT", result),
        ];
        let p = hook("post-hook", post, &env, timeout);
        r?;
        return p;
    }
    r
}

fn create(a: &Args, name: String, out: &Output) -> anyhow::Result<()> {
    let freeze = a.freeze;
    if !a.origins.is_empty() {
        return request_one(
            out,
            Op::CreateGroup {
                name,
                origins: a.origins.clone(),
                freeze,
            },
            pick!(GroupCreated),
            |g| {
                format!(
                    "created group snapshot {} (group {}): {}, transaction {}",
                    g.name,
                    g.group,
                    g.members.join(" "),
                    g.txn_id
                )
            },
        );
    }
    request_one(
        out,
        Op::Create {
            name,
            from: a.from.clone(),
            freeze,
        },
        pick!(Created),
        |c| {
            format!(
                "created snapshot {} (id {}) of {}, transaction {}",
                c.name,
                c.id,
                c.parent.as_deref().unwrap_or("the origin"),
                c.txn_id
            )
        },
    )
}

/// A reply of the wrong kind.
pub fn unexpected(r: &Reply) -> anyhow::Error {
    Error::Protocol(format!("unexpected reply {r:?}")).into()
}
