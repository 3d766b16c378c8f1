//! Races a busy production runs into (issue 8, defects 3 and 4): catalog changes while events
//! arrive lose no acknowledged event, and concurrent writers of one item or of one organization
//! all succeed (retried inside, never a 500 or a 503 for a race).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use tally_service::customers;
use tally_service::events::{self, EventInput};
use tally_service::plans::{self, ChargeInput, PlanInput};
use tally_service::{organizations, testing, usage, FixedClock, Org, ServiceError, Tally};
use tally_store::intercepted::{Call, Hooks, Intercepted, Then};
use tally_store::{SqliteStore, StoreResult};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

async fn setup(dir: &std::path::Path) -> (Tally, Org) {
    let store = Arc::new(SqliteStore::open(dir).expect("store"));
    let tally = Tally::new(store, Arc::new(FixedClock::new(at("2024-04-05T00:00:00Z"))));
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    testing::subscribe(&tally, &org, "cust", "p", "sub", Some("2024-04-01T00:00:00Z")).await.expect("subscription");
    (tally, org)
}

fn call(tx: &str) -> EventInput {
    EventInput {
        transaction_id: Some(json!(tx)),
        external_subscription_id: Some(json!("sub")),
        code: Some(json!("calls")),
        timestamp: Some(json!(1_712_145_600)), // 2024-04-03T12:00:00Z
        ..Default::default()
    }
}

/// A plan update as a client re-sending the whole plan sends it: charges without ids.
fn resent_plan(amount_cents: i64, per_call: &str) -> PlanInput {
    PlanInput {
        amount_cents: Some(amount_cents),
        charges: Some(vec![ChargeInput {
            billable_metric_code: Some("calls".into()),
            charge_model: Some("standard".into()),
            properties: Some(json!({"amount": per_call})),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_updates_racing_ingestion_lose_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    // 4 senders × 100 batches of 3 events, while 8 clients update the plan 6 times each.
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (tally, org) = (tally.clone(), org.clone());
        senders.push(tokio::spawn(async move {
            let mut acknowledged = 0;
            for batch in 0..100 {
                let inputs = (0..3).map(|i| call(&format!("{sender}-{batch}-{i}"))).collect();
                match events::ingest(&tally, &org, inputs).await {
                    Ok(stored) => acknowledged += stored.len(),
                    // Told to retry: not acknowledged, so not counted (a client would resend).
                    Err(ServiceError::Unavailable(_)) => {}
                    Err(e) => panic!("ingest: {e}"),
                }
            }
            acknowledged
        }));
    }
    let mut updaters = Vec::new();
    for client in 0..8 {
        let (tally, org) = (tally.clone(), org.clone());
        updaters.push(tokio::spawn(async move {
            for round in 0..6 {
                // The price ends at 2.00 per call whoever updates last.
                let per_call = if round == 5 { "2" } else { "1" };
                plans::update(&tally, &org, "p", resent_plan(1000 + client, per_call)).await.expect("update");
            }
        }));
    }
    for updater in updaters {
        updater.await.expect("updater");
    }
    let mut acknowledged = 0;
    for sender in senders {
        acknowledged += sender.await.expect("sender");
    }
    assert!(acknowledged >= 1000, "most batches go through ({acknowledged} of 1200)");
    let listed = events::list(&tally, &org, &Default::default(), Default::default()).await.expect("list");
    assert_eq!(listed.total_count, acknowledged, "every acknowledged event is stored");
    let usage = usage::current_usage(&tally, &org, "cust", "sub", false).await.expect("usage");
    assert_eq!(usage.charges.len(), 1);
    assert_eq!(usage.charges[0].events_count as usize, acknowledged, "and metered, once");
    assert_eq!(usage.charges[0].amount_cents as usize, acknowledged * 200); // each call × 2.00
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_one_plan_all_succeed() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    let mut clients = Vec::new();
    for client in 0..8i64 {
        let (tally, org) = (tally.clone(), org.clone());
        clients.push(tokio::spawn(async move {
            for round in 0..10 {
                let input = PlanInput { amount_cents: Some(client * 100 + round), ..Default::default() };
                plans::update(&tally, &org, "p", input).await.expect("every update succeeds");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    let plan = plans::get(&tally, &org, "p").await.expect("plan");
    // The last write wins, and it is one of the values written.
    assert!(plan.amount_cents % 100 < 10, "{}", plan.amount_cents);
    // The charge kept its id through 80 updates without charges.
    assert_eq!(plan.charges.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creating_different_customers_concurrently_never_fails() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    let mut clients = Vec::new();
    for client in 0..8 {
        let (tally, org) = (tally.clone(), org.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut input = serde_json::Map::new();
                input.insert("external_id".into(), json!(format!("c-{client}-{i}")));
                customers::upsert(&tally, &org, input).await.expect("every creation succeeds");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    let all = customers::list(&tally, &org).await.expect("list");
    assert_eq!(all.len(), 201); // 200 + the subscription's customer
                                // Sequential ids stay unique.
    let mut ids: Vec<u64> = all.iter().map(|c| c.sequential_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 201);
}

/// Creates another subscription between every read and write of an event batch (on a store of
/// its own over the same data): the worst interleaving of sign-ups and ingestion, every time.
#[derive(Default)]
struct SignUpBeforeEveryAppend {
    signups: Mutex<Option<(Tally, Org)>>,
    count: AtomicUsize,
}

#[async_trait]
impl Hooks for SignUpBeforeEveryAppend {
    async fn before(&self, call: Call) -> StoreResult<Then> {
        let signups = self.signups.lock().expect("lock").clone();
        if let (Call::AppendEvents, Some((tally, org))) = (call, signups) {
            let id = format!("new-{}", self.count.fetch_add(1, Ordering::SeqCst));
            testing::subscribe(&tally, &org, &id, "p", &id, None).await.expect("sign-up");
        }
        Ok(Then::Answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_racing_every_batch_never_fails_ingestion_for_another_subscription() {
    let dir = tempfile::tempdir().expect("dir");
    let inner = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let racing = Arc::new(Intercepted::new(inner.clone(), SignUpBeforeEveryAppend::default()));
    let clock = Arc::new(FixedClock::new(at("2024-04-05T00:00:00Z")));
    let tally = Tally::new(racing.clone(), clock.clone());
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    testing::subscribe(&tally, &org, "cust", "p", "sub", Some("2024-04-01T00:00:00Z")).await.expect("subscription");
    // From here, a sign-up (another process, on the same data) lands inside every batch's window.
    *racing.hooks.signups.lock().expect("lock") = Some((Tally::new(inner, clock), org.clone()));
    for batch in 0..5 {
        let inputs = (0..5).map(|e| call(&format!("busy-{batch}-{e}"))).collect();
        events::ingest(&tally, &org, inputs).await.expect("a sign-up elsewhere does not fail the batch");
    }
    assert_eq!(racing.hooks.count.load(Ordering::SeqCst), 5, "each batch raced one sign-up and went through at once");
    let usage = usage::current_usage(&tally, &org, "cust", "sub", false).await.expect("usage");
    assert_eq!(usage.charges[0].events_count, 25);
}
