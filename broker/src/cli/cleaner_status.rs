//! The log cleaner's view of a compacted topic, for `fjord topics describe`: each
//! partition's dirty ratio and when it was last cleaned.
//!
//! The Kafka protocol carries neither (Kafka shows them over JMX), so they are read from
//! the leader's Prometheus endpoint, whose address the broker reports as its
//! `metrics.listener` config. A broker without one (the default), or one that is not
//! Fjord, gives no figures, and describe says so instead of guessing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fjord_client_common::Connection;
use fjord_protocol::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use fjord_protocol::kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::s;

/// The most of a `/metrics` answer that is read (a broker with very many partitions
/// writes a few MB).
const MAX_METRICS_BYTES: u64 = 64 << 20;
/// How long the endpoint may take to answer.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// What the cleaner reports for one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PartitionCleaning {
    /// Dirty bytes over all bytes of the cleanable part of the log.
    pub dirty_ratio: Option<f64>,
    /// When the cleaner last finished a pass over it, in seconds since the epoch.
    pub last_clean_secs: Option<f64>,
}

/// The cleaner's figures for the partitions of `topic`, asked of each partition's
/// leader. Partitions whose leader has no metrics endpoint are left out.
pub(crate) async fn cleaning(
    bootstrap: &Connection,
    brokers: &HashMap<i32, String>,
    topic: &str,
    leaders: &[(i32, i32)],
) -> BTreeMap<i32, PartitionCleaning> {
    let mut out = BTreeMap::new();
    let mut asked: Vec<i32> = leaders.iter().map(|(_, l)| *l).collect();
    asked.sort_unstable();
    asked.dedup();
    for leader in asked {
        let Some(broker_addr) = brokers.get(&leader) else {
            continue;
        };
        let Ok(text) = leader_metrics(bootstrap, broker_addr, leader).await else {
            continue;
        };
        let mine: Vec<i32> = leaders
            .iter()
            .filter(|(_, l)| *l == leader)
            .map(|(p, _)| *p)
            .collect();
        for (partition, figures) in parse(&text, topic) {
            if mine.contains(&partition) {
                out.insert(partition, figures);
            }
        }
    }
    out
}

/// The `/metrics` text of broker `id` at `broker_addr`.
async fn leader_metrics(bootstrap: &Connection, broker_addr: &str, id: i32) -> Result<String> {
    let endpoint = if broker_addr == bootstrap.addr() {
        metrics_listener(bootstrap, id).await?
    } else {
        metrics_listener(&super::connect(broker_addr).await?, id).await?
    };
    let Some(endpoint) = endpoint else {
        bail!("broker {id} has no metrics.listener");
    };
    let addr = reachable(&endpoint, broker_addr);
    tokio::time::timeout(METRICS_TIMEOUT, http_get_metrics(&addr))
        .await
        .context("metrics endpoint timed out")?
}

/// The broker's `metrics.listener` setting, if it has one.
async fn metrics_listener(conn: &Connection, id: i32) -> Result<Option<String>> {
    let version = conn.version(ApiKey::DescribeConfigs, 1, 4)?;
    let mut r = DescribeConfigsResource::default();
    r.resource_type = 4;
    r.resource_name = s(&id.to_string());
    r.configuration_keys = Some(vec![s("metrics.listener")]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp = conn.request(&req, version).await?;
    Ok(resp
        .results
        .iter()
        .filter(|r| r.error_code == 0)
        .flat_map(|r| r.configs.iter())
        .find(|c| c.name.as_str() == "metrics.listener")
        .and_then(|c| c.value.as_deref().map(str::to_string))
        .filter(|v| !v.is_empty()))
}

/// `endpoint` with a wildcard host replaced by the host the broker is reached at.
fn reachable(endpoint: &str, broker_addr: &str) -> String {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return endpoint.to_string();
    };
    let wildcard = matches!(host, "" | "0.0.0.0" | "[::]" | "::");
    match broker_addr.rsplit_once(':') {
        Some((broker_host, _)) if wildcard => format!("{broker_host}:{port}"),
        _ => endpoint.to_string(),
    }
}

/// `GET /metrics` over HTTP/1.0: the body, read up to [`MAX_METRICS_BYTES`].
async fn http_get_metrics(addr: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the metrics endpoint {addr}"))?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.take(MAX_METRICS_BYTES).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} did not answer HTTP");
    };
    if !head.lines().next().is_some_and(|l| l.contains(" 200 ")) {
        bail!("{addr} answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The cleaner figures for `topic` in a Prometheus text exposition.
fn parse(text: &str, topic: &str) -> BTreeMap<i32, PartitionCleaning> {
    let mut out: BTreeMap<i32, PartitionCleaning> = BTreeMap::new();
    let labels = format!("{{topic=\"{topic}\",partition=\"");
    for line in text.lines() {
        let (is_ratio, rest) = if let Some(rest) = line.strip_prefix("fjord_cleaner_dirty_ratio") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("fjord_cleaner_last_clean_timestamp_seconds") {
            (false, rest)
        } else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(labels.as_str()) else {
            continue;
        };
        let Some((partition, rest)) = rest.split_once("\"}") else {
            continue;
        };
        let (Ok(partition), Ok(value)) = (partition.parse::<i32>(), rest.trim().parse::<f64>())
        else {
            continue;
        };
        let entry = out.entry(partition).or_default();
        if is_ratio {
            entry.dirty_ratio = Some(value);
        } else {
            entry.last_clean_secs = Some(value);
        }
    }
    out
}

/// `secs` since the epoch as an RFC 3339 UTC time, to the second.
pub(crate) fn utc_time(secs: f64) -> String {
    let secs = secs.floor() as i64;
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cleaner_series_of_one_topic() {
        let text = "# HELP fjord_cleaner_dirty_ratio x\n\
            fjord_cleaner_dirty_ratio{topic=\"t\",partition=\"0\"} 0.25\n\
            fjord_cleaner_dirty_ratio{topic=\"t\",partition=\"1\"} 0\n\
            fjord_cleaner_dirty_ratio{topic=\"t2\",partition=\"0\"} 0.9\n\
            fjord_cleaner_last_clean_timestamp_seconds{topic=\"t\",partition=\"1\"} 1764667200.5\n\
            fjord_cleaner_max_dirty_ratio 0.9\n";
        let got = parse(text, "t");
        assert_eq!(got.len(), 2);
        assert_eq!(got[&0].dirty_ratio, Some(0.25));
        assert_eq!(got[&0].last_clean_secs, None);
        assert_eq!(got[&1].dirty_ratio, Some(0.0));
        assert_eq!(got[&1].last_clean_secs, Some(1_764_667_200.5));
        assert!(parse(text, "x").is_empty());
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(utc_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_764_667_261.9), "2025-12-02T09:21:01Z");
    }

    #[test]
    fn a_wildcard_metrics_host_is_reached_at_the_brokers_host() {
        assert_eq!(reachable("0.0.0.0:9100", "10.0.0.5:9092"), "10.0.0.5:9100");
        assert_eq!(reachable(":9100", "h:9092"), "h:9100");
        assert_eq!(reachable("127.0.0.1:9100", "h:9092"), "127.0.0.1:9100");
    }
}
