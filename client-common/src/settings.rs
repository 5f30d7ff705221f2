//! Client settings given as Kafka names and string values: one reading of numbers,
//! durations, booleans and server lists for the producer and the consumer alike.

use std::time::Duration;

/// A setting that cannot be taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}={value}: {why}")]
pub struct BadSetting {
    /// The setting's name.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

impl BadSetting {
    /// `key=value` refused for `why`.
    pub fn new(key: &str, value: &str, why: &str) -> Self {
        Self {
            key: key.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }
}

/// A number.
pub fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, BadSetting> {
    value
        .trim()
        .parse()
        .map_err(|_| BadSetting::new(key, value, "not a valid number"))
}

/// A duration in milliseconds, not negative.
pub fn millis(key: &str, value: &str) -> Result<Duration, BadSetting> {
    let ms: i64 = number(key, value)?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| BadSetting::new(key, value, "must not be negative"))
}

/// `true` or `false`.
pub fn boolean(key: &str, value: &str) -> Result<bool, BadSetting> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(BadSetting::new(key, value, "expected true or false")),
    }
}

/// A comma-separated list of `host:port`, at least one.
pub fn servers(key: &str, value: &str) -> Result<Vec<String>, BadSetting> {
    let list: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(BadSetting::new(key, value, "needs at least one host:port"));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_say_why_not() {
        assert_eq!(number::<i32>("n", " 7 "), Ok(7));
        assert_eq!(
            number::<i32>("n", "x").map_err(|e| e.to_string()),
            Err("n=x: not a valid number".to_string())
        );
        assert_eq!(millis("t", "250"), Ok(Duration::from_millis(250)));
        assert!(millis("t", "-1").is_err());
        assert_eq!(boolean("b", "true"), Ok(true));
        assert!(boolean("b", "yes").is_err());
        assert_eq!(
            servers("s", "a:1, ,b:2"),
            Ok(vec!["a:1".to_string(), "b:2".to_string()])
        );
        assert!(servers("s", " , ").is_err());
    }
}
