//! What the AWS tests share: the SDK configuration for the endpoint in
//! `TALLY_TEST_DYNAMODB_ENDPOINT` (moto's server, which `tests/run` starts). Without it the
//! tests fail rather than pass without running.

pub async fn config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("TALLY_TEST_DYNAMODB_ENDPOINT")
        .expect("set TALLY_TEST_DYNAMODB_ENDPOINT to an AWS endpoint (tests/run starts moto's server)");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}
