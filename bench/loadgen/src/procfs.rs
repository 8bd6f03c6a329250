//! What the kernel says about the server under test: resident memory from
//! `/proc/<pid>/status` and CPU time from `/proc/<pid>/stat`, summed over
//! every process of the server (nginx has a master and workers).

use std::fs;

/// Clock ticks per second of `utime`/`stime` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident set size of all `pids`, in bytes.
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .sum()
}

/// User plus system CPU time of all `pids` (all their threads), in seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let (user, sys) = cpu_split(pids);
    user + sys
}

/// User and system CPU time of all `pids`, in seconds.
pub fn cpu_split(pids: &[u32]) -> (f64, f64) {
    let (u, s) = pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|s| {
            // The command name may hold spaces; fields resume after its ')'.
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime, stime))
        })
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds));
    (u as f64 / TICKS_PER_SEC, s as f64 / TICKS_PER_SEC)
}
