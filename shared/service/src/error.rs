use tally_domain::validation::ValidationErrors;
use tally_store::StoreError;

/// A use case's failure, in the categories Lago's API distinguishes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 422 `validation_errors` with `error_details`.
    #[error("validation failed: {0:?}")]
    Validation(ValidationErrors),
    /// 422 with `error_details` keyed by the index of each bad item of a batch.
    #[error("batch validation failed")]
    BatchValidation(std::collections::BTreeMap<usize, ValidationErrors>),
    /// 404 `<resource>_not_found`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405 with a code, e.g. `invoice_not_draft`.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// 401.
    #[error("unauthorized")]
    Unauthorized,
    /// The store was busy; the request may be retried.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &str, code: &str) -> Self {
        Self::Validation(ValidationErrors::single(field, code))
    }

    /// 422: a total that cannot be represented exactly (`value_is_out_of_range` on `field`).
    pub fn out_of_range(field: &str) -> Self {
        Self::invalid(field, "value_is_out_of_range")
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Merge(tally_store::MergeError::OutOfRange) => Self::out_of_range("properties"),
            // A race lost more times than a use case retries: the client may retry (never 500).
            StoreError::ConditionFailed { .. } => Self::Unavailable("concurrent changes; retry".into()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ValidationErrors> for ServiceError {
    fn from(e: ValidationErrors) -> Self {
        Self::Validation(e)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
