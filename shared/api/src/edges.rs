//! What holds on every request, whatever the route: bodies are JSON, every error answers in
//! Lago's JSON shape (including the ones axum makes itself: a bad path, query string, method or
//! body), and a handler that panics answers 500 without taking anything else down.

use crate::error::ApiError;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Requests with a body must say it is JSON (`application/json`, or a `+json` type), as Lago's
/// clients do; Lago would not read the body of any other.
fn declares_json(request: &Request) -> bool {
    let has_body = request.body().size_hint().upper() != Some(0);
    if !has_body {
        return true;
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}

/// The middleware: checks the body's type, and gives axum's own rejections (plain text or
/// empty) Lago's JSON error shape.
pub async fn lago_shapes(request: Request, next: Next) -> Response {
    if !declares_json(&request) {
        return ApiError::BadRequest("the body must be JSON (Content-Type: application/json)".into()).into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 || is_json(&response) {
        return response;
    }
    shaped(status)
}

/// Lago's error body for a status the router answered by itself.
fn shaped(status: StatusCode) -> Response {
    let error = status.canonical_reason().unwrap_or("Error");
    let mut body = json!({"status": status.as_u16(), "error": error});
    match status {
        StatusCode::NOT_FOUND => body["code"] = json!("resource_not_found"),
        StatusCode::METHOD_NOT_ALLOWED => body["code"] = json!("method_not_allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => body["code"] = json!("payload_too_large"),
        _ => {}
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answer of a handler that panicked (tower-http's `CatchPanicLayer` calls it). The panic is
/// logged; the client sees Lago's 500 shape.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!("a request handler panicked: {message}");
    ApiError::Service(tally_service::ServiceError::Internal(message.to_owned())).into_response()
}
