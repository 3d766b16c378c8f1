//! Lago's JSON shapes of tally's records (field names from Lago's OpenAPI v1.51.0).

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tally_service::records::{
    BillableMetricRecord, ChargeRecord, CustomerRecord, FeeRecord, InvoiceRecord, PlanRecord, SubscriptionRecord,
    TaxRecord,
};
use tally_service::{CustomerUsage, EventRecord, Org, Paged};

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, |t| json!(time(t)))
}

/// Units and precise amounts: decimal strings, as Lago sends them.
fn decimal(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

/// Rates (percent): JSON numbers, as Lago sends them. Display only, never used in arithmetic.
fn rate(d: Decimal) -> Value {
    d.to_f64().map_or(Value::Null, |f| json!(f))
}

pub fn meta<T>(paged: &Paged<T>) -> Value {
    let next = (paged.current_page < paged.total_pages).then_some(paged.current_page + 1);
    let prev = (paged.current_page > 1).then(|| paged.current_page - 1);
    json!({
        "current_page": paged.current_page,
        "next_page": next,
        "prev_page": prev,
        "total_pages": paged.total_pages,
        "total_count": paged.total_count,
    })
}

/// `{"<root>": [...], "meta": {...}}`.
pub fn list<T>(root: &str, paged: Paged<T>, view: impl Fn(&T) -> Value) -> Value {
    let meta = meta(&paged);
    let items: Vec<Value> = paged.items.iter().map(view).collect();
    let mut object = Map::new();
    object.insert(root.to_owned(), Value::Array(items));
    object.insert("meta".into(), meta);
    Value::Object(object)
}

pub fn organization(org: &Org) -> Value {
    json!({
        "lago_id": org.id,
        "name": org.name,
        "created_at": time(&org.created_at),
        "default_currency": org.default_currency,
        "timezone": org.timezone,
        "net_payment_term": org.net_payment_term,
        "document_numbering": "per_customer",
        "document_number_prefix": org.document_number_prefix,
        "billing_configuration": {"invoice_grace_period": org.invoice_grace_period, "invoice_footer": null, "document_locale": "en"},
        "events_store": "embedded",
    })
}

pub fn billable_metric(m: &BillableMetricRecord) -> Value {
    json!({
        "lago_id": m.lago_id,
        "name": m.name,
        "code": m.code,
        "description": m.description,
        "aggregation_type": m.aggregation_type,
        "field_name": m.field_name,
        "recurring": m.recurring,
        "weighted_interval": m.weighted_interval,
        "rounding_function": m.rounding_function,
        "rounding_precision": m.rounding_precision,
        "expression": m.expression,
        "filters": m.filters,
        "created_at": time(&m.created_at),
    })
}

pub fn tax(t: &TaxRecord) -> Value {
    json!({
        "lago_id": t.lago_id,
        "name": t.name,
        "code": t.code,
        "rate": rate(t.rate),
        "description": t.description,
        "applied_to_organization": t.applied_to_organization,
        "created_at": time(&t.created_at),
    })
}

fn taxes_of(codes: &[String], taxes: &[TaxRecord]) -> Value {
    Value::Array(codes.iter().filter_map(|c| taxes.iter().find(|t| &t.code == c)).map(tax).collect())
}

pub fn charge(c: &ChargeRecord, taxes: &[TaxRecord]) -> Value {
    json!({
        "lago_id": c.lago_id,
        "lago_billable_metric_id": c.billable_metric_id,
        "billable_metric_code": c.billable_metric_code,
        "code": c.code,
        "created_at": time(&c.created_at),
        "charge_model": c.charge_model,
        "pay_in_advance": c.pay_in_advance,
        "invoiceable": c.invoiceable,
        "regroup_paid_fees": c.regroup_paid_fees,
        "prorated": c.prorated,
        "invoice_display_name": c.invoice_display_name,
        "min_amount_cents": c.min_amount_cents,
        "properties": c.properties,
        "filters": c.filters.iter().map(|f| json!({
            "lago_id": f.lago_id,
            "invoice_display_name": f.invoice_display_name,
            "properties": f.properties,
            "values": f.values,
            "created_at": time(&f.created_at),
        })).collect::<Vec<_>>(),
        "taxes": taxes_of(&c.tax_codes, taxes),
    })
}

pub fn plan(p: &PlanRecord, taxes: &[TaxRecord]) -> Value {
    json!({
        "lago_id": p.lago_id,
        "name": p.name,
        "invoice_display_name": p.invoice_display_name,
        "created_at": time(&p.created_at),
        "code": p.code,
        "interval": p.interval,
        "description": p.description,
        "amount_cents": p.amount_cents,
        "amount_currency": p.amount_currency,
        "trial_period": p.trial_period.to_f64(),
        "pay_in_advance": p.pay_in_advance,
        "bill_charges_monthly": p.bill_charges_monthly,
        "charges": p.charges.iter().map(|c| charge(c, taxes)).collect::<Vec<_>>(),
        "taxes": taxes_of(&p.tax_codes, taxes),
        "metadata": p.metadata,
        "minimum_commitment": null,
        "usage_thresholds": [],
    })
}

pub fn customer(c: &CustomerRecord, org: &Org, taxes: &[TaxRecord]) -> Value {
    let mut object = Map::new();
    for (k, v) in &c.details {
        object.insert(k.clone(), v.clone());
    }
    let own = json!({
        "lago_id": c.lago_id,
        "external_id": c.external_id,
        "sequential_id": c.sequential_id,
        "name": c.name,
        "email": c.email,
        "currency": c.currency,
        "timezone": c.timezone,
        "applicable_timezone": tally_service::customers::applicable_timezone(c, org).name(),
        "net_payment_term": c.net_payment_term,
        "billing_configuration": {
            "invoice_grace_period": c.invoice_grace_period,
            "document_locale": "en",
        },
        "taxes": taxes_of(&c.tax_codes, taxes),
        "created_at": time(&c.created_at),
        "updated_at": time(&c.updated_at),
    });
    if let Value::Object(own) = own {
        object.extend(own);
    }
    Value::Object(object)
}

pub fn subscription(s: &SubscriptionRecord, plan: Option<&PlanRecord>) -> Value {
    json!({
        "lago_id": s.lago_id,
        "external_id": s.external_id,
        "lago_customer_id": s.lago_customer_id,
        "external_customer_id": s.external_customer_id,
        "name": s.name,
        "plan_code": s.plan_code,
        "plan_amount_cents": plan.map(|p| p.amount_cents),
        "plan_amount_currency": plan.map(|p| p.amount_currency.clone()),
        "status": s.status.as_str(),
        "billing_time": s.billing_time,
        "subscription_at": time(&s.subscription_at),
        "started_at": opt_time(&s.started_at),
        "ending_at": opt_time(&s.ending_at),
        "terminated_at": opt_time(&s.terminated_at),
        "canceled_at": opt_time(&s.canceled_at),
        "trial_ended_at": null,
        "created_at": time(&s.created_at),
        "previous_plan_code": s.previous_plan_code,
        "next_plan_code": null,
        "downgrade_plan_date": null,
    })
}

/// An event as Lago shows it. Serialized straight from the record, without building a JSON
/// tree: the batch answer of the ingest hot path has 100 of them.
#[derive(serde::Serialize)]
pub struct EventView<'a> {
    lago_id: &'a str,
    transaction_id: &'a str,
    lago_customer_id: Option<&'a str>,
    lago_subscription_id: Option<&'a str>,
    external_subscription_id: &'a str,
    code: &'a str,
    timestamp: String,
    precise_total_amount_cents: Option<String>,
    properties: &'a serde_json::Map<String, Value>,
    created_at: String,
}

