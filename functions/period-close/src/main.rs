//! The `period-close` Lambda: the tasks of the period-close state machine, on DynamoDB.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use std::sync::Arc;
use tally_function_period_close::{run, Task};
use tally_service::{organizations, SystemClock, Tally};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let setup = tally_aws::LambdaSetup::from_env().await;
    let tally = Tally::new(Arc::new(setup.store), Arc::new(SystemClock)).with_usage_shards(setup.usage_shards);
    // The installation's first organization, as the API function creates it.
    organizations::bootstrap(&tally, "tally", None).await?;
    let tally = &tally;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Task>| async move {
        run(tally, event.payload).await.map_err(Diagnostic::from)
    }))
    .await
}
