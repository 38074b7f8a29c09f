//! Progress of a stream on stderr for `send` and `receive --progress`: an indicatif
//! bar when stderr is a terminal, a line every second otherwise; and the final
//! line with bytes and throughput.
//!
//! The position is the device bytes the stream's records covered so far, out of
//! the total it will cover when that is known (a send: the daemon's `covers`, the
//! device size for a full stream and the sum of the diff's runs for an
//! incremental; a receive: a full stream's size from its header). The stream's
//! own bytes (less: zeros travel as short records) are in the lines too.
use crate::output::bytes;
use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};
use ublk_snapd::client::scan::StreamProgress;

/// See the module documentation.
pub struct Meter {
    what: &'static str,
    start: Instant,
    last: Instant,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    at: StreamProgress,
}

impl Meter {
    /// `what`: "sent" or "received".
    pub fn new(what: &'static str, progress: bool) -> Meter {
        let term = std::io::stderr().is_terminal();
        let bar = (progress && term).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(style("{bytes} {spinner} {bytes_per_sec} (stream {msg})"));
            b
        });
        let now = Instant::now();
        Meter {
            what,
            start: now,
            last: now,
            bar,
            lines: progress && !term,
            at: StreamProgress::default(),
        }
    }

    /// The stream got this far.
    pub fn tick(&mut self, p: StreamProgress) {
        if let Some(b) = &self.bar {
            if p.total.is_some() && self.at.total.is_none() {
                b.set_style(style(
                    "{bytes}/{total_bytes} {bar:40} {bytes_per_sec} eta {eta} (stream {msg})",
                ));
            }
            if let Some(t) = p.total {
                b.set_length(t);
            }
            b.set_position(p.covered);
            b.set_message(bytes(p.stream));
        } else if self.lines && self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            eprintln!(
                "{} {} so far (stream {})",
                self.what,
                of(&p),
                bytes(p.stream)
            );
        }
        self.at = p;
    }

    /// The final line: the stream's bytes and throughput, then what its records
    /// covered and at what rate.
    pub fn done(&self, n: u64) -> String {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        let rate = |x: u64| bytes((x as f64 / secs) as u64);
        format!(
            "{} {} ({n} bytes) in {secs:.2} s, {}/s; covered {}, {}/s of device",
            self.what,
            bytes(n),
            rate(n),
            of(&self.at),
            rate(self.at.covered)
        )
    }
}

fn style(t: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(t)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// `3.0 MiB of 24.0 MiB (12%)`, or `3.0 MiB` when the total is not known; the
/// stream's bytes follow in lines.
fn of(p: &StreamProgress) -> String {
    match p.total {
        Some(t) => format!(
            "{} of {} ({}%)",
            bytes(p.covered),
            bytes(t),
            (p.covered as u128 * 100)
                .checked_div(t as u128)
                .unwrap_or(100)
        ),
        None => bytes(p.covered),
    }
}
