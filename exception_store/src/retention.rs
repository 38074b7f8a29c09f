//! Retention policies for rolling snapshots, in the style of sanoid and
//! zfs-auto-snapshot: keep the last N, and/or keep the newest snapshot of each of the
//! last N hours, days, weeks and months. A pure function of the snapshot list, so
//! `snapctl prune --dry-run` and the real prune agree, and two overlapping runs
//! compute the same victims.
//!
//! Rules:
//! - Held snapshots are never pruned (and do not count towards any bucket).
//! - A snapshot is kept if any rule keeps it; with no rule at all, nothing is pruned.
//! - Buckets are UTC calendar periods (weeks start on Monday); the newest snapshot of
//!   each of the N most recent non-empty periods is kept.
//! - Times are the creation times stored in the store, never parsed from names.
use crate::SnapInfo;
use blockdev::ids::SnapId;
use std::collections::BTreeSet;

/// How many snapshots to keep, per rule. Zero disables a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N.
    pub last: usize,
    /// The newest of each of the last N hours.
    pub hourly: usize,
    /// The newest of each of the last N days.
    pub daily: usize,
    /// The newest of each of the last N ISO weeks.
    pub weekly: usize,
    /// The newest of each of the last N months.
    pub monthly: usize,
}

impl Policy {
    /// Whether no rule is set (then nothing is ever pruned).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// Days since the epoch to (year, month), proleptic Gregorian (Howard Hinnant's
/// civil-from-days).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

fn bucket(created: u64, rule: usize) -> i64 {
    let t = created as i64;
    let day = t.div_euclid(86_400);
    match rule {
        0 => t.div_euclid(3600),
        1 => day,
        // 1970-01-01 was a Thursday: shift so weeks start on Monday
        2 => (day + 3).div_euclid(7),
        _ => {
            let (y, m) = year_month(day);
            y * 12 + m as i64
        }
    }
}

/// The snapshots the policy would delete, oldest first.
pub fn victims(snaps: &[SnapInfo], p: &Policy) -> Vec<SnapId> {
    if p.is_empty() {
        return Vec::new();
    }
    let mut cands: Vec<&SnapInfo> = snaps.iter().filter(|s| !s.hold).collect();
    // newest first; ties by id (creation order)
    cands.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let mut keep: BTreeSet<SnapId> = cands.iter().take(p.last).map(|s| s.id).collect();
    for (rule, n) in [p.hourly, p.daily, p.weekly, p.monthly]
        .into_iter()
        .enumerate()
    {
        let mut seen = BTreeSet::new();
        for s in &cands {
            if seen.len() >= n {
                break;
            }
            if seen.insert(bucket(s.created, rule)) {
                keep.insert(s.id);
            }
        }
    }
    let mut out: Vec<&SnapInfo> = cands
        .into_iter()
        .filter(|s| !keep.contains(&s.id))
        .collect();
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    out.into_iter().map(|s| s.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockdev::ids::Label;

    fn snap(id: u32, created: u64, hold: bool) -> SnapInfo {
        SnapInfo {
            id: SnapId(id),
            name: format!("s{id}"),
            created,
            parent: None,
            hold,
            label: Label(id),
            guid: [0; 16],
            size: 1 << 20,
            origin: 0,
            group: 0,
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(59), (1970, 3)); // 1970-03-01
        assert_eq!(year_month(20_415), (2025, 11)); // 2025-11-23
        assert_eq!(year_month(11_016), (2000, 2)); // 2000-02-29
    }

    #[test]
    fn keep_last_and_holds() {
        let s: Vec<_> = (0..10)
            .map(|i| snap(i, 1000 + i as u64 * 300, i == 2))
            .collect();
        let v = victims(
            &s,
            &Policy {
                last: 3,
                ..Policy::default()
            },
        );
        // 7, 8, 9 kept by last=3; 2 held
        assert_eq!(v, [0, 1, 3, 4, 5, 6].map(SnapId));
        assert!(victims(&s, &Policy::default()).is_empty());
    }

    #[test]
    fn five_minute_snapshots_over_three_days() {
        let start = 1_700_000_000u64 - 1_700_000_000 % 86_400; // midnight UTC
        let s: Vec<_> = (0..864)
            .map(|i| snap(i, start + i as u64 * 300, false))
            .collect();
        let p = Policy {
            last: 12,
            hourly: 24,
            daily: 7,
            ..Policy::default()
        };
        let v = victims(&s, &p);
        let kept: Vec<&SnapInfo> = s.iter().filter(|x| !v.contains(&x.id)).collect();
        // the last 12 (one hour), one per hour for 24 hours (the newest hour is already
        // covered), and one per day for the two older days
        assert_eq!(kept.len(), 12 + 23 + 2);
        for d in 0..3u64 {
            let day_end = start + (d + 1) * 86_400;
            assert!(kept
                .iter()
                .any(|x| x.created < day_end && x.created + 300 >= day_end));
        }
        // applying it again prunes nothing more
        let rest: Vec<SnapInfo> = kept.into_iter().cloned().collect();
        assert!(victims(&rest, &p).is_empty());
    }
}
