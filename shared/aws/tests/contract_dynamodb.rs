//! The store contract against DynamoDB, through moto's server (or any endpoint in
//! `TALLY_TEST_DYNAMODB_ENDPOINT`). `tests/run` starts moto and sets it; without it the test
//! fails rather than pass without running.

// Write units per event are a ratio, not money.
#![allow(clippy::float_arithmetic)]

mod support;

use std::sync::Arc;
use tally_aws::{dynamodb_client, DynamoStore};
use tally_store::{contract, Store};

async fn store() -> DynamoStore {
    let config = support::config().await;
    let table = format!("tally-contract-{}", std::process::id());
    let store = DynamoStore::new(dynamodb_client(&config), table);
    store.create_table_if_missing().await.expect("create table");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_passes_the_contract() {
    let store: Arc<dyn Store> = Arc::new(store().await);
    contract::run_all(store, &format!("org-{}", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beyond_one_transaction_is_refused_whole() {
    use serde_json::json;
    use tally_service::events::{self, EventInput};
    use tally_service::{organizations, ServiceError, SystemClock, Tally};
    let store = Arc::new(store().await);
    let tally = Tally::new(store.clone(), Arc::new(SystemClock));
    let org = organizations::bootstrap(&tally, "Acme", Some(format!("key-{}", std::process::id())))
        .await
        .expect("org")
        .organization;
    // 101 parked events need 101 log items plus their parking items: more than DynamoDB's 100.
    let inputs: Vec<EventInput> = (0..101)
        .map(|i| EventInput {
            transaction_id: Some(json!(format!("big-{i}"))),
            external_subscription_id: Some(json!("nobody-yet")),
            code: Some(json!("calls")),
            ..Default::default()
        })
        .collect();
    match events::ingest(&tally, &org, inputs.clone()).await {
        Err(ServiceError::Validation(errors)) => {
            assert_eq!(errors.fields().get("events"), Some(&vec!["too_many_events".to_string()]))
        }
        other => panic!("expected too_many_events, got {other:?}"),
    }
    assert!(store.events_by_transaction(&org.id, "big-0").await.expect("read").is_empty());
    // A smaller batch goes through.
    events::ingest(&tally, &org, inputs[..20].to_vec()).await.expect("20 events fit");
    assert_eq!(store.events_by_transaction(&org.id, "big-0").await.expect("read").len(), 1);
}

/// Write request units per ingested event, by batch size, through the queue consumer (the
/// path AWS deployments take), with the catalog guard, the arrival records and the usage merges
/// included. Printed for the README's cost arithmetic; at batch 100 it must stay within 3 units
/// per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_units_per_event() {
    use serde_json::json;
    use tally_service::queued_events::{self, Message};
    use tally_service::{organizations, testing, SystemClock, Tally};
    let store = Arc::new(store().await);
    let tally = Tally::new(store.clone(), Arc::new(SystemClock)).with_usage_shards(8);
    let org_key = format!("wru-{}", std::process::id());
    let org = organizations::bootstrap(&tally, "Acme", Some(org_key)).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "wru_calls", "wru_plan", 0, "0.001").await.expect("catalog");
    for sub in 0..10 {
        let (customer, external_id) = (format!("wru-customer-{sub}"), format!("wru-sub-{sub}"));
        testing::subscribe(&tally, &org, &customer, "wru_plan", &external_id, None).await.expect("subscription");
    }
    let mut next = 0;
    // One message of `batch` events (as the API enqueues a batch), over `subscriptions` of them.
    let mut units_per_event = async |batch: usize, subscriptions: usize| {
        let before = store.write_units();
        let rounds = 200 / batch;
        for _ in 0..rounds {
            let events: Vec<_> = (0..batch)
                .map(|i| {
                    next += 1;
                    json!({"transaction_id": format!("wru-{next}"), "external_subscription_id":
                        format!("wru-sub-{}", i % subscriptions), "code": "wru_calls"})
                })
                .collect();
            let message = Message { id: format!("m-{next}"), body: json!({ "events": events }).to_string() };
            let outcome = queued_events::consume(&tally, &org, &[message]).await;
            assert_eq!((outcome.ingested, outcome.failed.len()), (batch, 0));
        }
        (store.write_units() - before) as f64 / (rounds * batch) as f64
    };
    let mut per_event = Vec::new();
    for batch in [1usize, 10, 100] {
        let units = units_per_event(batch, 1).await;
        println!("batch {batch:>3}, one subscription: {units:.2} write request units per event");
        per_event.push(units);
    }
    let spread = units_per_event(100, 10).await;
    println!("batch 100 over 10 subscriptions: {spread:.2} write request units per event");
    assert!(per_event[2] <= 3.0, "{per_event:?}");
    assert!(spread <= 3.0, "{spread}");
    assert!(per_event[0] > per_event[1] && per_event[1] > per_event[2], "batching amortizes: {per_event:?}");
}

/// One customer flooding one metric from many concurrent writers: with the bucket spread over
/// 8 usage states, writers collide far less than on one item, and every event counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_metric_spread_over_shards_contends_less() {
    use serde_json::json;
    use tally_service::events::{self, EventInput};
    use tally_service::{organizations, testing, usage, ServiceError, SystemClock, Tally};

    async fn flood(shards: u32, run: &str) -> (u64, u64) {
        let store = Arc::new(store().await);
        let tally = Tally::new(store.clone(), Arc::new(SystemClock)).with_usage_shards(shards);
        let org = organizations::bootstrap(&tally, "Acme", Some(format!("hot-{run}-{}", std::process::id())))
            .await
            .expect("org")
            .organization;
        let metric = format!("hot_{run}");
        let plan = format!("hot_plan_{run}");
        testing::counting_plan(&tally, &org, &metric, &plan, 0, "1").await.expect("catalog");
        let (customer, sub) = (format!("hot-customer-{run}"), format!("hot-sub-{run}"));
        testing::subscribe(&tally, &org, &customer, &plan, &sub, None).await.expect("subscription");
        let mut writers = Vec::new();
        for writer in 0..16 {
            let (tally, org, metric, sub) = (tally.clone(), org.clone(), metric.clone(), sub.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..10 {
                    let input = EventInput {
                        transaction_id: Some(json!(format!("{writer}-{i}"))),
                        external_subscription_id: Some(json!(sub)),
                        code: Some(json!(metric)),
                        ..Default::default()
                    };
                    // A writer that loses too many races is told to retry (503), as a client
                    // would be; the retry is idempotent.
                    let mut tries = 0;
                    loop {
                        match events::ingest(&tally, &org, vec![input.clone()]).await {
                            Ok(_) => break,
                            Err(ServiceError::Unavailable(_)) if tries < 5 => tries += 1,
                            Err(e) => panic!("ingest: {e:?}"),
                        }
                    }
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        let counted =
            usage::current_usage(&tally, &org, &customer, &sub, false).await.expect("usage").charges[0].events_count;
        (counted, store.conflicts())
    }

    let (counted_one, conflicts_one) = flood(1, "one").await;
    let (counted_eight, conflicts_eight) = flood(8, "eight").await;
    println!("16 writers × 10 events on one metric: {conflicts_one} retries on 1 state, {conflicts_eight} on 8");
    assert_eq!((counted_one, counted_eight), (160, 160));
    assert!(conflicts_eight * 2 < conflicts_one, "{conflicts_eight} vs {conflicts_one}");
}
