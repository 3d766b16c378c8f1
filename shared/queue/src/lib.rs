//! tally's queue port: usage events accepted by the API wait here until a consumer meters them.
//!
//! The model is SQS's: at-least-once delivery. A received message is hidden for a visibility
//! timeout; the consumer deletes it once it is done, otherwise it comes back. Consumers must
//! therefore be idempotent (the event store's dedupe makes them so). [`MemoryQueue`] is the
//! in-process implementation; SQS lives in `tally-aws`; [`contract`] is what both must pass.

pub mod contract;
mod memory;

pub use memory::MemoryQueue;

use async_trait::async_trait;
use std::time::Duration;

/// SQS's largest message body (256 KiB): producers split larger payloads.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Most messages one receive returns (SQS's limit).
pub const MAX_RECEIVE: usize = 10;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Stable across redeliveries.
    pub id: String,
    /// Names this delivery, for [`Queue::delete`].
    pub receipt: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The queue refused or could not be reached; nothing is known to be sent.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

pub type QueueResult<T> = Result<T, QueueError>;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends every body, or fails; a failure may have sent some of them (consumers dedupe).
    async fn send(&self, bodies: Vec<String>) -> QueueResult<()>;

    /// Up to `max` (≤ [`MAX_RECEIVE`]) messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> QueueResult<Vec<Delivery>>;

    /// Deletes delivered messages by receipt: they will not come back.
    async fn delete(&self, receipts: Vec<String>) -> QueueResult<()>;
}
