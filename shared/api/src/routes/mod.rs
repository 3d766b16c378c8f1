//! Routes, one module per resource.

mod billable_metrics;
mod customers;
mod events;
mod invoices;
mod organizations;
mod plans;
mod subscriptions;
mod taxes;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn all() -> Router<AppState> {
    let v1 = Router::new()
        .merge(organizations::routes())
        .merge(billable_metrics::routes())
        .merge(plans::routes())
        .merge(taxes::routes())
        .merge(customers::routes())
        .merge(subscriptions::routes())
        .merge(events::routes())
        .merge(invoices::routes());
    Router::new().route("/health", get(health)).nest("/api/v1", v1).fallback(|| async { ApiError::NoRoute })
}

/// Lago's health answer, or 503 when the store cannot write (the writer stopped, or its last
/// commit failed): a load balancer then stops sending traffic here.
async fn health(State(s): State<AppState>) -> axum::response::Response {
    match s.tally.store.health().await {
        Ok(()) => Json(
            json!({"version": env!("CARGO_PKG_VERSION"), "github_url": "https://github.com/tally-billing/tally", "message": "Success"}),
        )
        .into_response(),
        Err(e) => {
            tracing::error!("health: store cannot write: {e}");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": 503, "error": "Service Unavailable", "code": "store_unavailable"})),
            )
                .into_response()
        }
    }
}
