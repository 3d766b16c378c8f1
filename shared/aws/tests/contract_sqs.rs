//! The queue contract against SQS, through moto's server (`TALLY_TEST_DYNAMODB_ENDPOINT`, which
//! `tests/run` points at moto; it serves every AWS API on one port).

use std::time::Duration;
use tally_aws::SqsQueue;
use tally_queue::contract;

pub async fn config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("TALLY_TEST_DYNAMODB_ENDPOINT")
        .expect("set TALLY_TEST_DYNAMODB_ENDPOINT to an AWS endpoint (tests/run starts moto's server)");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

#[tokio::test]
async fn sqs_queue_passes_the_contract() {
    let client = aws_sdk_sqs::Client::new(&config().await);
    let visibility = Duration::from_secs(1);
    let name = format!("tally-contract-{}", std::process::id());
    let queue = SqsQueue::create_if_missing(client.clone(), &name, visibility).await.expect("create queue");
    contract::run_all(&queue, visibility).await;
    // Creating it again finds the same queue.
    let again = SqsQueue::create_if_missing(client, &name, visibility).await.expect("exists");
    assert_eq!(again.url(), queue.url());
}
