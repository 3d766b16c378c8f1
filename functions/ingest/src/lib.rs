//! SQS batches of usage events → usage state.
//!
//! Each message carries one Lago-shaped event (`{"event": {...}}`, or the event object itself).
//! The batch is ingested as one atomic step (pre-aggregated per usage state, dedupe records and
//! state updates committed together). SQS delivers at least once, so a message whose event is
//! already stored is a success: it was counted the first time. A message that can never be
//! ingested (bad JSON, invalid event) is reported as failed on its own, so SQS moves it to the
//! dead-letter queue after its last receive while the rest of the batch goes through; when the
//! store is unavailable, every message is reported failed, to be redelivered.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use tally_domain::validation::ValidationErrors;
use tally_service::events::{self, EventInput};
use tally_service::{Org, ServiceError, Tally};

/// What happened to each message of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ingested: usize,
    pub duplicates: usize,
    /// Message ids to report as failed.
    pub failed: Vec<String>,
}

impl Outcome {
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = self
            .failed
            .iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                failure
            })
            .collect();
        response
    }
}

fn parse(message: &SqsMessage) -> Option<EventInput> {
    let body: Value = serde_json::from_str(message.body.as_deref()?).ok()?;
    let event = match body.get("event") {
        Some(inner) => inner.clone(),
        None => body,
    };
    serde_json::from_value(event).ok()
}

/// An event refused only because it is stored already.
fn only_duplicates(errors: &ValidationErrors) -> bool {
    errors.fields().len() == 1 && errors.fields().get("transaction_id").is_some_and(|c| c == &["value_already_exist"])
}

/// Ingests one SQS batch for the organization.
pub async fn handle(tally: &Tally, org: &Org, event: SqsEvent) -> Outcome {
    let mut outcome = Outcome::default();
    let mut pending: Vec<(String, EventInput)> = Vec::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        match parse(&message) {
            Some(input) => pending.push((id, input)),
            None => {
                tracing::warn!(message_id = %id, "not a usage event; it will go to the dead-letter queue");
                outcome.failed.push(id);
            }
        }
    }
    // Until the rest of the batch goes through: duplicates succeed, invalid events fail alone.
    while !pending.is_empty() {
        let inputs: Vec<EventInput> = pending.iter().map(|(_, input)| input.clone()).collect();
        match events::ingest(tally, org, &inputs).await {
            Ok(stored) => {
                outcome.ingested += stored.len();
                break;
            }
            Err(ServiceError::BatchValidation(by_index)) => {
                let mut keep = Vec::with_capacity(pending.len());
                for (index, entry) in pending.into_iter().enumerate() {
                    match by_index.get(&index) {
                        None => keep.push(entry),
                        Some(errors) if only_duplicates(errors) => outcome.duplicates += 1,
                        Some(errors) => {
                            tracing::warn!(message_id = %entry.0, ?errors, "invalid event");
                            outcome.failed.push(entry.0);
                        }
                    }
                }
                pending = keep;
            }
            Err(e) => {
                tracing::error!("ingest failed, the batch will be redelivered: {e}");
                outcome.failed.extend(pending.into_iter().map(|(id, _)| id));
                break;
            }
        }
    }
    outcome
}
