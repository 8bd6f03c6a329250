//! Percentiles and the one-line JSON report each scenario prints.

use std::fmt::Write;

/// Sorts `v` and returns the value at quantile `q` (0..=1), 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A flat JSON object, built field by field (numbers and plain strings only).
#[derive(Default)]
pub struct Report {
    fields: Vec<(String, String)>,
}

impl Report {
    /// A report for `scenario` against the peer named by `--peer`, in the
    /// cycle numbered by `--run` (bench/run's `--repeat`).
    pub fn new(scenario: &str, args: &crate::Args) -> Self {
        let mut r = Self::default();
        r.str("scenario", scenario)
            .str("peer", &args.get("peer", "?"));
        if let Ok(run) = args.get("run", "").parse::<u64>() {
            r.num("run", run as f64);
        }
        r
    }

    /// The fields every delivery scenario reports: subscribers, delivered
    /// vs expected, server CPU and wall time, CPU per delivered event.
    pub fn deliveries(
        &mut self,
        subscribers: usize,
        expected: usize,
        delivered: usize,
        cpu_s: f64,
        wall_s: f64,
    ) -> &mut Self {
        self.num("subscribers", subscribers as f64)
            .num("delivered", delivered as f64)
            .num("expected", expected as f64)
            .num("server_cpu_s", cpu_s)
            .num("wall_s", wall_s)
            .num("cpu_us_per_event", cpu_s * 1e6 / delivered.max(1) as f64)
    }

    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        let v = if v.is_finite() { v } else { 0.0 };
        self.fields.push((k.into(), format!("{v:.3}")));
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        self.fields.push((k.into(), format!("\"{v}\"")));
        self
    }

    /// Latency fields (µs): p50, p90, p99, max, and 101 points of the
    /// distribution for plots.
    pub fn latencies(&mut self, prefix: &str, mut v: Vec<u64>) -> &mut Self {
        v.sort_unstable();
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            self.num(&format!("{prefix}_{name}_us"), quantile(&v, q) as f64);
        }
        let mut cdf = String::from("[");
        for i in 0..=100 {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(cdf, "{sep}{}", quantile(&v, i as f64 / 100.0));
        }
        cdf.push(']');
        self.fields.push((format!("{prefix}_cdf_us"), cdf));
        self
    }

    pub fn print(&self) {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        println!("{{{}}}", body.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_list() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
