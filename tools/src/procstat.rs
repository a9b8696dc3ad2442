//! A process's resident memory and CPU time, read from `/proc` (Linux).

use std::fs;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// Resident set size (`VmRSS`), in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time since the process started, in seconds.
    pub cpu_secs: f64,
}

/// Reads `pid`'s memory and CPU time (`"self"` works as well).
pub fn sample(pid: &str) -> Result<ProcSample, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    Ok(ProcSample {
        rss_bytes: rss_kib(&status).ok_or("no VmRSS in /proc/<pid>/status")? * 1024,
        cpu_secs: cpu_ticks(&stat).ok_or("malformed /proc/<pid>/stat")? as f64 / ticks_per_sec(),
    })
}

/// Reads the server's sample when a pid is given.
pub fn sample_pid(pid: Option<u32>) -> Result<Option<ProcSample>, String> {
    pid.map(|p| sample(&p.to_string())).transpose()
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime, fields 14 and 15 of `stat`; counted after the command
/// name, which is in parentheses and may itself hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0";
        assert_eq!(cpu_ticks(stat), Some(333));
        let me = sample("self").unwrap();
        assert!(me.rss_bytes > 0);
    }
}
