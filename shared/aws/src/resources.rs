//! Creating the AWS resources `tally serve --backend aws --create-resources` needs, when missing
//! (the SAM stack creates them in a deployment): the documents bucket and the event bus. The
//! table is [`crate::DynamoStore::create_table_if_missing`], the queue
//! [`crate::SqsQueue::create_if_missing`].

use aws_sdk_eventbridge::error::ProvideErrorMetadata as _;

#[derive(Debug, thiserror::Error)]
#[error("creating {resource}: {message}")]
pub struct ResourceError {
    pub resource: String,
    pub message: String,
}

fn failed(resource: &str, message: impl std::fmt::Display) -> ResourceError {
    ResourceError { resource: resource.to_owned(), message: message.to_string() }
}

/// An SDK failure with its causes (the bare error prints only "service error").
fn sdk_failed<E: std::error::Error + 'static, R: std::fmt::Debug>(
    resource: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> ResourceError {
    failed(resource, aws_sdk_s3::error::DisplayErrorContext(&e))
}

/// An S3 client; path-style addressing when an endpoint is configured (moto's server, MinIO).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The private bucket for documents (invoice PDFs), created with server-side encryption and
/// every public access blocked.
pub async fn create_bucket_if_missing(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ResourceError> {
    use aws_sdk_s3::types::{
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => {}
        Err(e) => return Err(sdk_failed(bucket, e)),
    }
    let private = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .block_public_policy(true)
        .ignore_public_acls(true)
        .restrict_public_buckets(true)
        .build();
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(private)
        .send()
        .await
        .map_err(|e| sdk_failed(bucket, e))?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| failed(bucket, e))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
        .build()
        .map_err(|e| failed(bucket, e))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|e| sdk_failed(bucket, e))?;
    Ok(())
}

/// The EventBridge bus tally publishes its webhooks-style events on.
pub async fn create_event_bus_if_missing(
    client: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<(), ResourceError> {
    if client.describe_event_bus().name(name).send().await.is_ok() {
        return Ok(());
    }
    match client.create_event_bus().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(e) => Err(sdk_failed(name, e)),
    }
}
