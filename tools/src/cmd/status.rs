//! `snapctl status`.
use crate::{
    cmd::create::unexpected,
    output::{bytes, duration, table, Output},
};
use ublk_snapd::{
    client,
    protocol::{Op, Reply},
};

/// Show the daemon's devices, the store's usage and background work.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_a: Args, out: &Output) -> anyhow::Result<()> {
    match client::request(&out.socket, Op::Status)? {
        Reply::Status(s) => out.emit(&s, || {
            let u = &s.usage;
            let pct = |n: u64| {
                if u.nr_chunks == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / u.nr_chunks as f64
                }
            };
            let mut t = format!(
                "origin:         {} ({})\n\
                 origin device:  {}\n\
                 store:          {}\n\
                 chunk size:     {}\n\
                 store usage:    {} of {} chunks used ({:.1}%), {} metadata, {} free\n\
                 transaction:    {}\n\
                 snapshots:      {}\n\
                 space policy:   {}, min free {} chunks, {} snapshots deleted automatically, {} writes refused (no space)\n\
                 daemon pid:     {}\n",
                s.origin,
                bytes(s.size_bytes),
                s.origin_device.as_deref().unwrap_or("-"),
                s.store,
                bytes(s.chunk_size),
                u.nr_used,
                u.nr_chunks,
                pct(u.nr_used),
                u.nr_meta_chunks,
                u.nr_free,
                s.txn_id,
                s.nr_snapshots,
                s.space_policy,
                s.min_free_chunks,
                s.auto_deleted,
                s.enospc_writes,
                s.pid,
            );
            match s.driver_features {
                Some(mask) => t.push_str(&format!(
                    "ublk driver:    features {mask:#x} ({})\n",
                    ublk_snapd::ublk::kernel::feature_names(mask).join(" ")
                )),
                None => t.push_str("ublk driver:    features not reported\n"),
            }
            if !s.last_shutdown_clean {
                t.push_str(
                    "last shutdown:  not clean (crash, kill or power loss): the store opened at its last commit\n",
                );
            }
            if let Some(tok) = &s.receive_resume {
                t.push_str(&format!(
                    "receive:        unfinished; resume with `snapctl send --resume {tok} ...`\n"
                ));
            }
            if s.failed {
                t.push_str(
                    "STORE FAILED:   a metadata write failed; changes are refused until restart\n",
                );
            }
            t.push('\n');
            if s.origins.len() > 1 {
                let rows: Vec<Vec<String>> = s
                    .origins
                    .iter()
                    .map(|o| {
                        vec![
                            o.name.clone(),
                            bytes(o.size_bytes),
                            o.device.clone().unwrap_or_else(|| "-".into()),
                            o.snapshots.to_string(),
                            bytes(o.used_bytes),
                            match o.quota_bytes {
                                0 => "-".into(),
                                q => bytes(q),
                            },
                            o.state.clone(),
                        ]
                    })
                    .collect();
                t.push_str(&table(
                    &["ORIGIN", "SIZE", "DEVICE", "SNAPSHOTS", "USED", "QUOTA", "STATE"],
                    &rows,
                ));
                t.push('\n');
            }
            let devs: Vec<Vec<String>> = s
                .devices
                .iter()
                .map(|d| {
                    vec![
                        match (&d.snapshot, &d.origin) {
                            (Some(n), Some(o)) => format!("{o}@{n}"),
                            (Some(n), None) => n.clone(),
                            (None, Some(o)) => format!("(origin {o})"),
                            (None, None) => "(origin)".into(),
                        },
                        d.device.clone(),
                        if d.data_path.is_empty() {
                            "-".into()
                        } else {
                            d.data_path.clone()
                        },
                        if d.features.is_empty() {
                            "-".into()
                        } else {
                            d.features.join(",")
                        },
                    ]
                })
                .collect();
            t.push_str(&table(&["DEVICE OF", "PATH", "DATA PATH", "FEATURES"], &devs));
            if let Some(why) = s.devices.iter().find_map(|d| d.copy_reason.as_deref()) {
                t.push_str(&format!("copying:        {why}\n"));
            }
            if !s.nbd.listen.is_empty() {
                t.push_str(&format!("\nNBD listening on: {}\n", s.nbd.listen.join(", ")));
            }
            if !s.nbd.exports.is_empty() {
                let ex: Vec<Vec<String>> = s
                    .nbd
                    .exports
                    .iter()
                    .map(|e| {
                        vec![
                            e.export.clone(),
                            e.snapshot.clone().unwrap_or_else(|| "(origin)".into()),
                            if e.writable { "rw" } else { "ro" }.into(),
                            e.connections.to_string(),
                        ]
                    })
                    .collect();
                t.push('\n');
                t.push_str(&table(&["NBD EXPORT", "OF", "MODE", "CLIENTS"], &ex));
            }
            if s.jobs.is_empty() {
                t.push_str("\nbackground work: none\n");
            } else {
                t.push('\n');
                let jobs: Vec<Vec<String>> = s
                    .jobs
                    .iter()
                    .map(|j| {
                        let p = if j.total == 0 {
                            100.0
                        } else {
                            j.cursor as f64 * 100.0 / j.total as f64
                        };
                        vec![
                            j.kind.clone(),
                            format!("{}/{}", j.cursor, j.total),
                            format!("{p:.1}%"),
                            j.rate.map_or_else(|| "-".into(), |r| format!("{r}/s")),
                            j.eta_secs.map_or_else(|| "-".into(), duration),
                        ]
                    })
                    .collect();
                t.push_str(&table(
                    &["BACKGROUND", "PROGRESS", "DONE", "RATE", "ETA"],
                    &jobs,
                ));
            }
            t
        }),
        other => Err(unexpected(&other)),
    }
}
