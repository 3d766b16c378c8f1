//! The `period-close` Lambda: the tasks of the period-close state machine, on DynamoDB.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use std::sync::Arc;
use tally_function_period_close::{run, Task};
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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Task>| async move {
        run(tally, org, event.payload).await.map_err(Diagnostic::from)
    }))
    .await
}
