//! The store contract against DynamoDB, through moto's server (or any endpoint in
//! `TALLY_TEST_DYNAMODB_ENDPOINT`). `tests/run` starts moto and sets it; without it the test
//! fails rather than pass without running.

use std::sync::Arc;
use tally_aws::{dynamodb_client, DynamoStore};
use tally_store::{contract, Store};

async fn store() -> DynamoStore {
    let endpoint = std::env::var("TALLY_TEST_DYNAMODB_ENDPOINT")
        .expect("set TALLY_TEST_DYNAMODB_ENDPOINT to a DynamoDB endpoint (tests/run starts moto's server)");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let table = format!("tally-contract-{}", std::process::id());
    let store = DynamoStore::new(dynamodb_client(&config), table);
    store.create_table_if_missing().await.expect("create table");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_passes_the_contract() {
    let store: Arc<dyn Store> = Arc::new(store().await);
    contract::run_all(store, &format!("org-{}", std::process::id())).await;
}
