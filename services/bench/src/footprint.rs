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

/// CPU time of every process named `comm` (e.g. all of a PostgreSQL server's processes), summed.
pub fn cpu_time_of_all(comm: &str) -> Option<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let named = std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
        if named && let Some(used) = cpu_time(pid) {
            total += used;
        }
    }
    Some(total)
}

/// A process, or a group of them, whose CPU time is watched.
#[derive(Debug, Clone)]
pub enum Watched {
    /// Processes counted together under one name (a service, or a NATS cluster's nodes).
    Processes(String, Vec<u32>),
    /// Every process with this command name (processes that ended between two samples are missed).
    All(&'static str),
}

/// CPU time of named processes, to be compared before and after a scenario.
#[derive(Debug, Clone)]
pub struct CpuSample(Vec<(String, Option<std::time::Duration>)>);

impl CpuSample {
    /// The CPU time of each of `watched` now.
    pub fn take(watched: &[Watched]) -> Self {
        Self(
            watched
                .iter()
                .map(|w| match w {
                    Watched::Processes(name, pids) => (name.clone(), pids.iter().map(|&pid| cpu_time(pid)).sum()),
                    Watched::All(comm) => (format!("{comm} (all)"), cpu_time_of_all(comm)),
                })
                .collect(),
        )
    }

    /// CPU milliseconds each process used since `earlier`, per one of `calls` (None for a process that
    /// was not running at both samples, or when no call ended).
    pub fn per_call_since(&self, earlier: &Self, calls: u64) -> Vec<(String, Option<f64>)> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|((name, now), (_, then))| {
                let per_call = (|| {
                    let used = now.as_ref()?.saturating_sub(*then.as_ref()?);
                    (calls > 0).then(|| used.as_secs_f64() * 1000.0 / calls as f64)
                })();
                (name.clone(), per_call)
            })
            .collect()
    }
}
