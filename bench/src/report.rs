//! The result of a run: a table for people, one JSON object for scripts.

use crate::latency::Percentiles;

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) command: String,
    pub(crate) client: String,
    pub(crate) records: u64,
    pub(crate) record_size: usize,
    pub(crate) partitions: i32,
    /// `default` or `round-robin` (see `--partitioner`).
    pub(crate) partitioner: &'static str,
    pub(crate) compression: String,
    pub(crate) records_per_sec: f64,
    pub(crate) bytes_per_sec: f64,
    pub(crate) latency: Option<Percentiles>,
    /// (name of the limit, its bytes/s).
    pub(crate) limit: Option<(&'static str, f64)>,
    pub(crate) client_cpu_s: f64,
    /// `fjord`, `kafka` or `external`.
    pub(crate) broker: &'static str,
    pub(crate) broker_cpu_s: Option<f64>,
    /// The broker process's peak resident set at the end of the run (`VmHWM`).
    pub(crate) broker_peak_rss_bytes: Option<u64>,
}

impl Report {
    fn gb(&self) -> f64 {
        (self.records as f64 * self.record_size as f64 / 1e9).max(1e-9)
    }

    fn limit_ratio(&self) -> Option<f64> {
        self.limit.map(|(_, l)| self.bytes_per_sec / l)
    }

    /// One JSON object.
    pub(crate) fn json(&self) -> String {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:.3}")
            } else {
                "null".into()
            }
        };
        let latency = self.latency.map_or_else(
            || "null".to_string(),
            |l| {
                format!(
                    "{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{},\"samples\":{}}}",
                    num(l.p50),
                    num(l.p99),
                    num(l.p999),
                    num(l.max),
                    l.samples
                )
            },
        );
        format!(
            "{{\"command\":\"{}\",\"broker\":\"{}\",\"client\":\"{}\",\"records\":{},\"record_size\":{},\"partitions\":{},\"partitioner\":\"{}\",\"compression\":\"{}\",\"records_per_sec\":{},\"mb_per_sec\":{},\"latency_ms\":{},\"limit\":{},\"limit_mb_per_sec\":{},\"limit_ratio\":{},\"client_cpu_s_per_gb\":{},\"broker_cpu_s_per_gb\":{},\"broker_peak_rss_mb\":{}}}",
            self.command,
            self.broker,
            self.client,
            self.records,
            self.record_size,
            self.partitions,
            self.partitioner,
            self.compression,
            num(self.records_per_sec),
            num(self.bytes_per_sec / 1e6),
            latency,
            self.limit.map_or("null".to_string(), |(n, _)| format!("\"{n}\"")),
            self.limit.map_or("null".to_string(), |(_, l)| num(l / 1e6)),
            self.limit_ratio().map_or("null".to_string(), num),
            num(self.client_cpu_s / self.gb()),
            self.broker_cpu_s.map_or("null".to_string(), |b| num(b / self.gb())),
            self.broker_peak_rss_bytes.map_or("null".to_string(), |b| num(b as f64 / 1e6)),
        )
    }

    /// The human table.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "{} ({} client, {} broker): {} records of {} B, {} partition(s) ({} partitioner), compression {}\n",
            self.command,
            self.client,
            self.broker,
            self.records,
            self.record_size,
            self.partitions,
            self.partitioner,
            self.compression
        );
        out += &format!("  records/s          {:>12.0}\n", self.records_per_sec);
        out += &format!("  MB/s               {:>12.1}\n", self.bytes_per_sec / 1e6);
        if let Some((name, limit)) = self.limit {
            out += &format!(
                "  limit ({name})  {:>8.1} MB/s, ratio {:.3}\n",
                limit / 1e6,
                self.bytes_per_sec / limit
            );
        }
        match self.latency {
            Some(l) => {
                out += &format!(
                    "  latency ms         p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} samples)\n",
                    l.p50, l.p99, l.p999, l.max, l.samples
                );
            }
            None => out += "  latency            not sampled\n",
        }
        out += &format!(
            "  client CPU s/GB    {:>12.2}\n",
            self.client_cpu_s / self.gb()
        );
        if let Some(b) = self.broker_cpu_s {
            out += &format!("  broker CPU s/GB    {:>12.2}\n", b / self.gb());
        }
        if let Some(b) = self.broker_peak_rss_bytes {
            out += &format!("  broker peak RSS MB {:>12.1}\n", b as f64 / 1e6);
        }
        out
    }
}
