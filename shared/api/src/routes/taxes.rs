use crate::error::ApiResult;
use crate::extract::{root, Auth, Paging};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tally_service::{taxes, Paged};

pub fn routes() -> Router<AppState> {
    Router::new().route("/taxes", get(index).post(create)).route("/taxes/{code}", get(show).put(update).delete(destroy))
}

async fn create(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let tax = taxes::create(&s.tally, &org, root(&body, "tax")?).await?;
    Ok(Json(json!({"tax": views::tax(&tax)})))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, Query(paging): Query<Paging>) -> ApiResult<Json<Value>> {
    let all = taxes::list(&s.tally, &org).await?;
    Ok(Json(views::list("taxes", Paged::of(all, paging.request()), views::tax)))
}

async fn show(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"tax": views::tax(&taxes::get(&s.tally, &org, &code).await?)})))
}

async fn update(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(code): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let tax = taxes::update(&s.tally, &org, &code, root(&body, "tax")?).await?;
    Ok(Json(json!({"tax": views::tax(&tax)})))
}

async fn destroy(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"tax": views::tax(&taxes::delete(&s.tally, &org, &code).await?)})))
}
