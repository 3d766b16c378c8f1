//! SQS batches of usage events → usage state: the Lambda's side of
//! [`tally_service::queued_events`] (which does the work, and documents the message format and
//! the delivery rules). Failed messages are reported one by one (`ReportBatchItemFailures`), so
//! SQS redelivers only them and dead-letters them after their last receive.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tally_service::queued_events::{self, Message, Outcome};
use tally_service::{Org, Tally};

/// Ingests one SQS batch for the organization.
pub async fn handle(tally: &Tally, org: &Org, event: SqsEvent) -> Outcome {
    let messages: Vec<Message> = event
        .records
        .into_iter()
        .map(|m| Message { id: m.message_id.unwrap_or_default(), body: m.body.unwrap_or_default() })
        .collect();
    queued_events::consume(tally, org, &messages).await
}

/// The Lambda's answer: the messages to deliver again.
pub fn response(outcome: &Outcome) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = outcome
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
