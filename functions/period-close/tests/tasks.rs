//! The period-close tasks run as the state machine runs them, twice in a row: the second
//! execution issues nothing. Inputs are the fixtures in `events/`.

use serde_json::{json, Value};
use std::sync::Arc;
use tally_function_period_close::{run, Task};
use tally_service::{invoices, organizations, testing, FixedClock, Org, Tally};

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

/// One execution of the state machine: lifecycle, then pages of due periods fanned out to
/// bill_one, then finalize. Returns how many invoices it issued.
async fn execute(tally: &Tally, org: &Org) -> usize {
    run(tally, org, fixture("period-close-lifecycle.json")).await.expect("lifecycle");
    let mut issued = 0;
    let mut list = fixture("period-close-list-due.json");
    loop {
        let page = run(tally, org, list.clone()).await.expect("list_due");
        for item in page["items"].as_array().expect("items") {
            let task = json!({"task": "bill_one", "period": item});
            let done = run(tally, org, serde_json::from_value(task).expect("task")).await.expect("bill_one");
            issued += usize::from(done["issued"] == Value::Bool(true));
        }
        match page["next"].as_str() {
            Some(next) => {
                if let Task::ListDue { after, .. } = &mut list {
                    *after = Some(next.to_owned());
                }
            }
            None => break,
        }
    }
    run(tally, org, fixture("period-close-finalize.json")).await.expect("finalize");
    issued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_execution_issues_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    // April, May and June have ended by July 1st: 3 subscriptions × 3 months.
    assert_eq!(execute(&tally, &org).await, 9);
    assert_eq!(execute(&tally, &org).await, 0);
    assert_eq!(invoices::list(&tally, &org, &Default::default()).await.expect("list").len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_a_period_twice_is_a_no_op_and_errors_are_typed() {
    let dir = tempfile::tempdir().expect("dir");
    let (tally, org) = setup(dir.path()).await;
    let page = run(&tally, &org, fixture("period-close-list-due.json")).await.expect("list_due");
    let first = page["items"][0].clone();
    let bill = || serde_json::from_value::<Task>(json!({"task": "bill_one", "period": first.clone()})).expect("task");
    assert_eq!(run(&tally, &org, bill()).await.expect("bill")["issued"], true);
    assert_eq!(run(&tally, &org, bill()).await.expect("bill again")["issued"], false);
    // The fixture names a subscription version that does not exist: not worth retrying.
    let error = run(&tally, &org, fixture("period-close-bill-one.json")).await.expect_err("unknown subscription");
    assert_eq!(error.error_type(), "NonRetryable");
}
