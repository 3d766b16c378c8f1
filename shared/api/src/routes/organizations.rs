use crate::extract::Auth;
use crate::{views, AppState};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/organizations", get(show))
}

async fn show(Auth(org): Auth) -> Json<Value> {
    Json(json!({"organization": views::organization(&org)}))
}
