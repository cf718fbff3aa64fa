//! Memory of a process, from `/proc/<pid>/status` (Linux): resident now, and the peak since it started.

/// Resident memory of one process, KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rss {
    /// Resident now (`VmRSS`).
    pub now_kib: u64,
    /// The most it was ever resident (`VmHWM`).
    pub peak_kib: u64,
}

/// The memory of process `pid`, if it runs and the system reports it.
pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Rss {
        now_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system) process `pid` has used so far, all its threads included, from
/// `/proc/<pid>/stat` (in clock ticks of 1/100 s: Linux's USER_HZ).
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// CPU time of named processes, to be compared before and after a scenario.
#[derive(Debug, Clone)]
pub struct CpuSample(Vec<(String, Option<std::time::Duration>)>);

impl CpuSample {
    /// The CPU time of each of `processes` (name, pid) now.
    pub fn take(processes: &[(String, u32)]) -> Self {
        Self(
            processes
                .iter()
                .map(|(name, pid)| (name.clone(), cpu_time(*pid)))
                .collect(),
        )
    }

    /// CPU milliseconds each process used since `earlier`, per one of `calls`.
    pub fn per_call_since(&self, earlier: &Self, calls: u64) -> Vec<(String, f64)> {
        self.0
            .iter()
            .zip(&earlier.0)
            .filter_map(|((name, now), (_, then))| {
                let used = now.as_ref()?.saturating_sub(*then.as_ref()?);
                Some((name.clone(), used.as_secs_f64() * 1000.0 / calls.max(1) as f64))
            })
            .collect()
    }
}
