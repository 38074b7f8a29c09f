//! Progress of a stream on stderr for `send` and `receive --progress`: an indicatif
//! bar when stderr is a terminal, a line every second otherwise; and the final
//! line with bytes and throughput.
use crate::output::bytes;
use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

/// See the module documentation.
pub struct Meter {
    what: &'static str,
    start: Instant,
    last: Instant,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl Meter {
    /// `what`: "sent" or "received"; `total`: expected stream bytes if known.
    pub fn new(what: &'static str, progress: bool, total: Option<u64>) -> Meter {
        let term = std::io::stderr().is_terminal();
        let bar = (progress && term).then(|| {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {bar:40} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let now = Instant::now();
        Meter {
            what,
            start: now,
            last: now,
            bar,
            lines: progress && !term,
        }
    }

    /// `n` stream bytes so far.
    pub fn tick(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        } else if self.lines && self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            eprintln!("{} {} so far", self.what, bytes(n));
        }
    }

    /// The final line.
    pub fn done(&self, n: u64) -> String {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        format!(
            "{} {} ({n} bytes) in {secs:.2} s, {}/s",
            self.what,
            bytes(n),
            bytes((n as f64 / secs) as u64)
        )
    }
}
