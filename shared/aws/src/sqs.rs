//! The queue port on SQS: the API sends accepted usage events here; the `ingest` Lambda (or
//! `tally serve --backend aws` in process) meters them.

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use std::time::Duration;
use tally_queue::{Delivery, Queue, QueueError, QueueResult, MAX_MESSAGE_BYTES, MAX_RECEIVE};

/// Receives after which SQS moves a message to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

/// Attempts at sending the entries of a batch that SQS reported as failed.
const SEND_ATTEMPTS: usize = 4;

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// An SDK failure with its causes (the bare error prints only "service error").
fn sdk_unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> QueueError {
    QueueError::Unavailable(DisplayErrorContext(&e).to_string())
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue named `name`.
    pub async fn named(client: Client, name: &str) -> QueueResult<Self> {
        let found = client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(format!("queue {name}: {}", DisplayErrorContext(&e))))?;
        let url = found.queue_url().ok_or_else(|| unavailable(format!("queue {name} has no URL")))?;
        Ok(Self::new(client, url))
    }

    /// The queue named `name`, created if missing together with its dead-letter queue
    /// (`{name}-dlq`), which takes a message after [`MAX_RECEIVES`] failed deliveries.
    pub async fn create_if_missing(client: Client, name: &str, visibility: Duration) -> QueueResult<Self> {
        let dead = client.create_queue().queue_name(format!("{name}-dlq")).send().await.map_err(unavailable)?;
        let dead_url = dead.queue_url().ok_or_else(|| unavailable("dead-letter queue has no URL"))?;
        let attributes = client
            .get_queue_attributes()
            .queue_url(dead_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable)?;
        let dead_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| unavailable("dead-letter queue has no ARN"))?;
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"{MAX_RECEIVES}"}}"#);
        let created = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility.as_secs().max(1).to_string())
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await;
        match created {
            Ok(created) => {
                let url = created.queue_url().ok_or_else(|| unavailable(format!("queue {name} has no URL")))?;
                Ok(Self::new(client, url))
            }
            // Exists with other attributes (created elsewhere, e.g. by the SAM stack): use it.
            Err(e) if e.code() == Some("QueueAlreadyExists") || e.code() == Some("QueueNameExists") => {
                Self::named(client, name).await
            }
            Err(e) => Err(sdk_unavailable(e)),
        }
    }
}

/// Groups bodies into SendMessageBatch calls: at most 10 entries and 256 KiB each.
fn send_batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for body in bodies {
        let fits = batches.last().is_some_and(|b| b.len() < MAX_RECEIVE && bytes + body.len() <= MAX_MESSAGE_BYTES);
        if !fits {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += body.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(body);
        }
    }
    batches
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, bodies: Vec<String>) -> QueueResult<()> {
        if let Some(big) = bodies.iter().find(|b| b.len() > MAX_MESSAGE_BYTES) {
            return Err(QueueError::TooLarge(big.len()));
        }
        for batch in send_batches(bodies) {
            let mut pending: Vec<(String, String)> =
                batch.into_iter().enumerate().map(|(i, body)| (i.to_string(), body)).collect();
            for attempt in 0..SEND_ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| SendMessageBatchRequestEntry::builder().id(id).message_body(body).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sdk_unavailable)?;
                let failed: Vec<&str> = sent.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(&id.as_str()));
            }
            if !pending.is_empty() {
                return Err(unavailable(format!("SQS refused {} message(s) after retries", pending.len())));
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> QueueResult<Vec<Delivery>> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_RECEIVE)).unwrap_or(10))
            // Whole seconds (at most 20), rounded up so a short wait still long-polls.
            .wait_time_seconds(i32::try_from(wait.as_millis().div_ceil(1000).min(20)).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sdk_unavailable)?;
        Ok(received
            .messages()
            .iter()
            .map(|m| Delivery {
                id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, receipts: Vec<String>) -> QueueResult<()> {
        for chunk in receipts.chunks(MAX_RECEIVE) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(r).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            self.client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_unavailable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        assert_eq!(send_batches(small).iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 3]);
        let big = vec!["x".repeat(150 * 1024), "y".repeat(150 * 1024), "z".into()];
        assert_eq!(send_batches(big).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
    }
}
