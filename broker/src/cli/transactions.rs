//! `fjord transactions`: the transactions a broker coordinates, as Kafka's
//! `kafka-transactions.sh list|describe` shows them (KIP-664), over ListTransactions and
//! DescribeTransactions; `describe-producers` and `abort` are in `transactions_abort`,
//! `find-hanging` in `transactions_hanging`.

use anyhow::{bail, Result};
use clap::Subcommand;
use fjord_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use fjord_protocol::kafka_protocol::messages::{ApiKey, TransactionalId};

use super::{connect, error_name, s, Connect};

/// Transaction administration.
#[derive(Debug, Subcommand)]
pub(crate) enum TransactionsCommand {
    /// Transactional ids with their producer id and state.
    List {
        #[command(flatten)]
        connect: Connect,
        /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only transactions running at least this long (ms).
        #[arg(long)]
        duration_filter: Option<i64>,
    },
    /// One transactional id: producer, epoch, state, timeout, start and partitions.
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// The transactional id.
        #[arg(long)]
        transactional_id: String,
    },
    /// The producers with state in one partition, with the start offset of each one's
    /// open transaction (where `abort --start-offset` points).
    DescribeProducers(super::transactions_abort::PartitionArgs),
    /// Aborts a hanging transaction in one partition: its leader writes the ABORT
    /// marker. Name the transaction by its start offset, or give its producer id,
    /// epoch and coordinator epoch.
    Abort(super::transactions_abort::AbortArgs),
    /// Transactions a partition holds open that no coordinator will finish (they pin
    /// its last stable offset): what `abort --start-offset` ends.
    FindHanging(super::transactions_hanging::FindHangingArgs),
}

pub(crate) async fn run(cmd: TransactionsCommand) -> Result<()> {
    match cmd {
        TransactionsCommand::DescribeProducers(at) => {
            super::transactions_abort::describe_producers(&at).await?
        }
        TransactionsCommand::Abort(args) => super::transactions_abort::abort(&args).await?,
        TransactionsCommand::FindHanging(args) => {
            super::transactions_hanging::find_hanging(&args).await?
        }
        TransactionsCommand::List {
            connect: c,
            states,
            duration_filter,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::ListTransactions, 0, 1)?;
            let mut req = ListTransactionsRequest::default();
            req.state_filters = states.iter().map(|st| s(st)).collect();
            req.duration_filter = duration_filter.unwrap_or(-1);
            if version < 1 && duration_filter.is_some() {
                bail!("the broker does not filter by duration (ListTransactions v1)");
            }
            let resp = conn.request(&req, version).await?;
            if resp.error_code != 0 {
                bail!("ListTransactions: {}", error_name(resp.error_code));
            }
            for unknown in &resp.unknown_state_filters {
                eprintln!("unknown state: {unknown}");
            }
            let mut rows: Vec<(String, i64, String)> = resp
                .transaction_states
                .iter()
                .map(|t| {
                    let id = t.transactional_id.0.to_string();
                    (id, t.producer_id.0, t.transaction_state.to_string())
                })
                .collect();
            rows.sort();
            println!("TransactionalId\tProducerId\tTransactionState");
            for (id, pid, state) in rows {
                println!("{id}\t{pid}\t{state}");
            }
        }
        TransactionsCommand::Describe {
            connect: c,
            transactional_id,
        } => {
            let conn = connect(&c.bootstrap_server).await?;
            let version = conn.version(ApiKey::DescribeTransactions, 0, 0)?;
            let mut req = DescribeTransactionsRequest::default();
            req.transactional_ids = vec![TransactionalId(s(&transactional_id))];
            let resp = conn.request(&req, version).await?;
            let Some(t) = resp.transaction_states.first() else {
                bail!("DescribeTransactions: no answer for {transactional_id}");
            };
            if t.error_code != 0 {
                bail!("{transactional_id}: {}", error_name(t.error_code));
            }
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", tp.topic.0))
                })
                .collect();
            println!("TransactionalId\tProducerId\tProducerEpoch\tTransactionState\tTransactionTimeoutMs\tCurrentTransactionStartTimeMs\tTopicPartitions");
            println!(
                "{transactional_id}\t{}\t{}\t{}\t{}\t{}\t{}",
                t.producer_id.0,
                t.producer_epoch,
                t.transaction_state,
                t.transaction_timeout_ms,
                t.transaction_start_time_ms,
                partitions.join(",")
            );
        }
    }
    Ok(())
}
