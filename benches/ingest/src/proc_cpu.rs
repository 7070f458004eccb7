//! CPU time a process has used, from `/proc/PID/stat`.

use std::time::Duration;

/// utime + stime of `pid` so far.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after_name = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .ok_or_else(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("no field {} in /proc/{pid}/stat", i + 3))
    };
    // Fields 14 (utime) and 15 (stime), counted from 1 with the pid as field 1.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(total * 1_000_000_000 / per_second))
}
