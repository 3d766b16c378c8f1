//! The queue contract against SQS, through moto's server (`TALLY_TEST_DYNAMODB_ENDPOINT`, which
//! `tests/run` points at moto; it serves every AWS API on one port).

mod support;

use std::time::Duration;
use tally_aws::SqsQueue;
use tally_queue::contract;

#[tokio::test]
async fn sqs_queue_passes_the_contract() {
    let client = aws_sdk_sqs::Client::new(&support::config().await);
    let visibility = Duration::from_secs(1);
    let name = format!("tally-contract-{}", std::process::id());
    let queue = SqsQueue::create_if_missing(client.clone(), &name, visibility).await.expect("create queue");
    contract::run_all(&queue, visibility).await;
    // Creating it again finds the same queue.
    let again = SqsQueue::create_if_missing(client, &name, visibility).await.expect("exists");
    assert_eq!(again.url(), queue.url());
}

/// A message that can never be ingested is received `MAX_RECEIVES` times by the consumer
/// (`tally serve --backend aws` polls like this), then SQS moves it to the dead-letter queue;
/// a good message sent with it is metered once and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_ends_in_the_dead_letter_queue() {
    use std::sync::Arc;
    use tally_aws::{dynamodb_client, DynamoStore, MAX_RECEIVES};
    use tally_queue::Queue;
    use tally_service::{events, organizations, queued_events, SystemClock, Tally};

    let config = support::config().await;
    let name = format!("tally-poison-{}", std::process::id());
    let visibility = Duration::from_secs(1);
    let queue = SqsQueue::create_if_missing(tally_aws::sqs_client(&config), &name, visibility).await.expect("queue");
    let store = DynamoStore::new(dynamodb_client(&config), format!("tally-poison-{}", std::process::id()));
    store.create_table_if_missing().await.expect("table");
    let tally = Tally::new(Arc::new(store), Arc::new(SystemClock));
    let org = organizations::bootstrap(&tally, "Acme", Some(name.clone())).await.expect("org").organization;

    let good = r#"{"event":{"transaction_id":"fine-1","external_subscription_id":"s","code":"calls"}}"#;
    queue.send(vec!["{not json".into(), good.into()]).await.expect("send");
    let mut failures = 0;
    for _ in 0..20 {
        let outcome = queued_events::poll(&tally, &org, &queue, Duration::from_secs(1)).await.expect("poll");
        failures += outcome.failed.len();
        if failures == MAX_RECEIVES as usize {
            break;
        }
        tokio::time::sleep(visibility).await;
    }
    assert_eq!(failures, MAX_RECEIVES as usize, "received and failed {MAX_RECEIVES} times");
    assert_eq!(events::get(&tally, &org, "fine-1", None).await.expect("stored").transaction_id, "fine-1");

    // The next receive moves it to the dead-letter queue instead of delivering it.
    tokio::time::sleep(visibility).await;
    let outcome = queued_events::poll(&tally, &org, &queue, Duration::from_secs(1)).await.expect("poll");
    assert_eq!(outcome, queued_events::Outcome::default(), "nothing left to deliver");
    let dead = SqsQueue::named(tally_aws::sqs_client(&config), &format!("{name}-dlq")).await.expect("dlq");
    let parked = dead.receive(10, Duration::from_secs(1)).await.expect("receive");
    assert_eq!(parked.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["{not json"]);
}
