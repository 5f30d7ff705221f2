//! Settings given as Kafka names and string values: one reading of booleans, numbers
//! with ranges, durations, sizes, enumerations and lists, for the broker, the producer
//! and the consumer alike.
//!
//! Each reading follows Kafka's `ConfigDef` types: a value that does not parse is an
//! error naming the setting and what it accepts, never a silent default. Booleans are
//! `true` or `false` in any case, as Java's `Boolean` config type reads them, and
//! nothing else (`1`, `yes` and `on` are refused).

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

/// The kinds of value a setting takes, with the bounds each allows. A settings table
/// pairs each name with one, so parsing, validation and documentation share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`, in any case.
    Bool,
    /// A whole number in `min..=max`.
    Int {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// Like [`Kind::Int`], or empty for "not set".
    OptionalInt {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// One of a fixed set of words (case as written).
    Choice(&'static [&'static str]),
    /// A comma-separated list whose items are each one of the words given, at least one.
    ChoiceList(&'static [&'static str]),
    /// Any text (a path, a host:port, a list of them): checked where it is used.
    Text,
    /// A decimal number in `[0, 1]` (Kafka's DOUBLE, e.g. a ratio).
    Ratio,
    /// A decimal number above 0 (Kafka's DOUBLE, e.g. a rate).
    PositiveDouble,
}

impl Kind {
    /// A number of milliseconds, not negative.
    pub const MILLIS: Kind = Kind::Int {
        min: 0,
        max: i64::MAX,
    };
    /// A positive 32-bit count or size.
    pub const POSITIVE_INT: Kind = Kind::Int {
        min: 1,
        max: i32::MAX as i64,
    };

    /// Checks `value` for the setting `key`; the error says what the kind accepts.
    pub fn check(&self, key: &str, value: &str) -> Result<(), BadSetting> {
        match *self {
            Kind::Bool => boolean(key, value).map(drop),
            Kind::Int { min, max } => int_in(key, value, min, max).map(drop),
            Kind::OptionalInt { min, max } if !value.trim().is_empty() => {
                int_in(key, value, min, max).map(drop)
            }
            Kind::OptionalInt { .. } | Kind::Text => Ok(()),
            Kind::Choice(choices) => one_of(key, value, choices).map(drop),
            Kind::ChoiceList(choices) => list_of(key, value, choices).map(drop),
            Kind::Ratio => double_where(
                key,
                value,
                |d| (0.0..=1.0).contains(&d),
                "must be between 0 and 1",
            ),
            Kind::PositiveDouble => double_where(key, value, |d| d > 0.0, "must be above 0"),
        }
    }

    /// What the kind accepts, in words, for help texts and the README.
    pub fn describe(&self) -> String {
        let range = |min: i64, max: i64| match (min, max) {
            (i64::MIN, i64::MAX) => "a number".to_string(),
            (min, i64::MAX) => format!("a number >= {min}"),
            (min, max) if max == i64::from(i32::MAX) => format!("a number >= {min} (32-bit)"),
            (min, max) => format!("a number in [{min}, {max}]"),
        };
        match *self {
            Kind::Bool => "true or false".to_string(),
            Kind::Int { min, max } => range(min, max),
            Kind::OptionalInt { min, max } => format!("{}, or empty", range(min, max)),
            Kind::Choice(choices) => format!("one of {}", choices.join(", ")),
            Kind::ChoiceList(choices) => format!("a list of {}", choices.join(", ")),
            Kind::Text => "text".to_string(),
            Kind::Ratio => "a decimal number in [0, 1]".to_string(),
            Kind::PositiveDouble => "a decimal number > 0".to_string(),
        }
    }
}

/// A finite decimal number (Java's `Double.parseDouble` reading, as Kafka's) that
/// `ok` accepts.
fn double_where(
    key: &str,
    value: &str,
    ok: impl Fn(f64) -> bool,
    why: &str,
) -> Result<(), BadSetting> {
    let d: f64 = number(key, value)?;
    if !d.is_finite() {
        return Err(BadSetting::new(key, value, "not a finite number"));
    }
    if !ok(d) {
        return Err(BadSetting::new(key, value, why));
    }
    Ok(())
}

