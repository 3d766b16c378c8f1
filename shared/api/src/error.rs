//! Every failure answers in Lago's error shapes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tally_service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// 400, e.g. malformed JSON or a missing root key.
    BadRequest(String),
    /// 404 for an unknown route.
    NoRoute,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

fn body(status: StatusCode, error: &str, extra: Value) -> Response {
    let mut object = Map::new();
    object.insert("status".into(), json!(status.as_u16()));
    object.insert("error".into(), json!(error));
    if let Value::Object(extra) = extra {
        object.extend(extra);
    }
    (status, Json(Value::Object(object))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(message) => {
                body(StatusCode::BAD_REQUEST, &format!("BadRequest: {message}"), Value::Null)
            }
            ApiError::NoRoute => body(StatusCode::NOT_FOUND, "Not Found", json!({"code": "resource_not_found"})),
            ApiError::Service(e) => match e {
                ServiceError::Unauthorized => body(StatusCode::UNAUTHORIZED, "Unauthorized", Value::Null),
                ServiceError::NotFound(resource) => {
                    body(StatusCode::NOT_FOUND, "Not Found", json!({"code": format!("{resource}_not_found")}))
                }
                ServiceError::NotAllowed(code) => {
                    body(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", json!({"code": code}))
                }
                ServiceError::Validation(errors) => body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    json!({"code": "validation_errors", "error_details": errors}),
                ),
                ServiceError::BatchValidation(by_index) => {
                    let details: Map<String, Value> =
                        by_index.into_iter().map(|(i, e)| (i.to_string(), json!(e))).collect();
                    body(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Unprocessable Entity",
                        json!({"code": "validation_errors", "error_details": details}),
                    )
                }
                ServiceError::Unavailable(message) => {
                    tracing::warn!("unavailable: {message}");
                    body(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", Value::Null)
                }
                ServiceError::Internal(message) => {
                    // Details go to the log, not to the client.
                    tracing::error!("internal error: {message}");
                    body(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", Value::Null)
                }
            },
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
