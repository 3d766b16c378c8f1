use crate::error::ApiResult;
use crate::extract::{Auth, QueryPairs};
use crate::{views, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use tally_service::invoices::{self, FeeFilter, InvoiceFilter};
use tally_service::records::{CustomerRecord, InvoiceRecord};
use tally_service::{customers, taxes, Org, Tally};

/// Invoice views with their customers embedded, as Lago renders them.
pub(crate) struct InvoiceRenderer {
    org: Org,
    customers: HashMap<String, CustomerRecord>,
    taxes: Vec<tally_service::records::TaxRecord>,
}

impl InvoiceRenderer {
    /// With the customers of `invoices` (one read each, whatever the number of customers).
    pub(crate) async fn load(tally: &Tally, org: &Org, invoices: &[InvoiceRecord]) -> ApiResult<Self> {
        let mut customers = HashMap::new();
        for invoice in invoices {
            if !customers.contains_key(&invoice.external_customer_id) {
                match customers::get(tally, org, &invoice.external_customer_id).await {
                    Ok(customer) => {
                        customers.insert(invoice.external_customer_id.clone(), customer);
                    }
                    // Rendered with its ids only (below).
                    Err(tally_service::ServiceError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Self { org: org.clone(), customers, taxes: taxes::list(tally, org).await? })
    }

    pub(crate) fn render(&self, invoice: &InvoiceRecord, with_fees: bool) -> Value {
        let customer = self.customers.get(&invoice.external_customer_id).map_or_else(
            || json!({"lago_id": invoice.lago_customer_id, "external_id": invoice.external_customer_id}),
            |c| views::customer(c, &self.org, &self.taxes),
        );
        views::invoice(invoice, customer, with_fees)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invoices", get(index))
        .route("/invoices/{lago_id}", get(show))
        .route("/invoices/{lago_id}/finalize", put(finalize))
        .route("/invoices/{lago_id}/refresh", put(refresh))
        .route("/fees", get(fees))
        .route("/fees/{lago_id}", get(fee))
}

async fn index(State(s): State<AppState>, Auth(org): Auth, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let query = QueryPairs::parse(query);
    let filter = InvoiceFilter {
        external_customer_id: query.get("external_customer_id"),
        status: query.get("status"),
        issuing_date_from: query.get("issuing_date_from").and_then(|d| d.parse().ok()),
        issuing_date_to: query.get("issuing_date_to").and_then(|d| d.parse().ok()),
    };
    let page = invoices::list_page(&s.tally, &org, &filter, query.paging().request()).await?;
    let renderer = InvoiceRenderer::load(&s.tally, &org, &page.items).await?;
    Ok(Json(views::list("invoices", page, |i| renderer.render(i, true))))
}

async fn show(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let invoice = invoices::get(&s.tally, &org, &id).await?;
    let renderer = InvoiceRenderer::load(&s.tally, &org, std::slice::from_ref(&invoice)).await?;
    Ok(Json(json!({"invoice": renderer.render(&invoice, true)})))
}

async fn finalize(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let invoice = invoices::finalize(&s.tally, &org, &id).await?;
    let renderer = InvoiceRenderer::load(&s.tally, &org, std::slice::from_ref(&invoice)).await?;
    Ok(Json(json!({"invoice": renderer.render(&invoice, true)})))
}

async fn refresh(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let invoice = invoices::refresh(&s.tally, &org, &id).await?;
    let renderer = InvoiceRenderer::load(&s.tally, &org, std::slice::from_ref(&invoice)).await?;
    Ok(Json(json!({"invoice": renderer.render(&invoice, true)})))
}

async fn fees(State(s): State<AppState>, Auth(org): Auth, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let query = QueryPairs::parse(query);
    let filter = FeeFilter {
        external_customer_id: query.get("external_customer_id"),
        external_subscription_id: query.get("external_subscription_id"),
        fee_type: query.get("fee_type"),
    };
    let page = invoices::list_fees(&s.tally, &org, &filter, query.paging().request()).await?;
    Ok(Json(views::list("fees", page, |f| views::fee(&f.fee, &f.invoice))))
}

async fn fee(State(s): State<AppState>, Auth(org): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let found = invoices::get_fee(&s.tally, &org, &id).await?;
    Ok(Json(json!({"fee": views::fee(&found.fee, &found.invoice)})))
}
