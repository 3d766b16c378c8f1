//! The seeded auditor on the embedded store (see `tally_service::audit`): a random workload
//! with injected store faults, checked against the reference model. CI runs a few seeds; to
//! run many, `TALLY_AUDIT_SEEDS=1-500 cargo test --release -p tally-service --test auditor`
//! (each failure names its seed; rerun one with `TALLY_AUDIT_SEEDS=17`).

use std::sync::Arc;
use tally_service::audit;

/// Seeds from `TALLY_AUDIT_SEEDS` (`7`, `1-500` or `3,9,12`), else 1-4.
fn seeds() -> Vec<u64> {
    let spec = std::env::var("TALLY_AUDIT_SEEDS").unwrap_or_else(|_| "1-4".into());
    spec.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().unwrap_or(1)..=b.trim().parse().unwrap_or(0)).collect::<Vec<u64>>(),
            None => part.trim().parse().into_iter().collect(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_of_every_seed_matches_the_model() {
    let steps = std::env::var("TALLY_AUDIT_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(150);
    let mut failures = Vec::new();
    for seed in seeds() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
        match audit::run(seed, store, steps, 4).await {
            Ok(summary) => println!("seed {seed}: {summary:?}"),
            Err(failure) => {
                println!("FAILED {failure}");
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{} seed(s) failed:\n{}", failures.len(), failures.join("\n"));
}
