//! Nothing lost, nothing doubled: concurrent closers, and ingestion racing a subscription's
//! creation.

use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use tally_service::events::{self, EventInput};
use tally_service::records::SubscriptionRecord;
use tally_service::{invoices, organizations, period_close, testing, usage, FixedClock, Org, Tally};
use tally_store::SqliteStore;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

async fn setup(dir: &std::path::Path, now: &str) -> (Tally, Org) {
    let store = Arc::new(SqliteStore::open(dir).expect("store"));
    let tally = Tally::new(store, Arc::new(FixedClock::new(at(now))));
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    (tally, org)
}

/// Subscribes `cust-{external_id}` to plan `p` from April 1st, 2024.
async fn subscribe(tally: &Tally, org: &Org, external_id: &str) -> SubscriptionRecord {
    testing::subscribe(tally, org, &format!("cust-{external_id}"), "p", external_id, Some("2024-04-01T00:00:00Z"))
        .await
        .expect("subscription")
}

fn call(tx: &str, sub: &str) -> EventInput {
    EventInput {
        transaction_id: Some(json!(tx)),
        external_subscription_id: Some(json!(sub)),
        code: Some(json!("calls")),
        timestamp: Some(json!(1_712_145_600)), // 2024-04-03T12:00:00Z
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_closers_issue_one_invoice_per_period() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path(), "2024-04-01T00:00:00Z").await;
    for i in 0..5 {
        subscribe(&tally, &org, &format!("s{i}")).await;
    }
    // Eight closers at once, as the scheduler, `tally bill` and retries might: 5 subscriptions ×
    // 3 ended months (April, May, June) = 15 invoices, never more.
    let mut runs = Vec::new();
    for _ in 0..8 {
        let (tally, org) = (tally.clone(), org.clone());
        runs.push(tokio::spawn(async move { period_close::run(&tally, &org, at("2024-07-01T00:00:00Z")).await }));
    }
    let mut issued = 0;
    for run in runs {
        issued += run.await.expect("task").expect("close").invoices_issued;
    }
    assert_eq!(issued, 15);
    let all = invoices::list(&tally, &org, &Default::default()).await.expect("list");
    assert_eq!(all.len(), 15);
    // Numbers are unique per customer: 001, 002, 003 for each.
    let mut numbers: Vec<_> = all.iter().map(|i| i.number.clone()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_racing_the_subscription_creation_count_exactly_once() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path(), "2024-04-05T00:00:00Z").await;
    // 4 senders × 50 events while the subscription is being created: whichever side of the
    // creation an event lands on (parked, then attributed; or metered directly), it counts once.
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (tally, org) = (tally.clone(), org.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..50 {
                events::ingest(&tally, &org, vec![call(&format!("{sender}-{i}"), "racy")]).await.expect("ingest");
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    subscribe(&tally, &org, "racy").await;
    for s in senders {
        s.await.expect("sender");
    }
    let usage = usage::current_usage(&tally, &org, "cust-racy", "racy", false).await.expect("usage");
    assert_eq!(usage.charges[0].events_count, 200);
    assert_eq!(usage.amount_cents, 200 * 100); // 200 calls × 1.00
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_change_made_by_another_process_reaches_ingestion() {
    // Two tallies on one store, each with its own caches, like `tally serve` and `tally bill`.
    let dir = tempfile::tempdir().expect("dir");
    let (server, org) = setup(dir.path(), "2024-04-05T00:00:00Z").await;
    let other = Tally::new(server.store.clone(), Arc::new(FixedClock::new(at("2024-04-05T00:00:00Z"))));
    // The server learns (and caches) that "elsewhere" has no subscription: the event is parked.
    events::ingest(&server, &org, vec![call("e-1", "elsewhere")]).await.expect("ingest");
    // The other process creates it; its sweep meters the parked event.
    subscribe(&other, &org, "elsewhere").await;
    // The server's cached "no subscription" must not park this one: it is metered directly.
    events::ingest(&server, &org, vec![call("e-2", "elsewhere")]).await.expect("ingest");
    let usage = usage::current_usage(&server, &org, "cust-elsewhere", "elsewhere", false).await.expect("usage");
    assert_eq!(usage.charges[0].events_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_bucket_spread_over_shards_still_sums_exactly() {
    // Eight states per bucket (as on DynamoDB): 8 senders × 25 events into one bucket.
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path(), "2024-04-05T00:00:00Z").await;
    let tally = tally.with_usage_shards(8);
    let hot = subscribe(&tally, &org, "hot").await;
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (tally, org) = (tally.clone(), org.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..25 {
                events::ingest(&tally, &org, vec![call(&format!("hot-{sender}-{i}"), "hot")]).await.expect("ingest");
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    // 200 events hashed over 8 shards: every shard holds a state.
    let partition = format!("{}#usage#{}", org.id, hot.lago_id);
    let states = tally.store.query(&tally_store::Query::partition(partition)).await.expect("query");
    assert_eq!(states.items.len(), 8);
    let usage = usage::current_usage(&tally, &org, "cust-hot", "hot", false).await.expect("usage");
    assert_eq!(usage.charges[0].events_count, 200);
    assert_eq!(usage.amount_cents, 200 * 100); // 200 calls × 1.00
                                               // And the month is invoiced from the merged shards.
    let report = period_close::run(&tally, &org, at("2024-05-01T00:00:00Z")).await.expect("close");
    assert_eq!(report.invoices_issued, 1);
    let invoice = &invoices::list(&tally, &org, &Default::default()).await.expect("list")[0];
    assert_eq!(invoice.fees_amount_cents, 1000 + 200 * 100); // subscription 10.00 + 200 calls
}
