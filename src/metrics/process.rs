//! The standard `process_*` metrics of the Prometheus client libraries,
//! read from `/proc/self` at scrape time. Off Linux, or when a file cannot
//! be read, the metric is left out rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fs;

/// Linux reports CPU times and start time in USER_HZ ticks, which the
/// kernel fixes at 100 for user space on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector;

/// What the collector reads, as numbers.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so it is skipped up to its last `)`): fields from `state`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// `VmRSS:   1234 kB` style lines of `/proc/self/status`, in bytes.
fn status_kib(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Reads the sample from the given `/proc` texts (kept apart from the file
/// reads so the parsing is tested on fixed input).
pub fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str, open_fds: Option<usize>) -> Sample {
    let fields = stat_fields(stat);
    // After the name: state(0) ... utime(11) stime(12) ... starttime(19).
    let tick = |i: usize| -> Option<f64> { fields.as_ref()?.get(i)?.parse::<f64>().ok() };
    let cpu_seconds = match (tick(11), tick(12)) {
        (Some(u), Some(s)) => Some((u + s) / TICKS_PER_SECOND),
        _ => None,
    };
    let boot: Option<f64> = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok());
    let start_time_seconds = match (boot, tick(19)) {
        (Some(b), Some(t)) => Some(b + t / TICKS_PER_SECOND),
        _ => None,
    };
    Sample {
        cpu_seconds,
        resident_bytes: status_kib(status, "VmRSS:"),
        virtual_bytes: status_kib(status, "VmSize:"),
        open_fds: open_fds.map(|n| n as f64),
        max_fds: max_open_files(limits),
        start_time_seconds,
    }
}

fn sample() -> Sample {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let fds = fs::read_dir("/proc/self/fd").ok().map(|d| d.count());
    parse(
        &read("/proc/self/stat"),
        &read("/proc/self/status"),
        &read("/proc/self/limits"),
        &read("/proc/stat"),
        fds,
    )
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = sample();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            ("process_open_fds", "Number of open file descriptors", s.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", s.max_fds),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_proc_texts() {
        let stat = "4242 (step gate) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 12345 100000 300";
        let status = "Name:\tstepgate\nVmSize:\t  204800 kB\nVmRSS:\t   13312 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let proc_stat = "cpu  1 2 3\nbtime 1764900000\n";
        let s = parse(stat, status, limits, proc_stat, Some(17));
        assert_eq!(
            s,
            Sample {
                cpu_seconds: Some(3.0),
                resident_bytes: Some(13312.0 * 1024.0),
                virtual_bytes: Some(204800.0 * 1024.0),
                open_fds: Some(17.0),
                max_fds: Some(1024.0),
                start_time_seconds: Some(1764900000.0 + 123.45),
            }
        );
        assert_eq!(parse("", "", "", "", None), Sample::default());
    }
}
