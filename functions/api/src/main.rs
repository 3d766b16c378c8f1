//! The `api` Lambda: API Gateway (HTTP API) → the same Router `tally serve` runs.
//!
//! Configuration: see `tally_aws::LambdaSetup`, and `TALLY_API_KEY` for the
//! organization's key (from the stack's secret). With `TALLY_QUEUE_URL` set, `POST /events`
//! checks events and puts them on SQS for the `ingest` Lambda.

use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let setup = tally_aws::LambdaSetup::from_env().await;
    let mut tally = Tally::new(Arc::new(setup.store), Arc::new(SystemClock)).with_usage_shards(setup.usage_shards);
    if let Some(queue) = setup.queue {
        tally = tally.with_queue(Arc::new(queue));
    }
    // Once per cold start: the organization exists and the configured key opens it.
    organizations::bootstrap(&tally, "tally", std::env::var("TALLY_API_KEY").ok()).await?;
    lambda_http::run(tally_api::router(tally)).await
}
