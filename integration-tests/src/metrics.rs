//! Reading a broker's Prometheus endpoint from a test.

use crate::http::request;

/// `GET path` from the HTTP endpoint at `addr`: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, None)
}

/// The value of the sample whose name and labels start with `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A `metrics.listener` setting on a free loopback port, and that address.
pub fn free_metrics_listener() -> (String, String) {
    let addr = format!("127.0.0.1:{}", crate::free_port());
    (format!("metrics.listener={addr}"), addr)
}

/// The highest version of API `api` (its name as /metrics spells it) the broker at
/// `addr` answered, if it answered any.
pub fn highest_version_served(addr: &str, api: &str) -> Option<i16> {
    let (_, text) = http_get(addr, "/metrics");
    let prefix = format!("fjord_requests_total{{api=\"{api}\",version=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .max()
}
