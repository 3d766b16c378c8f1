use crate::error::ApiResult;
use crate::extract::{root, Auth, Paging};
use crate::{views, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tally_service::invoices::InvoiceFilter;
use tally_service::records::{BillableMetricRecord, InvoiceRecord};
use tally_service::subscriptions::SubscriptionFilter;
use tally_service::{billable_metrics, customers, invoices, plans, subscriptions, taxes, usage, Paged};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(index).post(upsert))
        .route("/customers/{external_id}", get(show).delete(destroy))
        .route("/customers/{external_id}/current_usage", get(current_usage))
        .route("/customers/{external_id}/projected_usage", get(projected_usage))
        .route("/customers/{external_id}/past_usage", get(past_usage))
        .route("/customers/{external_id}/invoices", get(customer_invoices))
        .route("/customers/{external_id}/subscriptions", get(customer_subscriptions))
}

async fn upsert(State(s): State<AppState>, Auth(org): Auth, body: Bytes) -> ApiResult<Json<Value>> {
    let input: Map<String, Value> = root(&body, "customer")?;
    let customer = customers::upsert(&s.tally, &org, input).await?;
    let taxes = taxes::list(&s.tally, &org).await?;
    Ok(Json(json!({"customer": views::customer(&customer, &org, &taxes)})))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, Query(paging): Query<Paging>) -> ApiResult<Json<Value>> {
    let page = customers::list_page(&s.tally, &org, paging.request()).await?;
    let taxes = taxes::list(&s.tally, &org).await?;
    Ok(Json(views::list("customers", page, |c| views::customer(c, &org, &taxes))))
}

async fn show(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let customer = customers::get(&s.tally, &org, &id).await?;
    let taxes = taxes::list(&s.tally, &org).await?;
    Ok(Json(json!({"customer": views::customer(&customer, &org, &taxes)})))
}

async fn destroy(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let customer = customers::delete(&s.tally, &org, &id).await?;
    Ok(Json(json!({"customer": views::customer(&customer, &org, &[])})))
}

#[derive(Deserialize)]
struct UsageQuery {
    external_subscription_id: Option<String>,
    apply_taxes: Option<String>,
}

async fn usage_of(
    s: &AppState,
    org: &tally_service::Org,
    id: &str,
    q: &UsageQuery,
) -> ApiResult<tally_service::CustomerUsage> {
    let subscription = q.external_subscription_id.as_deref().unwrap_or_default();
    let apply_taxes = q.apply_taxes.as_deref() != Some("false");
    Ok(usage::current_usage(&s.tally, org, id, subscription, apply_taxes).await?)
}

async fn current_usage(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let usage = usage_of(&s, &org, &id, &q).await?;
    Ok(Json(json!({"customer_usage": views::customer_usage(&usage, false)})))
}

async fn projected_usage(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let usage = usage_of(&s, &org, &id, &q).await?;
    Ok(Json(json!({"customer_projected_usage": views::customer_usage(&usage, true)})))
}

