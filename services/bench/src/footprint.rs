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
