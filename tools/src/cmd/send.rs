//! `snapctl send`: a snapshot (or what changed since an older one) as a stream on
//! stdout or in a file, our replication stream or Ceph's `rbd diff v1`.
use crate::{cmd::meter::Meter, output::Output};
use exception_store::stream::rbd_diff;
use std::io::Write;
use ublk_snapd::{client, protocol::Op, Error};

/// Write snapshot B as a replication stream (`snapctl receive` applies it).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot to send (B).
    name: String,
    /// Send only what changed since this older snapshot (A; the target must hold it).
    #[arg(long, value_name = "SNAPSHOT")]
    from: Option<String>,
    /// Write the stream here instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Continue an interrupted receive: the token its `snapctl status` shows.
    #[arg(long, value_name = "TOKEN")]
    resume: Option<String>,
    /// Stream format: ours (`stream`) or Ceph's `rbd diff v1` (`rbd-diff`, for
    /// `rbd import-diff` and `rbd merge-diff`).
    #[arg(long, value_name = "FORMAT", default_value = "stream")]
    format: Format,
    /// Show progress on stderr (a bar on a terminal, lines otherwise).
    #[arg(long)]
    progress: bool,
}

/// Stream formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The ublk-snap replication stream (docs/format.md).
    Stream,
    /// Ceph's `rbd diff v1`.
    RbdDiff,
}

pub fn run(a: Args, out: &Output) -> anyhow::Result<()> {
    let mut w: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| Error::Io {
            what: "create",
            path: p.clone(),
            error: e,
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *w);
    let op = Op::Send {
        name: a.name.clone(),
        from: a.from.clone(),
        resume: a.resume.clone(),
    };
    let mut meter = Meter::new("sent", a.progress);
    let n = match a.format {
        Format::Stream => client::stream::send(&out.socket, op, &mut w, &mut |p| meter.tick(p))?.1,
        Format::RbdDiff => {
            if a.resume.is_some() {
                return Err(Error::Invalid("--resume is for our stream format".into()).into());
            }
            let mut conv = rbd_diff::Writer::new(&mut w, a.from.as_deref());
            client::stream::send_records(&out.socket, op, &mut |e| conv.event(e), &mut |p| {
                meter.tick(p)
            })?;
            conv.bytes()
        }
    };
    w.flush()?;
    eprintln!("{}", meter.done(n));
    Ok(())
}
