//! Latency percentiles for the benchmarks that print p50/p99/max (`stall`, `group`).

/// The `p` quantile (0.0-1.0) of `v`, sorting it; 0 for none.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Print `what: N ops, p50 .. ms, p99 .. ms, max .. ms` of latencies in ms.
pub fn report(what: &str, v: &mut [f64]) {
    let n = v.len();
    let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    println!("{what}: {n} ops, p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms");
}
