//! The seeded auditor (`tally_service::audit`) on DynamoDB through moto's server: the same
//! random workload and reference model as on the embedded store, with faults injected into the
//! DynamoDB adapter itself (throttled calls, transactions cancelled by a conflict, transactions
//! whose answer is lost after they committed: 3 % of calls) and above it at the store port
//! (1 %).
//! `TALLY_AUDIT_SEEDS` picks seeds (default 1-2), `TALLY_AUDIT_STEPS` the workload length.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use tally_aws::{dynamodb_client, DynamoStore, Faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_matches_the_model_on_dynamodb() {
    let config = support::config().await;
    let spec = std::env::var("TALLY_AUDIT_SEEDS").unwrap_or_else(|_| "1-2".into());
    let seeds: Vec<u64> = match spec.split_once('-') {
        Some((a, b)) => (a.parse().unwrap_or(1)..=b.parse().unwrap_or(0)).collect(),
        None => spec.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
    };
    let steps = std::env::var("TALLY_AUDIT_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(80);
    let mut failures = Vec::new();
    for seed in seeds {
        // A fresh table per seed: the workload starts from an empty installation.
        let table = format!("tally-audit-{}-{seed}", std::process::id());
        let store = DynamoStore::new(dynamodb_client(&config), table);
        store.create_table_if_missing().await.expect("create table");
        let faults = Arc::new(Faults::new(seed, 3));
        let store = store.with_faults(faults.clone());
        match tally_service::audit::run(seed, Arc::new(store), steps, 1).await {
            Ok(summary) => {
                println!("seed {seed}: {summary:?}, adapter faults {}", faults.injected.load(Ordering::Relaxed))
            }
            Err(failure) => {
                println!("FAILED {failure}");
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{} seed(s) failed:\n{}", failures.len(), failures.join("\n"));
}
