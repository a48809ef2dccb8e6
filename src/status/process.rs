//! The gateway process itself, in the names Prometheus's own client
//! libraries use: resident memory and open file descriptors, read from
//! /proc at each scrape.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct ProcessMetrics {
    resident: Gauge,
    open_fds: Gauge,
}

impl ProcessMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the gateway process",
            self.resident.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the gateway process",
            self.open_fds.clone(),
        );
    }

    /// Read /proc now; a value that cannot be read keeps its last reading.
    pub fn refresh(&self) {
        if let Some(kib) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| vm_rss_kib(&s))
        {
            self.resident.set(kib.saturating_mul(1024));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of them.
            self.open_fds.set(dir.count() as i64 - 1);
        }
    }
}

fn vm_rss_kib(status: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_resident_set_from_proc_status() {
        let text = "Name:\tplantgate\nVmHWM:\t  9000 kB\nVmRSS:\t  8123 kB\n";
        assert_eq!(super::vm_rss_kib(text), Some(8123));
        assert_eq!(super::vm_rss_kib("Name:\tx\n"), None);
    }
}
