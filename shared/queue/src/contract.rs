//! What every queue must do, as one suite: `run_all` against a fresh, empty queue whose
//! visibility timeout is `visibility` (kept short so redelivery is quick to observe).

use crate::{Queue, QueueError, MAX_MESSAGE_BYTES};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(2);

pub async fn run_all(queue: &dyn Queue, visibility: Duration) {
    sends_and_receives_every_body(queue).await;
    a_message_not_deleted_comes_back(queue, visibility).await;
    refuses_oversized_messages(queue).await;
    an_empty_queue_waits_then_answers_nothing(queue).await;
}

/// Receives until `want` deliveries arrived or the queue stays empty for one wait.
async fn drain(queue: &dyn Queue, want: usize) -> Vec<crate::Delivery> {
    let mut got = Vec::new();
    while got.len() < want {
        let batch = queue.receive(10, WAIT).await.expect("receive");
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    got
}

async fn sends_and_receives_every_body(queue: &dyn Queue) {
    let bodies: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
    queue.send(bodies.clone()).await.expect("send");
    let got = drain(queue, 25).await;
    assert!(got.iter().all(|d| d.receive_count == 1), "first deliveries");
    let received: BTreeSet<String> = got.iter().map(|d| d.body.clone()).collect();
    assert_eq!(received, bodies.into_iter().collect(), "every body once, intact");
    queue.delete(got.into_iter().map(|d| d.receipt).collect()).await.expect("delete");
}

async fn a_message_not_deleted_comes_back(queue: &dyn Queue, visibility: Duration) {
    queue.send(vec!["again".into()]).await.expect("send");
    let first = drain(queue, 1).await;
    assert_eq!(first.len(), 1);
    assert!(queue.receive(10, Duration::ZERO).await.expect("receive").is_empty(), "hidden while in flight");
    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    let again = drain(queue, 1).await;
    assert_eq!(again.len(), 1, "redelivered after the visibility timeout");
    assert_eq!((again[0].id.as_str(), again[0].body.as_str()), (first[0].id.as_str(), "again"));
    assert_eq!(again[0].receive_count, 2);
    queue.delete(vec![again[0].receipt.clone()]).await.expect("delete");
    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    assert!(queue.receive(10, Duration::ZERO).await.expect("receive").is_empty(), "deleted for good");
}

async fn refuses_oversized_messages(queue: &dyn Queue) {
    let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    assert!(matches!(queue.send(vec![big]).await, Err(QueueError::TooLarge(_))));
}

async fn an_empty_queue_waits_then_answers_nothing(queue: &dyn Queue) {
    let started = tokio::time::Instant::now();
    let got = queue.receive(10, Duration::from_millis(300)).await.expect("receive");
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250), "long polling waits");
}
