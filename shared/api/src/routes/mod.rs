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
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

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

async fn health() -> Json<Value> {
    Json(
        json!({"version": env!("CARGO_PKG_VERSION"), "github_url": "https://github.com/tally-billing/tally", "message": "Success"}),
    )
}
