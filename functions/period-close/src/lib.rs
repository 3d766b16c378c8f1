//! The tasks of the period-close state machine (`infra/period-close.asl.json`), each idempotent
//! so a retried or re-run execution issues nothing twice:
//!
//! 1. `lifecycle`: start and end the subscriptions whose time has come;
//! 2. `list_due`: one page of subscription periods due for an invoice (the machine loops over
//!    pages and fans each page out to `bill_one`);
//! 3. `bill_one`: issue one period's invoice (a billing marker makes a repeat a no-op);
//! 4. `finalize`: finalize the drafts whose grace period is over.
//!
//! Failures carry an error type Step Functions can match: `Retryable` (the store was busy or
//! throttled) or `NonRetryable` (bad input, missing records, bugs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tally_service::period_close::{self, DuePeriod};
use tally_service::{invoices, Org, ServiceError, Tally};

/// Page size of `list_due` (subscriptions per page).
const PAGE: usize = 50;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    Lifecycle {
        at: DateTime<Utc>,
    },
    ListDue {
        at: DateTime<Utc>,
        #[serde(default)]
        after: Option<String>,
    },
    BillOne {
        period: DuePeriod,
    },
    Finalize {
        at: DateTime<Utc>,
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

/// Runs one task for the organization.
pub async fn run(tally: &Tally, org: &Org, task: Task) -> Result<Value, TaskError> {
    Ok(match task {
        Task::Lifecycle { at } => {
            let (activated, terminated) = period_close::lifecycle(tally, org, at).await?;
            json!({"at": at, "activated": activated, "terminated": terminated})
        }
        Task::ListDue { at, after } => {
            let page = period_close::due(tally, org, at, after, PAGE).await?;
            json!({"at": at, "items": page.items, "next": page.next})
        }
        Task::BillOne { period } => {
            let invoice = period_close::bill_one(tally, org, &period).await?;
            json!({"issued": invoice.is_some(), "invoice_id": invoice.map(|i| i.lago_id)})
        }
        Task::Finalize { at } => json!({"finalized": invoices::finalize_due(tally, org, at).await?}),
    })
}
