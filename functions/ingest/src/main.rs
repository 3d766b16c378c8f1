//! The `ingest` Lambda: SQS batches of usage events into usage state, on DynamoDB, reporting
//! per-message failures (`ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let setup = tally_aws::LambdaSetup::from_env().await;
    let tally = Tally::new(Arc::new(setup.store), Arc::new(SystemClock)).with_usage_shards(setup.usage_shards);
    let org = organizations::bootstrap(&tally, "tally", None).await?.organization;
    let (tally, org) = (&tally, &org);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(tally_function_ingest::response(
            &tally_function_ingest::handle(tally, org, event.payload).await,
        ))
    }))
    .await
}
