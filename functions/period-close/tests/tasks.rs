//! The period-close tasks run as the state machine runs them, twice in a row: the second
//! execution issues nothing. Inputs are the fixtures in `events/`. Then the machine's capacity:
//! from the ASL, the history events one execution needs for a million subscriptions.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tally_function_period_close::{run, Task};
use tally_service::{due_index, invoices, organizations, period_close, testing, FixedClock, Org, Tally};

fn fixture(name: &str) -> Task {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("task")
}

async fn setup(dir: &std::path::Path) -> (Tally, Org) {
    let store = Arc::new(tally_store::SqliteStore::open(dir).expect("store"));
    let tally = Tally::new(store, Arc::new(FixedClock::new("2024-04-01T00:00:00Z".parse().expect("time"))));
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    for i in 0..3 {
        testing::subscribe(&tally, &org, &format!("cust-{i}"), "p", &format!("sub-{i}"), None)
            .await
            .expect("subscription");
    }
    (tally, org)
}

/// One execution of the state machine: prepare, then every shard (a child execution of the
/// Distributed Map) page by page until its `next` is null. Returns the invoices it issued.
async fn execute(tally: &Tally) -> u64 {
    let prepared = run(tally, fixture("period-close-prepare.json")).await.expect("prepare");
    let mut issued = 0;
    for shard in prepared["shards"].as_array().expect("shards") {
        let mut page = json!({"task": "close_page", "at": prepared["at"], "shard": shard, "after": null});
        loop {
            let done = run(tally, serde_json::from_value(page.clone()).expect("task")).await.expect("close_page");
            issued += done["issued"].as_u64().expect("issued");
            if done["next"].is_null() {
                break;
            }
            page["after"] = done["next"].clone();
        }
    }
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_execution_issues_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    // April, May and June have ended by July 1st: 3 subscriptions × 3 months.
    assert_eq!(execute(&tally).await, 9);
    assert_eq!(execute(&tally).await, 0);
    assert_eq!(invoices::list(&tally, &org, &Default::default()).await.expect("list").len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_page_twice_is_a_no_op_and_errors_are_typed() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    run(&tally, fixture("period-close-prepare.json")).await.expect("prepare");
    let shard = due_index::subscription_shard(&org.id, "sub-0");
    let page = || {
        serde_json::from_value::<Task>(json!({"task": "close_page", "at": "2024-07-01T00:00:00Z", "shard": shard}))
            .expect("task")
    };
    let first = run(&tally, page()).await.expect("page");
    assert!(first["issued"].as_u64().expect("issued") >= 3, "{first}");
    assert_eq!(run(&tally, page()).await.expect("page again")["issued"], 0);
    let error = run(
        &tally,
        serde_json::from_value(json!({"task": "close_page", "at": "2024-07-01T00:00:00Z", "shard": 999}))
            .expect("task"),
    )
    .await
    .expect_err("no such shard");
    assert_eq!(error.error_type(), "NonRetryable");
}

/// Step Functions' cap on the events in one execution's history.
const HISTORY_LIMIT: u64 = 25_000;

/// History events a state adds each time it runs (Standard workflows): entered and exited,
/// plus scheduled, started and succeeded for a task.
fn events_of(state: &Value) -> u64 {
    match state["Type"].as_str() {
        Some("Task") => 5,
        Some("Map") => 4, // entered, map run started, map run succeeded, exited
        _ => 2,
    }
}

#[test]
fn one_execution_closes_a_million_subscriptions_within_the_history_limit() {
    let asl: Value = serde_json::from_str(include_str!("../../../infra/period-close.asl.json")).expect("asl");
    let states = asl["States"].as_object().expect("states");
    let (_, map) = states.iter().find(|(_, s)| s["Type"] == "Map").expect("a Map state");
    assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED", "children keep their own history");
    assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["ExecutionType"], "STANDARD", "no 5-minute cap");

    // The parent's history does not grow with the subscriptions: start, each state once, end.
    let parent: u64 = 2 + states.values().map(events_of).sum::<u64>();
    assert!(parent < 50, "{parent}");

    // A child loops ClosePage → MorePages → ClosePage until a page has no `next`.
    let child = map["ItemProcessor"]["States"].as_object().expect("child states");
    let task = &child["ClosePage"];
    assert_eq!(task["Next"], "MorePages");
    assert_eq!(child["MorePages"]["Choices"][0]["Next"], "ClosePage");
    let per_page = events_of(task) + events_of(&child["MorePages"]);
    // Each retry of a page adds a failure, a schedule and a start.
    let per_retry = 3;

    // A million subscriptions of one organization over the shards, two entries each (a stale
    // early entry besides the due one), every page retried once.
    let subscriptions = 1_000_000;
    let mut load: HashMap<u32, u64> = HashMap::new();
    for i in 0..subscriptions {
        *load.entry(due_index::subscription_shard("org", &format!("sub-{i}"))).or_default() += 2;
    }
    assert_eq!(load.len(), due_index::SHARDS as usize);
    let heaviest = load.values().copied().max().expect("a shard");
    let pages = heaviest.div_ceil(period_close::PAGE as u64) + 1;
    let child_events = 2 + pages * (per_page + per_retry) + events_of(&child["ShardClosed"]);
    assert!(child_events < HISTORY_LIMIT, "{child_events} events for {heaviest} entries");
    println!("1M subscriptions: parent {parent} events; heaviest shard {heaviest} entries, {pages} pages, {child_events} events (limit {HISTORY_LIMIT})");
}
