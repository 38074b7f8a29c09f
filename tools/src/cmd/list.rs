//! `snapctl list`.
use crate::{
    cmd::create::unexpected,
    output::{table, utc, Output},
};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// List the snapshots.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_a: Args, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::List)? {
        Reply::List(l) => out.emit(&l, || {
            let rows: Vec<Vec<String>> = l
                .snapshots
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        match &s.origin {
                            Some(o) => format!("{o}@{}", s.name),
                            None => s.name.clone(),
                        },
                        utc(s.created),
                        s.parent.clone().unwrap_or_else(|| "origin".into()),
                        if s.hold { "held" } else { "-" }.into(),
                        s.device.clone().unwrap_or_else(|| "-".into()),
                        if s.exports.is_empty() {
                            "-".into()
                        } else {
                            s.exports.join(",")
                        },
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "NAME",
                    "CREATED (UTC)",
                    "FROM",
                    "HOLD",
                    "DEVICE",
                    "NBD",
                ],
                &rows,
            )
        }),
        other => Err(unexpected(&other)),
    }
}