/// A number.
pub fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, BadSetting> {
    value
        .trim()
        .parse()
        .map_err(|_| BadSetting::new(key, value, "not a valid number"))
}

/// A whole number in `min..=max`.
pub fn int_in(key: &str, value: &str, min: i64, max: i64) -> Result<i64, BadSetting> {
    let n: i64 = number(key, value)?;
    if n < min || n > max {
        let why = if max == i64::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be between {min} and {max}")
        };
        return Err(BadSetting::new(key, value, &why));
    }
    Ok(n)
}

/// A duration in milliseconds, not negative.
pub fn millis(key: &str, value: &str) -> Result<Duration, BadSetting> {
    let ms: i64 = number(key, value)?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| BadSetting::new(key, value, "must not be negative"))
}

/// `true` or `false`, in any case (Kafka's reading); anything else is refused.
pub fn boolean(key: &str, value: &str) -> Result<bool, BadSetting> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(BadSetting::new(key, value, "expected true or false"))
    }
}

/// One of `choices`, exactly as written there.
pub fn one_of<'a>(key: &str, value: &str, choices: &[&'a str]) -> Result<&'a str, BadSetting> {
    let v = value.trim();
    choices.iter().find(|c| **c == v).copied().ok_or_else(|| {
        BadSetting::new(
            key,
            value,
            &format!("expected one of {}", choices.join(", ")),
        )
    })
}

/// A comma-separated list, each item one of `choices`, at least one item.
pub fn list_of<'a>(
    key: &str,
    value: &str,
    choices: &[&'a str],
) -> Result<Vec<&'a str>, BadSetting> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(BadSetting::new(key, value, "needs at least one item"));
    }
    items
        .iter()
        .map(|item| one_of(key, item, choices))
        .collect()
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
        assert_eq!(
            servers("s", "a:1, ,b:2"),
            Ok(vec!["a:1".to_string(), "b:2".to_string()])
        );
        assert!(servers("s", " , ").is_err());
    }

    #[test]
    fn booleans_are_true_or_false_in_any_case_and_nothing_else() {
        for v in ["true", "TRUE", "True", " tRuE "] {
            assert_eq!(boolean("b", v), Ok(true), "{v}");
        }
        for v in ["false", "FALSE", "False"] {
            assert_eq!(boolean("b", v), Ok(false), "{v}");
        }
        for v in ["1", "0", "yes", "no", "on", "", "truee", "t"] {
            let e = boolean("b", v).expect_err(v);
            assert_eq!(e.why, "expected true or false", "{v}");
        }
    }

    #[test]
    fn ints_hold_to_their_range() {
        assert_eq!(int_in("n", "5", 1, 10), Ok(5));
        assert_eq!(int_in("n", "1", 1, 10), Ok(1));
        assert_eq!(int_in("n", "10", 1, 10), Ok(10));
        let e = int_in("n", "0", 1, 10).expect_err("below");
        assert_eq!(e.to_string(), "n=0: must be between 1 and 10");
        let e = int_in("n", "-2", -1, i64::MAX).expect_err("below");
        assert_eq!(e.to_string(), "n=-2: must be at least -1");
        assert!(int_in("n", "99999999999999999999", 0, i64::MAX).is_err());
    }

    #[test]
    fn kinds_check_what_they_describe() {
        let codecs = Kind::Choice(&["gzip", "lz4"]);
        assert!(codecs.check("c", "lz4").is_ok());
        assert_eq!(
            codecs.check("c", "LZ4").map_err(|e| e.why),
            Err("expected one of gzip, lz4".to_string())
        );
        let policies = Kind::ChoiceList(&["delete", "compact"]);
        assert!(policies.check("p", "compact, delete").is_ok());
        assert!(policies.check("p", "delete,shred").is_err());
        assert!(policies.check("p", " , ").is_err());
        let optional = Kind::OptionalInt { min: 0, max: 9 };
        assert!(optional.check("o", "").is_ok());
        assert!(optional.check("o", "10").is_err());
        assert!(Kind::Bool.check("b", "True").is_ok());
        assert!(Kind::Bool.check("b", "1").is_err());
        assert_eq!(Kind::MILLIS.describe(), "a number >= 0");
        assert_eq!(Kind::POSITIVE_INT.describe(), "a number >= 1 (32-bit)");
    }
}
