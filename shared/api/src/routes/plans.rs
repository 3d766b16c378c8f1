use crate::error::ApiResult;
use crate::extract::{root, Auth, Paging};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tally_service::records::TaxRecord;
use tally_service::{plans, taxes, Org, Tally};

pub fn routes() -> Router<AppState> {
    Router::new().route("/plans", get(index).post(create)).route("/plans/{code}", get(show).put(update).delete(destroy))
}

async fn all_taxes(tally: &Tally, org: &Org) -> ApiResult<Vec<TaxRecord>> {
    Ok(taxes::list(tally, org).await?)
}

async fn create(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let plan = plans::create(&s.tally, &org, root(&body, "plan")?).await?;
    Ok(Json(json!({"plan": views::plan(&plan, &all_taxes(&s.tally, &org).await?)})))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, Query(paging): Query<Paging>) -> ApiResult<Json<Value>> {
    let page = plans::list_page(&s.tally, &org, paging.request()).await?;
    let taxes = all_taxes(&s.tally, &org).await?;
    Ok(Json(views::list("plans", page, |p| views::plan(p, &taxes))))
}

async fn show(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    let plan = plans::get(&s.tally, &org, &code).await?;
    Ok(Json(json!({"plan": views::plan(&plan, &all_taxes(&s.tally, &org).await?)})))
}

async fn update(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(code): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let plan = plans::update(&s.tally, &org, &code, root(&body, "plan")?).await?;
    Ok(Json(json!({"plan": views::plan(&plan, &all_taxes(&s.tally, &org).await?)})))
}

async fn destroy(State(s): State<AppState>, Auth(org): Auth, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    let plan = plans::delete(&s.tally, &org, &code).await?;
    Ok(Json(json!({"plan": views::plan(&plan, &all_taxes(&s.tally, &org).await?)})))
}
