//! Progress estimates of background jobs: the worker samples every job's cursor about
//! once a second ([`Progress::observe`]); `status` turns the smoothed rate into an
//! ETA ([`Progress::estimate`]). Jobs are told apart by kind and their position among
//! the jobs of that kind; a cursor that goes backwards starts a new estimate.
use exception_store::JobInfo;
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Shortest interval between two samples of a job.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Weight of the newest sample in the smoothed rate.
const ALPHA: f64 = 0.3;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cursor: u64,
    rate: Option<f64>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Progress {
    jobs: Mutex<HashMap<(String, usize), Sample>>,
}

fn keys(jobs: &[JobInfo]) -> impl Iterator<Item = ((String, usize), &JobInfo)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    jobs.iter().map(move |j| {
        let n = seen.entry(j.kind).or_default();
        let k = (j.kind.to_owned(), *n);
        *n += 1;
        (k, j)
    })
}

impl Progress {
    /// Record the jobs' cursors at `now`.
    pub fn observe(&self, jobs: &[JobInfo], now: Instant) {
        let mut m = self.jobs.lock();
        let mut live = Vec::new();
        for (k, j) in keys(jobs) {
            live.push(k.clone());
            let fresh = Sample {
                at: now,
                cursor: j.cursor,
                rate: None,
            };
            match m.get_mut(&k) {
                None => {
                    m.insert(k, fresh);
                }
                Some(s) if j.cursor < s.cursor => *s = fresh,
                Some(s) => {
                    let dt = now.saturating_duration_since(s.at);
                    if dt >= SAMPLE_INTERVAL {
                        let r = (j.cursor - s.cursor) as f64 / dt.as_secs_f64();
                        s.rate = Some(match s.rate {
                            Some(old) => ALPHA * r + (1.0 - ALPHA) * old,
                            None => r,
                        });
                        s.at = now;
                        s.cursor = j.cursor;
                    }
                }
            }
        }
        m.retain(|k, _| live.contains(k));
    }

    /// (rate in addresses per second, seconds left) of the `nth` job of `kind`.
    pub fn estimate(
        &self,
        kind: &str,
        nth: usize,
        cursor: u64,
        total: u64,
    ) -> (Option<u64>, Option<u64>) {
        let m = self.jobs.lock();
        let Some(rate) = m.get(&(kind.to_owned(), nth)).and_then(|s| s.rate) else {
            return (None, None);
        };
        let eta = (rate >= 0.5).then(|| (total.saturating_sub(cursor) as f64 / rate).ceil() as u64);
        (Some(rate.round() as u64), eta)
    }

    /// The rate and ETA of every job, in the order of `jobs`.
    pub fn estimates(&self, jobs: &[JobInfo]) -> Vec<(Option<u64>, Option<u64>)> {
        keys(jobs)
            .map(|((kind, n), j)| self.estimate(&kind, n, j.cursor, j.total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: &'static str, cursor: u64) -> JobInfo {
        JobInfo {
            kind,
            cursor,
            total: 1000,
        }
    }

    #[test]
    fn rate_and_eta_from_two_samples() {
        let p = Progress::default();
        let t0 = Instant::now();
        p.observe(&[job("merge", 100)], t0);
        assert_eq!(p.estimates(&[job("merge", 100)]), vec![(None, None)]);
        p.observe(&[job("merge", 300)], t0 + Duration::from_secs(2));
        assert_eq!(
            p.estimates(&[job("merge", 300)]),
            vec![(Some(100), Some(7))]
        );
        // a new job of the same kind (cursor went back) starts over
        p.observe(&[job("merge", 10)], t0 + Duration::from_secs(3));
        assert_eq!(p.estimates(&[job("merge", 10)]), vec![(None, None)]);
        // finished jobs are forgotten
        p.observe(&[], t0 + Duration::from_secs(4));
        assert!(p.jobs.lock().is_empty());
    }
}
