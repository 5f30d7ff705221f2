//! `fjord`: the broker binary.
//!
//! `fjord [serve] [--config FILE] [--set key=value]...`; with no arguments it listens on
//! 127.0.0.1:9092 with data under `./data`.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fjord_broker::config::BrokerConfig;
use fjord_broker::state::Broker;
use tokio::sync::watch;

const USAGE: &str = "usage: fjord [serve] [--config FILE] [--set key=value]...
  --config FILE     broker settings in Java properties format (Kafka's names)
  --set key=value   one setting; repeatable; wins over the file
With no arguments fjord listens on 127.0.0.1:9092 with data under ./data.";

/// The config file's text (if any) and the `--set` pairs, in order.
struct Args {
    file: Option<String>,
    sets: Vec<(String, String)>,
}

fn parse_args() -> Result<Args> {
    let mut file = None;
    let mut sets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" => {}
            "--config" => {
                let path = args.next().context("--config needs a file")?;
                file =
                    Some(std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?);
            }
            "--set" => {
                let kv = args.next().context("--set needs key=value")?;
                let (k, v) = kv.split_once('=').context("--set needs key=value")?;
                sets.push((k.trim().to_string(), v.trim().to_string()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok(Args { file, sets })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = parse_args()?;
    let mut config = BrokerConfig::from_sources(args.file.as_deref(), &args.sets)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let broker = runtime.block_on(async move {
        let listener = fjord_broker::acceptor::bind(&mut config).await?;
        let broker = Arc::new(Broker::open(config)?);
        tracing::info!(address = %listener.local_addr()?, "fjord listening");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(fjord_broker::acceptor::run(
            Arc::clone(&broker),
            listener,
            stop_rx,
        ));
        let upkeep = tokio::spawn(fjord_broker::maintenance::run(
            Arc::clone(&broker),
            stop_tx.subscribe(),
        ));
        let group_timers = tokio::spawn(fjord_broker::maintenance::run_group_timers(
            Arc::clone(&broker),
            stop_tx.subscribe(),
        ));
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        broker.groups.shutdown();
        server.await.context("acceptor task")??;
        upkeep.await.context("maintenance task")?;
        group_timers.await.context("group timers task")?;
        anyhow::Ok(broker)
    })?;
    // Outside the runtime: closing flushes and waits for fsyncs, which blocks.
    drop(runtime);
    match Arc::try_unwrap(broker) {
        Ok(broker) => broker.close(),
        Err(_) => tracing::warn!("requests still running; logs will recover on next start"),
    }
    tracing::info!("stopped");
    Ok(())
}
