//! Reading a process's CPU time and memory, and the machine's load, from Linux's /proc.
//! The parsers are plain functions over the files' text; `/metrics` and `confab loadtest`
//! read the files.

/// CPU time (user + system, in clock ticks) from the text of `/proc/PID/stat`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces: count fields after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Linux reports CPU time in USER_HZ, 100 per second on every platform it runs on.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory in KiB from the text of `/proc/PID/status`.
pub fn rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1, 5 and 15 minute load averages from the text of `/proc/loadavg`.
pub fn load_average(loadavg: &str) -> Option<[f64; 3]> {
    let mut fields = loadavg.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// A process's CPU seconds and resident KiB (`pid` is a number or `self`).
pub fn process(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((cpu_ticks(&stat)? as f64 / TICKS_PER_SECOND, rss_kib(&status)?))
}

/// How many descriptors a process has open (entries of `/proc/PID/fd`).
pub fn open_files(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files() {
        let stat = "4242 (confab relay) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(rss_kib("Name:\tconfab\nVmRSS:\t   51234 kB\nThreads: 9\n"), Some(51234));
        assert_eq!(load_average("0.52 1.10 0.98 2/311 4242\n"), Some([0.52, 1.10, 0.98]));
        assert_eq!(load_average("x"), None);
        assert!(open_files("self").is_some_and(|n| n >= 3));
    }
}