pub fn event_view(e: &EventRecord) -> EventView<'_> {
    EventView {
        lago_id: &e.lago_id,
        transaction_id: &e.transaction_id,
        lago_customer_id: e.lago_customer_id.as_deref(),
        lago_subscription_id: e.lago_subscription_id.as_deref(),
        external_subscription_id: &e.external_subscription_id,
        code: &e.code,
        timestamp: e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        precise_total_amount_cents: e.precise_total_amount_cents.map(|d| d.normalize().to_string()),
        properties: &e.properties,
        created_at: time(&e.created_at),
    }
}

pub fn event(e: &EventRecord) -> Value {
    serde_json::to_value(event_view(e)).unwrap_or(Value::Null)
}

pub fn fee(f: &FeeRecord, invoice: &InvoiceRecord) -> Value {
    let item = if f.fee_type == "subscription" {
        json!({
            "type": "subscription",
            "code": invoice.subscription.plan_code,
            "name": invoice.subscription.plan_code,
            "invoice_display_name": invoice.subscription.plan_code,
            "lago_item_id": invoice.subscription.lago_id,
            "item_type": "Subscription",
        })
    } else {
        json!({
            "type": "charge",
            "code": f.billable_metric_code,
            "name": f.billable_metric_name,
            "invoice_display_name": f.invoice_display_name.clone().or(f.billable_metric_name.clone()),
            "filter_invoice_display_name": f.filter_invoice_display_name,
            "filters": f.filter_values,
            "lago_item_id": f.lago_charge_id,
            "item_type": "BillableMetric",
            "grouped_by": f.grouped_by,
        })
    };
    let total = f.amount_cents + f.taxes_amount_cents;
    json!({
        "lago_id": f.lago_id,
        "lago_charge_id": f.lago_charge_id,
        "lago_charge_filter_id": f.lago_charge_filter_id,
        "lago_invoice_id": invoice.lago_id,
        "lago_subscription_id": invoice.subscription.lago_id,
        "external_subscription_id": invoice.subscription.external_id,
        "lago_customer_id": invoice.lago_customer_id,
        "external_customer_id": invoice.external_customer_id,
        "amount_cents": f.amount_cents,
        "amount_currency": invoice.currency,
        "precise_amount": decimal(
            f.precise_amount_cents
                / invoice.currency.parse::<tally_domain::money::Currency>().map_or(Decimal::ONE_HUNDRED, |c| c.subunit_to_unit())
        ),
        "precise_amount_cents": decimal(f.precise_amount_cents),
        "precise_coupons_amount_cents": decimal(f.precise_coupons_amount_cents),
        "taxes_amount_cents": f.taxes_amount_cents,
        "taxes_precise_amount": decimal(f.taxes_precise_amount_cents),
        "taxes_rate": rate(f.taxes_rate),
        "sub_total_excluding_taxes_amount_cents": f.amount_cents,
        "total_amount_cents": total,
        "total_amount_currency": invoice.currency,
        "units": decimal(f.units),
        "total_aggregated_units": decimal(f.units),
        "events_count": f.events_count,
        "pay_in_advance": false,
        "invoiceable": true,
        "payment_status": "pending",
        "from_date": time(&f.from_datetime),
        "to_date": time(&f.to_datetime),
        "created_at": time(&invoice.created_at),
        "item": item,
        "applied_taxes": f.applied_taxes.iter().map(|t| json!({
            "tax_code": t.tax_code, "tax_name": t.tax_name, "tax_rate": rate(t.tax_rate), "amount_currency": invoice.currency,
        })).collect::<Vec<_>>(),
    })
}

