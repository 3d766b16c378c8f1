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

/// Runs are written a slice per commit. A run cut short (the process stopped mid-way) is not
/// trusted: on start its slices are dropped and its keys rebuilt from the log, so every event
/// stays known exactly once and later runs are whole.
#[tokio::test]
async fn a_run_cut_short_is_rebuilt_from_the_log() {
    use tally_store::{AppendOutcome, EventBatch, LoggedEvent};
    let event = |i: usize| LoggedEvent {
        organization_id: "org".into(),
        external_subscription_id: "sub".into(),
        transaction_id: format!("t{i}"),
        code: "calls".into(),
        timestamp_ms: 1,
        body: b"{}".to_vec(),
    };
    let batch = |range: std::ops::Range<usize>| EventBatch {
        events: range.map(event).collect(),
        usage: vec![],
        writes: vec![],
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // (keys, runs, keys held twice) in `event_keys`.
    let keys_on_disk = |dir: &std::path::Path| -> (i64, i64, i64) {
        let conn = rusqlite::Connection::open(dir.join("tally.db")).expect("open db");
        let sql = "SELECT COUNT(*), COUNT(DISTINCT run), COUNT(*) - COUNT(DISTINCT hash || ':' || seq) FROM event_keys";
        conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("count")
    };
    {
        // 5000 keys frozen as one run; the next commit writes only its first slice.
        let store = SqliteStore::open_with(dir.path(), 5000).expect("open");
        for start in (0..5000).step_by(100) {
            store.append_events(batch(start..start + 100)).await.expect("append");
        }
        // Commits write slices once a helper thread has sorted the run: stop after the first.
        let mut next = 5000;
        while keys_on_disk(dir.path()).0 == 0 && next < 5500 {
            store.append_events(batch(next..next + 1)).await.expect("append");
            next += 1;
        }
    }
    let (keys, runs, _) = keys_on_disk(dir.path());
    assert!(keys > 0 && keys < 5000 && runs == 1, "a partial run on disk: {keys} keys");
    let store = SqliteStore::open_with(dir.path(), 5000).expect("reopen");
    for i in [0, 2500, 4999, 5000] {
        assert_eq!(store.append_events(batch(i..i + 1)).await.expect("append"), AppendOutcome::Duplicates(vec![0]));
        assert_eq!(store.events_by_transaction("org", &format!("t{i}")).await.expect("find").len(), 1);
    }
    // Ingesting on, the run is written whole, in slices.
    for start in (5500..12500).step_by(100) {
        store.append_events(batch(start..start + 100)).await.expect("append");
    }
    let (keys, runs, twice) = keys_on_disk(dir.path());
    assert!(keys >= 5000 && runs >= 1, "{keys} keys in {runs} runs");
    assert_eq!(twice, 0, "the partial run was dropped, not kept beside its rewrite");
    for i in [0, 5000, 12499] {
        assert_eq!(store.append_events(batch(i..i + 1)).await.expect("append"), AppendOutcome::Duplicates(vec![0]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_panics_fails_its_batch_and_the_writer_goes_on() {
    use tally_store::{AppendOutcome, EventBatch, Key, LoggedEvent, MergeError, StoreError, UsageMerge};
    let event = |tx: &str| LoggedEvent {
        organization_id: "org".into(),
        external_subscription_id: "sub".into(),
        transaction_id: tx.into(),
        code: "calls".into(),
        timestamp_ms: 1,
        body: b"{}".to_vec(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open");
    let state = Key::new("org#usage", "s");
    // Before the fix, a panic here (an overflow in a decimal sum) ended the writer thread:
    // every later write of every organization answered 503, while /health said 200.
    #[allow(clippy::panic)]
    let panicking = UsageMerge { key: state.clone(), merge: Box::new(|_| panic!("Addition overflowed")) };
    let refused =
        store.append_events(EventBatch { events: vec![event("bad")], usage: vec![panicking], writes: vec![] });
    assert!(matches!(refused.await, Err(StoreError::Merge(MergeError::Invalid(_)))));
    // Nothing of the refused batch was written, and the next batch goes through.
    assert!(store.events_by_transaction("org", "bad").await.expect("lookup").is_empty());
    let fine = UsageMerge { key: state.clone(), merge: Box::new(|_| Ok(b"1".to_vec())) };
    let batch = EventBatch { events: vec![event("good")], usage: vec![fine], writes: vec![] };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
    assert_eq!(store.get(&state).await.expect("get").expect("state").value, b"1".to_vec());
    store.health().await.expect("the writer is healthy");
}
