//! The `api` Lambda: API Gateway (HTTP API) → the same Router `tally serve` runs.
//!
//! Configuration: `TALLY_DYNAMODB_TABLE` (default `tally`), and `TALLY_API_KEY` for the
//! organization's key (from the stack's secret).

use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let config = tally_aws::load_config().await;
    let table = std::env::var("TALLY_DYNAMODB_TABLE").unwrap_or_else(|_| "tally".into());
    let store = tally_aws::DynamoStore::new(tally_aws::dynamodb_client(&config), table);
    // Usage states per bucket: several, so concurrent invocations do not contend for one item.
    let shards = std::env::var("TALLY_USAGE_SHARDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let tally = Tally::new(Arc::new(store), Arc::new(SystemClock)).with_usage_shards(shards);
    // Once per cold start: the organization exists and the configured key opens it.
    organizations::bootstrap(&tally, "tally", std::env::var("TALLY_API_KEY").ok()).await?;
    lambda_http::run(tally_api::router(tally)).await
}
