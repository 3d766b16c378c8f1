//! SQS batches from `events/` through the ingest handler: counted once however often SQS
//! delivers them, and a bad message fails alone.

use aws_lambda_events::event::sqs::SqsEvent;
use std::sync::Arc;
use tally_function_ingest::{handle, response};
use tally_service::{organizations, testing, usage, FixedClock, Org, Tally};

fn batch() -> SqsEvent {
    let path = format!("{}/../../events/sqs-batch.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("SQS event")
}

async fn setup(dir: &std::path::Path) -> (Tally, Org) {
    let store = Arc::new(tally_store::SqliteStore::open(dir).expect("store"));
    let tally = Tally::new(store, Arc::new(FixedClock::new("2024-04-05T00:00:00Z".parse().expect("time"))));
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 0, "1").await.expect("catalog");
    testing::subscribe(&tally, &org, "cust-q", "p", "sub-q", Some("2024-04-01T00:00:00Z")).await.expect("subscription");
    (tally, org)
}

async fn calls(tally: &Tally, org: &Org) -> u64 {
    usage::current_usage(tally, org, "cust-q", "sub-q", false).await.expect("usage").charges[0].events_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_counts_once_however_often_it_is_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;

    // q-1, q-2, then q-3 and q-4 in one message (as the API enqueues them), q-1 again (a
    // producer's retry), an event without ids, and a body that is not JSON.
    let first = handle(&tally, &org, batch()).await;
    assert_eq!((first.ingested, first.duplicates), (4, 1));
    let poison = vec!["m-poison".to_string(), "m-not-json".to_string()];
    assert_eq!(first.failed, poison, "the bad messages fail alone");
    assert_eq!(calls(&tally, &org).await, 4);
    // The event keeps the id the API answered with.
    let event = tally_service::events::get(&tally, &org, "q-3", None).await.expect("q-3 stored");
    assert_eq!(event.lago_id, "0190a1b2-0000-7000-8000-000000000003");

    // SQS redelivers the whole batch: every event was counted already.
    let again = handle(&tally, &org, batch()).await;
    assert_eq!((again.ingested, again.duplicates), (0, 5));
    assert_eq!(again.failed, poison);
    assert_eq!(calls(&tally, &org).await, 4);

    // The Lambda's answer lists only the failed messages.
    let response = response(&again);
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["m-poison", "m-not-json"]);
}
