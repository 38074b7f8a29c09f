//! How `snapctl` prints: JSON objects with `--json`, else tables and short lines;
//! errors on stderr (and as a JSON object on stdout with `--json`), with the exit
//! code of `ublk_snapd::exit`.
use serde::Serialize;
use std::{io::Write, path::PathBuf};
use ublk_snapd::{exit, protocol::ErrorCode, Error};

/// Output settings and the socket every online command uses.
#[derive(Debug)]
pub struct Output {
    json: bool,
    /// The daemon's control socket.
    pub socket: PathBuf,
}

impl Output {
    pub fn new(json: bool, socket: PathBuf) -> Self {
        Output { json, socket }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Print `value` as JSON, or the text `human` builds.
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut text = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            human()
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        match std::io::stdout().write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }

    /// Report `e`; returns the exit code.
    pub fn error(&self, e: &anyhow::Error) -> u8 {
        let code = exit::exit_code(e.chain());
        if self.json {
            let ecode = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(ErrorCode::Io, Error::code);
            let v = serde_json::json!({
                "error": { "code": ecode, "message": format!("{e:#}"), "exit_code": code }
            });
            println!("{v}");
        }
        eprintln!("snapctl: {e:#}");
        code
    }
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Bytes in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

/// Seconds since the epoch as `YYYYmmdd-HHMMSS` UTC (automatic snapshot names).
pub fn utc_compact(secs: u64) -> String {
    utc(secs).replace(['-', ':'], "").replace(' ', "-")
}
