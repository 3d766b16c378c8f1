//! The close costs what is due, not what exists: with nothing due it reads one page per shard
//! of the due index however many subscriptions there are, and an installation from before the
//! index gets it built at its first close without losing a period.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tally_service::{due_index, invoices, organizations, period_close, testing, FixedClock, Org, Tally};
use tally_store::intercepted::{Call, Hooks, Intercepted, Then};
use tally_store::{Condition, Key, Query, SqliteStore, Store, StoreResult, Write};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

/// Counts the reads made through a store.
#[derive(Default)]
struct Reads(AtomicUsize);

#[async_trait]
impl Hooks for Reads {
    async fn before(&self, call: Call) -> StoreResult<Then> {
        if matches!(call, Call::Get | Call::Query) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Then::Answer)
    }
}

type Counting = Intercepted<Reads>;

async fn setup(dir: &std::path::Path, subscriptions: usize) -> (Tally, Org, Arc<Counting>, Arc<FixedClock>) {
    let store = Arc::new(Counting::new(Arc::new(SqliteStore::open(dir).expect("store")), Reads::default()));
    let clock = Arc::new(FixedClock::new(at("2024-04-01T00:00:00Z")));
    let tally = Tally::new(store.clone(), clock.clone());
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    for i in 0..subscriptions {
        testing::subscribe(&tally, &org, &format!("c{i}"), "p", &format!("s{i}"), None).await.expect("subscription");
    }
    (tally, org, store, clock)
}

/// Reads made by one close of the installation at `now`, with what it did.
async fn close(tally: &Tally, store: &Counting, now: &str) -> (usize, period_close::CloseReport) {
    let before = store.hooks.0.load(Ordering::SeqCst);
    let report = period_close::run_all(tally, at(now)).await.expect("close");
    (store.hooks.0.load(Ordering::SeqCst) - before, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_with_nothing_due_reads_one_page_per_shard() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, _, store, _) = setup(dir.path(), 400).await;
    // Mid-April: no period has ended. The organization list, its index marker, and one query per
    // shard: nothing that grows with the 400 subscriptions.
    let (reads, report) = close(&tally, &store, "2024-04-15T00:00:00Z").await;
    assert_eq!(report, period_close::CloseReport::default());
    let ceiling = due_index::SHARDS as usize + 8;
    assert!(reads <= ceiling, "{reads} reads with nothing due (at most {ceiling})");

    // May 1st: April ended for all 400, each billed once; then nothing is due again until June.
    let (reads_billing, report) = close(&tally, &store, "2024-05-01T00:00:00Z").await;
    assert_eq!((report.invoices_issued, report.failures.len()), (400, 0));
    assert!(reads_billing > 400, "billing reads per subscription: {reads_billing}");
    let (reads, report) = close(&tally, &store, "2024-05-01T00:01:00Z").await;
    assert_eq!(report, period_close::CloseReport::default());
    assert!(reads <= ceiling, "{reads} reads after billing (at most {ceiling})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_from_before_the_index_is_billed_in_full_at_its_first_close() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org, store, _) = setup(dir.path(), 30).await;
    // Remove the index and its marker, as data written before the index has neither.
    let mut removed = 0;
    for shard in 0..due_index::SHARDS {
        let page = store.query(&Query::partition(due_index::partition(shard))).await.expect("shard");
        for item in page.items {
            store.transact(vec![Write::Delete { key: item.key, condition: Condition::None }]).await.expect("delete");
            removed += 1;
        }
    }
    assert!(removed >= 30, "every subscription had an entry: {removed}");
    store
        .transact(vec![Write::Delete { key: Key::new(org.id.clone(), "due_index"), condition: Condition::None }])
        .await
        .expect("marker");

    // April, May, June ended: 30 × 3 invoices, once.
    let (_, report) = close(&tally, &store, "2024-07-01T00:00:00Z").await;
    assert_eq!((report.invoices_issued, report.failures.len()), (90, 0));
    let (_, again) = close(&tally, &store, "2024-07-01T00:00:00Z").await;
    assert_eq!(again.invoices_issued, 0);
    assert_eq!(invoices::list(&tally, &org, &Default::default()).await.expect("list").len(), 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ending_or_starting_later_is_woken_at_its_instant() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org, store, clock) = setup(dir.path(), 0).await;
    // One starts on April 20th; one ends on April 10th (its own end, not a period end).
    testing::subscribe(&tally, &org, "later", "p", "later", Some("2024-04-20T00:00:00Z")).await.expect("pending");
    testing::subscribe(&tally, &org, "ending", "p", "ending", None).await.expect("active");
    tally_service::subscriptions::update(
        &tally,
        &org,
        "ending",
        tally_service::subscriptions::SubscriptionUpdate {
            ending_at: Some("2024-04-10T00:00:00Z".into()),
            ..Default::default()
        },
    )
    .await
    .expect("ending_at");
    clock.set(at("2024-04-10T00:00:00Z"));
    let (_, report) = close(&tally, &store, "2024-04-10T00:00:00Z").await;
    assert_eq!(report.subscriptions_terminated, 1, "{report:?}");
    // Its termination invoice, issued as it ends.
    let issued = invoices::list(&tally, &org, &Default::default()).await.expect("list");
    assert_eq!(issued.iter().map(|i| i.subscription.external_id.as_str()).collect::<Vec<_>>(), ["ending"]);
    clock.set(at("2024-04-20T00:00:00Z"));
    let (_, report) = close(&tally, &store, "2024-04-20T00:00:00Z").await;
    assert_eq!(report.subscriptions_activated, 1, "{report:?}");
    let (_, report) = close(&tally, &store, "2024-05-01T00:00:00Z").await;
    assert_eq!(report.invoices_issued, 1, "the April stub of the one that started on the 20th: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_that_moves_billing_earlier_is_followed() {
    use tally_service::plans::{self, ChargeInput, PlanInput};
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org, store, _) = setup(dir.path(), 0).await;
    let yearly = |monthly: bool| PlanInput {
        name: Some("Yearly".into()),
        code: Some("y".into()),
        interval: Some("yearly".into()),
        amount_cents: Some(12000),
        amount_currency: Some("USD".into()),
        bill_charges_monthly: Some(monthly),
        charges: Some(vec![ChargeInput {
            billable_metric_code: Some("calls".into()),
            charge_model: Some("standard".into()),
            properties: Some(serde_json::json!({"amount": "1"})),
            ..Default::default()
        }]),
        ..Default::default()
    };
    plans::create(&tally, &org, yearly(false)).await.expect("plan");
    testing::subscribe(&tally, &org, "c", "y", "s", None).await.expect("subscription");
    // Due at the year's end; then the plan bills its charges monthly: April ends on May 1st.
    plans::update(&tally, &org, "y", PlanInput { bill_charges_monthly: Some(true), ..Default::default() })
        .await
        .expect("update");
    let (_, report) = close(&tally, &store, "2024-05-01T00:00:00Z").await;
    assert_eq!((report.invoices_issued, report.failures.len()), (1, 0), "{report:?}");
}