/// An invoice; `customer` is the customer's full view (Lago embeds it).
pub fn invoice(i: &InvoiceRecord, customer: Value, with_fees: bool) -> Value {
    let mut view = json!({
        "lago_id": i.lago_id,
        "sequential_id": i.sequential_id,
        "number": i.number,
        "issuing_date": i.issuing_date.to_string(),
        "payment_due_date": i.payment_due_date.to_string(),
        "payment_overdue": false,
        "net_payment_term": i.net_payment_term,
        "invoice_type": "subscription",
        "version_number": 4,
        "status": i.status.as_str(),
        "payment_status": if i.total_amount_cents > 0 { "pending" } else { "succeeded" },
        "currency": i.currency,
        "fees_amount_cents": i.fees_amount_cents,
        "coupons_amount_cents": i.coupons_amount_cents,
        "credit_notes_amount_cents": i.credit_notes_amount_cents,
        "prepaid_credit_amount_cents": i.prepaid_credit_amount_cents,
        "progressive_billing_credit_amount_cents": i.progressive_billing_credit_amount_cents,
        "sub_total_excluding_taxes_amount_cents": i.sub_total_excluding_taxes_amount_cents,
        "taxes_amount_cents": i.taxes_amount_cents,
        "sub_total_including_taxes_amount_cents": i.sub_total_including_taxes_amount_cents,
        "total_amount_cents": i.total_amount_cents,
        "total_due_amount_cents": i.total_amount_cents,
        "total_paid_amount_cents": 0,
        "created_at": time(&i.created_at),
        "updated_at": time(&i.updated_at),
        "customer": customer,
        "subscriptions": [{
            "lago_id": i.subscription.lago_id,
            "external_id": i.subscription.external_id,
            "plan_code": i.subscription.plan_code,
        }],
        "billing_periods": [{
            "lago_subscription_id": i.subscription.lago_id,
            "external_subscription_id": i.subscription.external_id,
            "lago_plan_id": i.subscription.plan_id,
            "subscription_from_datetime": time(&i.subscription.from_datetime),
            "subscription_to_datetime": time(&i.subscription.to_datetime),
            "charges_from_datetime": time(&i.subscription.charges_from_datetime),
            "charges_to_datetime": time(&i.subscription.charges_to_datetime),
            "invoicing_reason": i.subscription.invoicing_reason,
        }],
        "applied_taxes": i.applied_taxes.iter().map(|t| json!({
            "lago_invoice_id": i.lago_id,
            "tax_code": t.tax_code,
            "tax_name": t.tax_name,
            "tax_rate": rate(t.tax_rate),
            "amount_cents": t.amount_cents,
            "amount_currency": i.currency,
            "fees_amount_cents": t.base_amount_cents.round().to_i64(),
        })).collect::<Vec<_>>(),
        "credits": [],
        "metadata": [],
    });
    if with_fees {
        if let Value::Object(object) = &mut view {
            object.insert("fees".into(), Value::Array(i.fees.iter().map(|f| fee(f, i)).collect()));
        }
    }
    view
}

