//! An in-process queue with SQS's delivery rules, for tests and single-process use.

use crate::{Delivery, Queue, QueueError, QueueResult, MAX_MESSAGE_BYTES, MAX_RECEIVE};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

struct Message {
    id: String,
    body: String,
    receive_count: u32,
    /// Hidden until then, after a delivery.
    invisible_until: Option<Instant>,
    /// The receipt of the latest delivery.
    receipt: Option<String>,
}

#[derive(Default)]
struct State {
    messages: VecDeque<Message>,
    next_id: u64,
}

pub struct MemoryQueue {
    visibility: Duration,
    state: Mutex<State>,
    arrived: Notify,
}

impl MemoryQueue {
    /// A queue that hides each delivered message for `visibility`.
    pub fn new(visibility: Duration) -> Self {
        Self { visibility, state: Mutex::new(State::default()), arrived: Notify::new() }
    }

    fn lock(&self) -> QueueResult<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| QueueError::Unavailable("queue state poisoned".into()))
    }

    fn take_visible(&self, max: usize) -> QueueResult<Vec<Delivery>> {
        let now = Instant::now();
        let visibility = self.visibility;
        let mut state = self.lock()?;
        let State { messages, next_id } = &mut *state;
        let mut out = Vec::new();
        for message in messages.iter_mut() {
            if out.len() == max {
                break;
            }
            if message.invisible_until.is_some_and(|until| until > now) {
                continue;
            }
            *next_id += 1;
            let receipt = format!("{}#{}", message.id, next_id);
            message.receive_count += 1;
            message.invisible_until = Some(now + visibility);
            message.receipt = Some(receipt.clone());
            out.push(Delivery {
                id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, bodies: Vec<String>) -> QueueResult<()> {
        if let Some(big) = bodies.iter().find(|b| b.len() > MAX_MESSAGE_BYTES) {
            return Err(QueueError::TooLarge(big.len()));
        }
        {
            let mut state = self.lock()?;
            for body in bodies {
                state.next_id += 1;
                let id = format!("m-{}", state.next_id);
                state.messages.push_back(Message { id, body, receive_count: 0, invisible_until: None, receipt: None });
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> QueueResult<Vec<Delivery>> {
        let max = max.clamp(1, MAX_RECEIVE);
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let found = self.take_visible(max)?;
            if !found.is_empty() || Instant::now() >= deadline {
                return Ok(found);
            }
            // Woken by a send, or soon enough to see a message whose visibility ran out.
            let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(50)), arrived).await;
        }
    }

    async fn delete(&self, receipts: Vec<String>) -> QueueResult<()> {
        let mut state = self.lock()?;
        // A stale receipt (the message was delivered again since) deletes nothing, as on SQS
        // after the visibility timeout.
        state.messages.retain(|m| !m.receipt.as_ref().is_some_and(|r| receipts.contains(r)));
        Ok(())
    }
}
