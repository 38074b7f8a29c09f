//! `snapctl origin add|remove|list|quota`: the origins of a store (a pool).
use crate::{
    cmd::{create::unexpected, pick, request_one},
    output::{bytes, table, Output},
};
use std::process::ExitCode;
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// The origins a store serves (a pool: one store, one daemon, many volumes).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Add an origin and serve it as its own /dev/ublkbN.
    Add {
        /// Its name (snapshots of it are `NAME@SNAPSHOT`).
        name: String,
        /// Its file or block device: give a stable path (`/dev/disk/by-id/...`);
        /// the daemon opens it by that path at every start.
        #[arg(long, value_name = "PATH")]
        device: String,
        /// The most store space its snapshots may hold (e.g. 20G); see `origin quota`.
        #[arg(long, value_name = "BYTES", value_parser = quota_arg)]
        quota: Option<u64>,
    },
    /// Remove an origin (its device stops): refused while it has snapshots unless
    /// --with-snapshots.
    Remove {
        /// Which.
        name: String,
        /// Delete its snapshots too (refused while one is held, active, exported or
        /// being sent).
        #[arg(long)]
        with_snapshots: bool,
    },
    /// List the origins, with size, device, the store space their snapshots hold,
    /// quota and state; exits 11 when one is not served (its device missing or too
    /// small).
    List,
    /// Set an origin's quota: the most store space its snapshots may hold. Its
    /// writes that would need more fail with ENOSPC, or, under the delete-oldest
    /// policy, delete its own oldest snapshots first; other origins are not touched.
    Quota {
        /// Which origin.
        name: String,
        /// The quota (e.g. 20G, rounded up to whole chunks), or "none".
        #[arg(value_name = "BYTES|none", value_parser = quota_arg)]
        quota: u64,
    },
}

/// A quota: a size, or "none" (0).
fn quota_arg(s: &str) -> Result<u64, String> {
    match s {
        "none" => Ok(0),
        _ => ublk_snapd::offline::parse_size_u64(s),
    }
}

/// How a quota reads.
fn quota_text(q: u64) -> String {
    match q {
        0 => "-".into(),
        q => bytes(q),
    }
}

/// `origin quota`'s request.
fn set_quota(out: &Output, name: String, quota_bytes: u64) -> anyhow::Result<()> {
    request_one(
        out,
        Op::OriginQuota { name, quota_bytes },
        pick!(OriginQuota),
        |o| match o.quota_bytes {
            0 => format!("origin {}: no quota ({} used)", o.name, bytes(o.used_bytes)),
            q => format!(
                "origin {}: quota {} ({} used)",
                o.name,
                bytes(q),
                bytes(o.used_bytes)
            ),
        },
    )
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Sub::Add {
            name,
            device,
            quota,
        } => {
            let o = match client::request(&out.socket, Op::OriginAdd { name, device })? {
                Reply::OriginAdded(o) => o,
                other => return Err(unexpected(&other)),
            };
            // with a quota, what is shown is the origin after it was set
            let o = match quota {
                Some(quota_bytes) => match client::request(
                    &out.socket,
                    Op::OriginQuota {
                        name: o.name.clone(),
                        quota_bytes,
                    },
                )? {
                    Reply::OriginQuota(o) => o,
                    other => return Err(unexpected(&other)),
                },
                None => o,
            };
            out.emit(&o, || {
                format!(
                    "added origin {} ({}), served as {}{}",
                    o.name,
                    bytes(o.size_bytes),
                    o.device.as_deref().unwrap_or("-"),
                    match o.quota_bytes {
                        0 => String::new(),
                        q => format!(", quota {}", bytes(q)),
                    }
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Sub::Quota { name, quota } => {
            set_quota(out, name, quota)?;
            Ok(ExitCode::SUCCESS)
        }
        Sub::Remove {
            name,
            with_snapshots,
        } => {
            request_one(
                out,
                Op::OriginRemove {
                    name,
                    with_snapshots,
                },
                pick!(OriginRemoved),
                |g| match g.removed {
                    true => format!("removed origin {}, transaction {}", g.name, g.txn_id),
                    false => format!(
                        "origin {} is no longer served; it goes once its snapshots' space \
                         is freed (transaction {})",
                        g.name, g.txn_id
                    ),
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Sub::List => match client::request(&out.socket, Op::OriginList)? {
            Reply::Origins(l) => {
                let missing = l.origins.iter().any(|o| o.state.starts_with("missing"));
                out.emit(&l, || {
                    let rows: Vec<Vec<String>> = l
                        .origins
                        .iter()
                        .map(|o| {
                            vec![
                                o.id.to_string(),
                                o.name.clone(),
                                bytes(o.size_bytes),
                                o.device.clone().unwrap_or_else(|| "-".into()),
                                o.snapshots.to_string(),
                                bytes(o.used_bytes),
                                quota_text(o.quota_bytes),
                                o.path.clone(),
                                o.state.clone(),
                            ]
                        })
                        .collect();
                    table(
                        &[
                            "ID",
                            "NAME",
                            "SIZE",
                            "DEVICE",
                            "SNAPSHOTS",
                            "USED",
                            "QUOTA",
                            "PATH",
                            "STATE",
                        ],
                        &rows,
                    )
                })?;
                Ok(match missing {
                    true => ExitCode::from(ublk_snapd::exit::ORIGIN_MISSING),
                    false => ExitCode::SUCCESS,
                })
            }
            other => Err(unexpected(&other)),
        },
    }
}
