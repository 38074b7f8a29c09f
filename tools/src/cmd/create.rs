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
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let name = match (a.name, a.auto_name) {
        (Some(n), _) => n,
        (None, Some(p)) => format!("{p}-{}", utc_compact(ublk_snapd::now_secs())),
        (None, None) => return Err(Error::Invalid("give a NAME or --auto-name".into()).into()),
    };
    if !a.origins.is_empty() {
        return request_one(
            out,
            Op::CreateGroup {
                name,
                origins: a.origins,
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
        Op::Create { name, from: a.from },
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
