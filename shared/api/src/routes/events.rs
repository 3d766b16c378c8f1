use crate::error::{ApiError, ApiResult};
use crate::extract::{root, Auth, QueryPairs};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tally_service::events::{self, EventInput, MAX_BATCH};
use tally_service::{ServiceError, Tally};
use tally_store::EventFilter;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(index).post(create))
        .route("/events/batch", post(batch))
        .route("/events/{transaction_id}", get(show))
}

async fn create(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let input: EventInput = root(&body, "event")?;
    let events = events::accept(&s.tally, &org, vec![input]).await.map_err(|e| match e {
        // A single event reports its errors unkeyed.
        ServiceError::BatchValidation(mut by_index) => match by_index.remove(&0) {
            Some(errors) => ServiceError::Validation(errors),
            None => ServiceError::Internal("empty batch error".into()),
        },
        other => other,
    })?;
    let event = events.first().ok_or_else(|| ApiError::from(ServiceError::Internal("no event stored".into())))?;
    Ok(Json(json!({"event": views::event(event)})))
}

/// `{"events": [...]}`, parsed in one pass (this is the hot path).
#[derive(serde::Deserialize)]
struct BatchBody {
    events: Option<Vec<EventInput>>,
}

/// The batch answer, serialized straight from the records.
#[derive(serde::Serialize)]
struct BatchAnswer<'a> {
    events: Vec<views::EventView<'a>>,
}

async fn batch(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<axum::response::Response> {
    let parsed: BatchBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let inputs =
        parsed.events.ok_or_else(|| ApiError::BadRequest("param is missing or the value is empty: events".into()))?;
    if inputs.is_empty() {
        return Err(ServiceError::invalid("events", "no_events").into());
    }
    if inputs.len() > MAX_BATCH {
        return Err(ServiceError::invalid("events", "too_many_events").into());
    }
    let events = events::accept(&s.tally, &org, inputs).await?;
    Ok(Json(BatchAnswer { events: events.iter().map(views::event_view).collect() }).into_response())
}

fn time_ms(value: Option<String>) -> Option<i64> {
    let value = value?;
    chrono::DateTime::parse_from_rfc3339(&value)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| events::timestamp_ms(&Value::String(value)))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let query = QueryPairs::parse(query);
    let filter = EventFilter {
        external_subscription_id: query.get("external_subscription_id"),
        code: query.get("code"),
        timestamp_from_ms: time_ms(query.get("timestamp_from")),
        timestamp_to_ms: time_ms(query.get("timestamp_to")),
    };
    let paging = query.paging();
    let page = events::list(&s.tally, &org, &filter, paging.request()).await?;
    Ok(Json(views::list("events", page, views::event)))
}

async fn show(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(transaction_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let subscription = QueryPairs::parse(query).get("external_subscription_id");
    let event = get_event(&s.tally, &org, &transaction_id, subscription.as_deref()).await?;
    Ok(Json(json!({"event": views::event(&event)})))
}

async fn get_event(
    tally: &Tally,
    org: &tally_service::Org,
    transaction_id: &str,
    subscription: Option<&str>,
) -> ApiResult<tally_service::EventRecord> {
    Ok(events::get(tally, org, transaction_id, subscription).await?)
}
