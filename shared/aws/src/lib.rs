//! tally's AWS adapters. The DynamoDB store and the SQS queue pass the same contract suites as
//! the embedded store and the in-memory queue (`tests/`, run against moto's server in CI).

mod dynamodb;
mod resources;
mod sqs;

pub use dynamodb::{DynamoStore, Faults};
pub use resources::{create_bucket_if_missing, create_event_bus_if_missing, s3_client, ResourceError};
pub use sqs::{SqsQueue, MAX_RECEIVES};

/// An SDK configuration from the standard AWS sources (environment, profile, instance role).
/// `AWS_ENDPOINT_URL` points it at another endpoint, such as moto's server.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A DynamoDB client for `config`, with patient retries: throttling backs off and retries
/// before the store reports the store as unavailable.
pub fn dynamodb_client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let retries = aws_config::retry::RetryConfig::standard().with_max_attempts(8);
    let conf = aws_sdk_dynamodb::config::Builder::from(config).retry_config(retries).build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// An SQS client for `config`.
pub fn sqs_client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// An EventBridge client for `config`.
pub fn eventbridge_client(config: &aws_config::SdkConfig) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(config)
}

/// What a Lambda reads from its environment: the DynamoDB store (`TALLY_DYNAMODB_TABLE`,
/// default `tally`), the usage shards per bucket (`TALLY_USAGE_SHARDS`, default 8, so
/// concurrent invocations do not contend for one item) and the ingest queue
/// (`TALLY_QUEUE_URL`, where the API puts accepted events).
pub struct LambdaSetup {
    pub store: DynamoStore,
    pub usage_shards: u32,
    pub queue: Option<SqsQueue>,
}

impl LambdaSetup {
    pub async fn from_env() -> Self {
        let config = load_config().await;
        let table = std::env::var("TALLY_DYNAMODB_TABLE").unwrap_or_else(|_| "tally".into());
        let usage_shards = std::env::var("TALLY_USAGE_SHARDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
        let queue = std::env::var("TALLY_QUEUE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| SqsQueue::new(sqs_client(&config), url));
        Self { store: DynamoStore::new(dynamodb_client(&config), table), usage_shards, queue }
    }
}