pub fn customer_usage(u: &CustomerUsage, projected: bool) -> Value {
    let ratio = u.period_ratio;
    let project = |d: Decimal| if ratio.is_zero() { Decimal::ZERO } else { d / ratio };
    let charges: Vec<Value> = u
        .charges
        .iter()
        .map(|c| {
            let filters: Vec<Value> = c
                .fees
                .iter()
                .filter(|(f, _)| f.filter.is_some() && !f.fee.true_up)
                .map(|(f, cents)| {
                    json!({
                        "invoice_display_name": f.filter.as_ref().and_then(|x| x.invoice_display_name.clone()),
                        "values": f.filter.as_ref().map(|x| x.values.clone()),
                        "units": decimal(f.fee.units),
                        "total_aggregated_units": decimal(f.fee.units),
                        "amount_cents": cents,
                        "events_count": f.fee.events_count,
                    })
                })
                .collect();
            let grouped: Vec<Value> = c
                .fees
                .iter()
                .filter(|(f, _)| !f.grouped_by.is_empty() && !f.fee.true_up)
                .map(|(f, cents)| {
                    json!({
                        "amount_cents": cents,
                        "events_count": f.fee.events_count,
                        "units": decimal(f.fee.units),
                        "total_aggregated_units": decimal(f.fee.units),
                        "grouped_by": f.grouped_by,
                        "filters": [],
                    })
                })
                .collect();
            let mut view = json!({
                "units": decimal(c.units),
                "total_aggregated_units": decimal(c.units),
                "events_count": c.events_count,
                "amount_cents": c.amount_cents,
                "amount_currency": u.currency,
                "charge": {
                    "lago_id": c.charge.lago_id,
                    "charge_model": c.charge.charge_model,
                    "invoice_display_name": c.charge.invoice_display_name,
                },
                "billable_metric": {
                    "lago_id": c.metric.lago_id,
                    "name": c.metric.name,
                    "code": c.metric.code,
                    "aggregation_type": c.metric.aggregation_type,
                },
                "filters": filters,
                "grouped_usage": grouped,
            });
            if projected {
                if let Value::Object(o) = &mut view {
                    o.insert("projected_units".into(), decimal(project(c.units).round_dp(4)));
                    o.insert(
                        "projected_amount_cents".into(),
                        json!(project(Decimal::from(c.amount_cents)).round().to_i64()),
                    );
                }
            }
            view
        })
        .collect();
    let mut view = json!({
        "from_datetime": time(&u.from_datetime),
        "to_datetime": time(&u.to_datetime),
        "issuing_date": u.issuing_date.to_string(),
        "lago_invoice_id": null,
        "currency": u.currency,
        "amount_cents": u.amount_cents,
        "taxes_amount_cents": u.taxes_amount_cents,
        "total_amount_cents": u.total_amount_cents,
        "charges_usage": charges,
    });
    if projected {
        if let Value::Object(o) = &mut view {
            o.insert("projected_amount_cents".into(), json!(project(Decimal::from(u.amount_cents)).round().to_i64()));
        }
    }
    view
}
