use crate::error::ApiResult;
use crate::extract::{root, whole, Auth, Paging};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tally_service::billable_metrics::{self, ExpressionEvent};
use tally_service::Paged;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/billable_metrics", get(index).post(create))
        .route("/billable_metrics/evaluate_expression", post(evaluate_expression))
        .route("/billable_metrics/{code}", get(show).put(update).delete(destroy))
}

async fn create(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let metric = billable_metrics::create(&s.tally, &org, root(&body, "billable_metric")?).await?;
    Ok(Json(json!({"billable_metric": views::billable_metric(&metric)})))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, Query(paging): Query<Paging>) -> ApiResult<Json<Value>> {
    let all = billable_metrics::list(&s.tally, &org).await?;
    Ok(Json(views::list("billable_metrics", Paged::of(all, paging.request()), views::billable_metric)))
}

async fn show(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    let metric = billable_metrics::get(&s.tally, &org, &code).await?;
    Ok(Json(json!({"billable_metric": views::billable_metric(&metric)})))
}

async fn update(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(code): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let metric = billable_metrics::update(&s.tally, &org, &code, root(&body, "billable_metric")?).await?;
    Ok(Json(json!({"billable_metric": views::billable_metric(&metric)})))
}

async fn destroy(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    let metric = billable_metrics::delete(&s.tally, &org, &code).await?;
    Ok(Json(json!({"billable_metric": views::billable_metric(&metric)})))
}

#[derive(Deserialize)]
struct EvaluateInput {
    expression: Option<String>,
    #[serde(default)]
    event: ExpressionEvent,
}

async fn evaluate_expression(State(s): State<AppState>, Auth(_org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let input: EvaluateInput = whole(&body)?;
    let expression = input.expression.unwrap_or_default();
    let value = billable_metrics::evaluate_expression(&expression, &input.event, s.tally.now().timestamp_millis())?;
    Ok(Json(json!({"expression_result": {"value": value}})))
}
