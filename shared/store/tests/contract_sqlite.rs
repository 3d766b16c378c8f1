//! The store contract against the embedded SQLite store.

use std::sync::Arc;
use tally_store::{contract, SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    contract::run_all(store, "org").await;
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
