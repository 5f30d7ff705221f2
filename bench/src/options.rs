//! Command-line options.

use anyhow::{bail, Context, Result};

/// What to run and how.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) command: String,
    pub(crate) bootstrap: Option<String>,
    pub(crate) spawn_broker: bool,
    pub(crate) topic: String,
    pub(crate) records: u64,
    pub(crate) record_size: usize,
    pub(crate) compression: String,
    pub(crate) acks: String,
    pub(crate) linger_ms: u64,
    pub(crate) batch_size: usize,
    /// `fjord` (Fjord's own clients) or `rdkafka` (librdkafka).
    pub(crate) client: String,
    /// Target records/s (`--rate`, 0: as fast as possible).
    pub(crate) rate: u64,
    /// Extra client settings (`--property key=value`), applied last.
    pub(crate) properties: Vec<(String, String)>,
    /// Extra broker settings for `--spawn-broker` (`--broker-set key=value`).
    pub(crate) broker_settings: Vec<String>,
}

impl Options {
    pub(crate) fn parse(args: Vec<String>) -> Result<Self> {
        let mut o = Self {
            command: args.first().cloned().unwrap_or_else(|| "limits".into()),
            bootstrap: None,
            spawn_broker: false,
            topic: "fjord-bench".into(),
            records: 2_000_000,
            record_size: 100,
            compression: "none".into(),
            acks: "1".into(),
            linger_ms: 5,
            batch_size: 1_000_000,
            client: "rdkafka".into(),
            rate: 0,
            properties: Vec::new(),
            broker_settings: Vec::new(),
        };
        let mut it = args.into_iter().skip(1);
        while let Some(flag) = it.next() {
            if flag == "--spawn-broker" {
                o.spawn_broker = true;
                continue;
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--bootstrap" => o.bootstrap = Some(value),
                "--topic" => o.topic = value,
                "--records" => o.records = value.parse()?,
                "--record-size" => o.record_size = value.parse()?,
                "--compression" => o.compression = value,
                "--acks" => o.acks = value,
                "--linger-ms" => o.linger_ms = value.parse()?,
                "--batch-size" => o.batch_size = value.parse()?,
                "--rate" => o.rate = value.parse()?,
                "--client" => {
                    if !matches!(value.as_str(), "fjord" | "rdkafka") {
                        bail!("--client is fjord or rdkafka");
                    }
                    o.client = value;
                }
                "--property" => {
                    let (k, v) = value
                        .split_once('=')
                        .with_context(|| format!("--property {value}: expected key=value"))?;
                    o.properties.push((k.to_string(), v.to_string()));
                }
                "--broker-set" => o.broker_settings.push(value),
                other => bail!("unknown flag {other}"),
            }
        }
        if o.bootstrap.is_none() && !o.spawn_broker && o.command != "limits" {
            bail!("give --bootstrap HOST:PORT or --spawn-broker");
        }
        Ok(o)
    }
}
