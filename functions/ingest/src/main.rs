//! The `ingest` Lambda: SQS batches of usage events into usage state, on DynamoDB, reporting
//! per-message failures (`ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let config = tally_aws::load_config().await;
    let table = std::env::var("TALLY_DYNAMODB_TABLE").unwrap_or_else(|_| "tally".into());
    let store = tally_aws::DynamoStore::new(tally_aws::dynamodb_client(&config), table);
    // Usage states per bucket: several, so concurrent invocations do not contend for one item.
    let shards = std::env::var("TALLY_USAGE_SHARDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let tally = Tally::new(Arc::new(store), Arc::new(SystemClock)).with_usage_shards(shards);
    let org = organizations::bootstrap(&tally, "tally", None).await?.organization;
    let (tally, org) = (&tally, &org);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            tally_function_ingest::handle(tally, org, event.payload).await.response(),
        )
    }))
    .await
}
