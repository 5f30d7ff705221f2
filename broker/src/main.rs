//! `fjord`: the broker binary.
//!
//! `fjord [serve] [--config FILE] [--set key=value]...`; with no arguments it listens on
//! 127.0.0.1:9092 with data under `./data`.

use std::sync::Arc;

use anyhow::{Context, Result};
use fjord_broker::config::BrokerConfig;
use fjord_broker::state::Broker;
use tokio::sync::watch;

mod cli;

use clap::Parser;

/// The config file's text (if any) and the `--set` pairs, in order.
struct ServeConfig {
    file: Option<String>,
    sets: Vec<(String, String)>,
}

fn serve_config(args: &cli::ServeArgs) -> Result<ServeConfig> {
    let file = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
        ),
        None => None,
    };
    let sets = args
        .sets
        .iter()
        .map(|kv| cli::key_value(kv).context("--set needs key=value"))
        .collect::<Result<_>>()?;
    Ok(ServeConfig { file, sets })
}

/// The client tools: quiet logs (warnings only) on stderr, output on stdout.
fn run_tool(tool: cli::Command) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match tool {
            cli::Command::Topics(cmd) => cli::topics::run(cmd).await,
            cli::Command::Groups(cmd) => cli::groups::run(cmd).await,
            cli::Command::Transactions(cmd) => cli::transactions::run(cmd).await,
            cli::Command::Configs(cmd) => cli::configs::run(cmd).await,
            cli::Command::Produce(args) => cli::console::produce(args).await,
            cli::Command::Consume(args) => cli::console::consume(args).await,
            cli::Command::Serve(_) => Ok(()), // handled by main
        }
    });
    if let Err(e) = result {
        // One line, the chain of causes, no backtrace: this is a tool's error message.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    let serve = match cli.command {
        None => cli.serve,
        Some(cli::Command::Serve(args)) => args,
        Some(tool) => return run_tool(tool),
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        );
    match serve.log_format {
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        cli::LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    fjord_broker::fd_budget::raise_limit();
    let args = serve_config(&serve)?;
    let mut config = BrokerConfig::from_sources(args.file.as_deref(), &args.sets)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let broker = runtime.block_on(async move {
        let listeners = fjord_broker::acceptor::bind(&mut config).await?;
        let broker = Arc::new(Broker::open(config)?);
        let (stop_tx, stop_rx) = watch::channel(false);
        // The metrics endpoint is bound before the broker announces itself, so whoever
        // waits for "fjord listening" finds both up.
        let metrics_at = broker
            .config
            .values
            .get("metrics.listener")
            .cloned()
            .unwrap_or_default();
        let mut metrics_address = None;
        if !metrics_at.is_empty() {
            let metrics = tokio::net::TcpListener::bind(&metrics_at)
                .await
                .with_context(|| format!("bind metrics.listener {metrics_at}"))?;
            metrics_address = Some(metrics.local_addr()?);
            tokio::spawn(fjord_broker::metrics::serve(
                Arc::clone(&broker),
                metrics,
                stop_tx.subscribe(),
            ));
        }
        for (l, socket) in broker.config.listeners.iter().zip(&listeners) {
            tracing::info!(address = %socket.local_addr()?, listener = %l.name, "fjord listening");
        }
        if let Some(address) = metrics_address {
            tracing::info!(%address, "metrics listening");
        }
        let server = tokio::spawn(fjord_broker::acceptor::run(
            Arc::clone(&broker),
            listeners,
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
        let txn_timers = tokio::spawn(fjord_broker::maintenance::run_transaction_timers(
            Arc::clone(&broker),
            stop_tx.subscribe(),
        ));
        let cleaner = tokio::spawn(fjord_broker::cleaner::run(
            Arc::clone(&broker),
            stop_tx.subscribe(),
        ));
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        broker.groups.shutdown();
        broker.stop_auto_creation();
        server.await.context("acceptor task")??;
        upkeep.await.context("maintenance task")?;
        group_timers.await.context("group timers task")?;
        txn_timers.await.context("transaction timers task")?;
        cleaner.await.context("log cleaner task")?;
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
