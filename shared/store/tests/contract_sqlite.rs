//! The store contract against the embedded SQLite store.

use std::sync::Arc;
use tally_store::{contract, SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    contract::run_all(store, "org").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_contract_holds_while_event_keys_move_to_disk_all_the_time() {
    // Keys leave memory for the on-disk index every 3 events: dedupe must span both tiers.
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(dir.path(), 3).expect("open"));
    contract::run_all(store, "org").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_survives_restarts_in_both_tiers() {
    use tally_store::{AppendOutcome, EventBatch, LoggedEvent};
    let event = |tx: &str| LoggedEvent {
        organization_id: "org".into(),
        external_subscription_id: "sub".into(),
        transaction_id: tx.into(),
        code: "calls".into(),
        timestamp_ms: 1,
        body: b"{}".to_vec(),
    };
    let batch =
        |txs: &[&str]| EventBatch { events: txs.iter().map(|t| event(t)).collect(), usage: vec![], writes: vec![] };
    let dir = tempfile::tempdir().expect("temp dir");
    {
        // 10 events with an archive run every 4: 8 keys on disk, 2 in memory only.
        let store = SqliteStore::open_with(dir.path(), 4).expect("open");
        for i in 0..10 {
            let tx = format!("t{i}");
            assert_eq!(store.append_events(batch(&[&tx])).await.expect("append"), AppendOutcome::Appended);
        }
    }
    // After a restart (the in-memory tier rebuilt from the log), every one is still known.
    let store = SqliteStore::open_with(dir.path(), 4).expect("reopen");
    for i in 0..10 {
        let tx = format!("t{i}");
        assert_eq!(
            store.append_events(batch(&[&tx])).await.expect("append"),
            AppendOutcome::Duplicates(vec![0]),
            "{tx}"
        );
        assert_eq!(store.events_by_transaction("org", &tx).await.expect("find").len(), 1, "{tx}");
    }
    assert_eq!(store.append_events(batch(&["t10"])).await.expect("append"), AppendOutcome::Appended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    use tally_store::{Condition, Key, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let key = Key::new("org#metric", "calls");
    {
        let store = SqliteStore::open(dir.path()).expect("open");
        store
            .transact(vec![Write::Put { key: key.clone(), value: b"v".to_vec(), condition: Condition::Absent }])
            .await
            .expect("put");
    }
    let store = SqliteStore::open(dir.path()).expect("reopen");
    assert_eq!(store.get(&key).await.expect("get").map(|i| i.value), Some(b"v".to_vec()));
}
