//! `snapctl origin add|remove|list`: the origins of a store (a pool).
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
    /// List the origins, with size, device and state; exits 11 when one is not
    /// served (its device missing or too small).
    List,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Sub::Add { name, device } => {
            request_one(
                out,
                Op::OriginAdd { name, device },
                pick!(OriginAdded),
                |o| {
                    format!(
                        "added origin {} ({}), served as {}",
                        o.name,
                        bytes(o.size_bytes),
                        o.device.as_deref().unwrap_or("-")
                    )
                },
            )?;
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
                                o.path.clone(),
                                o.state.clone(),
                            ]
                        })
                        .collect();
                    table(
                        &["ID", "NAME", "SIZE", "DEVICE", "SNAPSHOTS", "PATH", "STATE"],
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