#[derive(Deserialize)]
struct PastUsageQuery {
    external_subscription_id: Option<String>,
    billable_metric_code: Option<String>,
    periods_count: Option<usize>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// Already-invoiced periods of a subscription, newest first, from its invoices' fees.
async fn past_usage(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    Query(q): Query<PastUsageQuery>,
) -> ApiResult<Json<Value>> {
    customers::get(&s.tally, &org, &id).await?;
    let subscription = q.external_subscription_id.clone().unwrap_or_default();
    subscriptions::get(&s.tally, &org, &subscription, None).await?;
    let metrics: BTreeMap<String, BillableMetricRecord> =
        billable_metrics::list(&s.tally, &org).await?.into_iter().map(|m| (m.code.clone(), m)).collect();
    let filter = InvoiceFilter { external_customer_id: Some(id), ..Default::default() };
    let mut periods: Vec<InvoiceRecord> = invoices::list(&s.tally, &org, &filter)
        .await?
        .into_iter()
        .filter(|i| {
            i.subscription.external_id == subscription && i.subscription.invoicing_reason != "subscription_starting"
        })
        .collect();
    if let Some(count) = q.periods_count {
        periods.truncate(count);
    }
    let paging = Paging { page: q.page, per_page: q.per_page };
    let paged = Paged::of(periods, paging.request());
    Ok(Json(views::list("usage_periods", paged, |i| past_period(i, &metrics, q.billable_metric_code.as_deref()))))
}

fn past_period(i: &InvoiceRecord, metrics: &BTreeMap<String, BillableMetricRecord>, only: Option<&str>) -> Value {
    let mut by_charge: BTreeMap<String, Vec<&tally_service::records::FeeRecord>> = BTreeMap::new();
    for fee in i.fees.iter().filter(|f| f.fee_type == "charge") {
        if only.is_none_or(|code| Some(code) == fee.billable_metric_code.as_deref()) {
            by_charge.entry(fee.lago_charge_id.clone().unwrap_or_default()).or_default().push(fee);
        }
    }
    let charges: Vec<Value> = by_charge
        .values()
        .map(|fees| {
            let first = fees[0];
            let metric = first.billable_metric_code.as_ref().and_then(|c| metrics.get(c));
            let units: rust_decimal::Decimal = fees.iter().filter(|f| !f.true_up).map(|f| f.units).sum();
            json!({
                "units": units.normalize().to_string(),
                "total_aggregated_units": units.normalize().to_string(),
                "events_count": fees.iter().map(|f| f.events_count).sum::<u64>(),
                "amount_cents": fees.iter().map(|f| f.amount_cents).sum::<i64>(),
                "amount_currency": i.currency,
                "charge": {"lago_id": first.lago_charge_id, "charge_model": first.charge_model, "invoice_display_name": first.invoice_display_name},
                "billable_metric": {
                    "lago_id": metric.map(|m| m.lago_id.clone()),
                    "name": first.billable_metric_name,
                    "code": first.billable_metric_code,
                    "aggregation_type": metric.map(|m| m.aggregation_type.clone()),
                },
                "filters": [],
                "grouped_usage": [],
            })
        })
        .collect();
    let amount: i64 = i.fees.iter().filter(|f| f.fee_type == "charge").map(|f| f.amount_cents).sum();
    let taxes: i64 = i.fees.iter().filter(|f| f.fee_type == "charge").map(|f| f.taxes_amount_cents).sum();
    json!({
        "from_datetime": i.subscription.charges_from_datetime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "to_datetime": i.subscription.charges_to_datetime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "issuing_date": i.issuing_date.to_string(),
        "lago_invoice_id": i.lago_id,
        "currency": i.currency,
        "amount_cents": amount,
        "taxes_amount_cents": taxes,
        "total_amount_cents": amount + taxes,
        "charges_usage": charges,
    })
}

async fn customer_invoices(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Value>> {
    customers::get(&s.tally, &org, &id).await?;
    let filter = InvoiceFilter { external_customer_id: Some(id), ..Default::default() };
    let page = invoices::list_page(&s.tally, &org, &filter, paging.request()).await?;
    let renderer = super::invoices::InvoiceRenderer::load(&s.tally, &org, &page.items).await?;
    Ok(Json(views::list("invoices", page, |i| renderer.render(i, false))))
}

async fn customer_subscriptions(
    State(s): State<AppState>,
    Auth(org): Auth,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Value>> {
    customers::get(&s.tally, &org, &id).await?;
    let filter = SubscriptionFilter { external_customer_id: Some(id), ..Default::default() };
    let page = subscriptions::list(&s.tally, &org, &filter, paging.request()).await?;
    let plans = plans::list(&s.tally, &org).await?;
    Ok(Json(views::list("subscriptions", page, |sub| {
        views::subscription(sub, plans.iter().find(|p| p.code == sub.plan_code))
    })))
}
