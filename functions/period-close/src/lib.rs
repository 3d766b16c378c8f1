//! The tasks of the period-close state machine (`infra/period-close.asl.json`), each idempotent
//! so a retried or re-run execution issues nothing twice:
//!
//! 1. `prepare`: make sure every organization's due index exists; answers the instant of the
//!    close and the shards of the index, which the machine's Distributed Map fans out (one
//!    child execution per shard);
//! 2. `close_page`: one page of one shard: start and end the subscriptions whose time has
//!    come, bill their ended periods, finalize drafts past their grace period, and answer where
//!    the next page starts (the child execution loops until there is none).
//!
//! The work of an execution is what is due, not what exists: a shard with nothing due is one
//! query. Failures carry an error type Step Functions can match: `Retryable` (the store was
//! busy or throttled) or `NonRetryable` (bad input, missing records, bugs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tally_service::{due_index, period_close, ServiceError, Tally};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    Prepare {
        at: DateTime<Utc>,
    },
    ClosePage {
        at: DateTime<Utc>,
        shard: u32,
        #[serde(default)]
        after: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    NonRetryable(String),
}

impl TaskError {
    /// The `Error` name Step Functions' `Retry` and `Catch` match on.
    pub fn error_type(&self) -> &'static str {
        match self {
            TaskError::Retryable(_) => "Retryable",
            TaskError::NonRetryable(_) => "NonRetryable",
        }
    }
}

impl From<ServiceError> for TaskError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unavailable(m) => TaskError::Retryable(m),
            other => TaskError::NonRetryable(other.to_string()),
        }
    }
}

impl From<TaskError> for lambda_runtime::Diagnostic {
    fn from(e: TaskError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_type().to_owned(), error_message: e.to_string() }
    }
}

/// Runs one task.
pub async fn run(tally: &Tally, task: Task) -> Result<Value, TaskError> {
    Ok(match task {
        Task::Prepare { at } => {
            period_close::prepare(tally).await?;
            json!({"at": at, "shards": (0..due_index::SHARDS).collect::<Vec<_>>()})
        }
        Task::ClosePage { at, shard, after } => {
            if shard >= due_index::SHARDS {
                return Err(TaskError::NonRetryable(format!("no shard {shard}")));
            }
            let page = period_close::close_page(tally, shard, at, after, None).await?;
            let report = page.report;
            json!({
                "at": at,
                "shard": shard,
                "next": page.next,
                "activated": report.subscriptions_activated,
                "terminated": report.subscriptions_terminated,
                "issued": report.invoices_issued,
                "finalized": report.invoices_finalized,
                "failed": report.failures.len(),
            })
        }
    })
}
