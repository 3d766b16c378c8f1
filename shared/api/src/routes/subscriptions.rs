use crate::error::ApiResult;
use crate::extract::{root, Auth, QueryPairs};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tally_service::records::SubscriptionRecord;
use tally_service::subscriptions::{self, SubscriptionFilter};
use tally_service::{plans, Org, Tally};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", get(index).post(create))
        .route("/subscriptions/{external_id}", get(show).put(update).delete(terminate))
}

async fn view(tally: &Tally, org: &Org, subscription: &SubscriptionRecord) -> ApiResult<Value> {
    let plan = plans::get(tally, org, &subscription.plan_code).await.ok();
    Ok(json!({"subscription": views::subscription(subscription, plan.as_ref())}))
}

async fn create(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let subscription = subscriptions::create(&s.tally, &org, root(&body, "subscription")?).await?;
    Ok(Json(view(&s.tally, &org, &subscription).await?))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let query = QueryPairs::parse(query);
    let filter = SubscriptionFilter {
        external_customer_id: query.get("external_customer_id"),
        plan_code: query.get("plan_code"),
        statuses: query.all("status"),
    };
    let paging = query.paging();
    let page = subscriptions::list(&s.tally, &org, &filter, paging.request()).await?;
    let plans = plans::list(&s.tally, &org).await?;
    Ok(Json(views::list("subscriptions", page, |sub| {
        views::subscription(sub, plans.iter().find(|p| p.code == sub.plan_code))
    })))
}

async fn show(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let status = QueryPairs::parse(query).get("status");
    let subscription = subscriptions::get(&s.tally, &org, &id, status.as_deref()).await?;
    Ok(Json(view(&s.tally, &org, &subscription).await?))
}

async fn update(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let subscription = subscriptions::update(&s.tally, &org, &id, root(&body, "subscription")?).await?;
    Ok(Json(view(&s.tally, &org, &subscription).await?))
}

async fn terminate(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let status = QueryPairs::parse(query).get("status");
    let subscription = subscriptions::terminate(&s.tally, &org, &id, status.as_deref()).await?;
    Ok(Json(view(&s.tally, &org, &subscription).await?))
}
