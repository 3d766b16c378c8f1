//! tally's AWS adapters. The DynamoDB store passes the same contract suite as the embedded one
//! (`tests/contract_dynamodb.rs`, run against moto's server in CI).

mod dynamodb;

pub use dynamodb::{DynamoStore, EVENTS_INDEX};

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
