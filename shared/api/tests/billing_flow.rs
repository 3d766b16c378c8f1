//! A month of billing through the HTTP API, every amount checked by hand.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::{TestApp, KEY};

/// Catalog used by most tests: a count metric, a sum metric with a region filter, VAT 20 %,
/// and a monthly plan of 30.00 EUR in arrears with both charges.
async fn catalog(app: &TestApp) {
    app.ok(
        "POST",
        "/api/v1/taxes",
        Some(json!({"tax": {"name": "VAT", "code": "vat", "rate": 20, "applied_to_organization": true}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/billable_metrics",
        Some(json!({"billable_metric": {
        "name": "API calls", "code": "calls", "aggregation_type": "count_agg"}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/billable_metrics",
        Some(json!({"billable_metric": {
        "name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb",
        "filters": [{"key": "region", "values": ["eu", "us"]}]}})),
    )
    .await;
    app.ok("POST", "/api/v1/plans", Some(json!({"plan": {
        "name": "Startup", "code": "startup", "interval": "monthly", "amount_cents": 3000, "amount_currency": "EUR",
        "charges": [
            {"billable_metric_code": "calls", "charge_model": "graduated", "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": 1000, "per_unit_amount": "0", "flat_amount": "0"},
                {"from_value": 1001, "to_value": null, "per_unit_amount": "0.002", "flat_amount": "0"}]}},
            {"billable_metric_code": "gb", "charge_model": "standard", "properties": {"amount": "0.10"},
             "filters": [{"invoice_display_name": "US", "values": {"region": ["us"]}, "properties": {"amount": "0.25"}}]}
        ]}}))).await;
}

fn events(prefix: &str, n: usize, code: &str, timestamp: i64, properties: Value) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"transaction_id": format!("{prefix}-{i}"), "external_subscription_id": "sub-1",
                        "code": code, "timestamp": timestamp, "properties": properties})
        })
        .collect();
    json!({ "events": events })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_usage_is_invoiced_exactly_once() {
    let app = TestApp::start("2024-04-11T09:00:00Z").await;
    catalog(&app).await;
    let sub = app
        .ok(
            "POST",
            "/api/v1/subscriptions",
            Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}})),
        )
        .await;
    assert_eq!(sub["subscription"]["status"], "active");
    // The customer was created with the subscription, as Lago does.
    app.ok("GET", "/api/v1/customers/cust-1", None).await;

    // 1500 calls in batches of 100; 123.45 GB in the EU, 10 GB in the US.
    let april_15 = 1_713_182_400; // 2024-04-15T12:00:00Z
    for batch in 0..15 {
        app.ok("POST", "/api/v1/events/batch", Some(events(&format!("c{batch}"), 100, "calls", april_15, json!({}))))
            .await;
    }
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "g1", "external_subscription_id": "sub-1",
        "code": "gb", "timestamp": april_15, "properties": {"gb": "100", "region": "eu"}}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "g2", "external_subscription_id": "sub-1",
        "code": "gb", "timestamp": "1713182400.5", "properties": {"gb": 23.45, "region": "eu"}}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "g3", "external_subscription_id": "sub-1",
        "code": "gb", "timestamp": april_15, "properties": {"gb": 10, "region": "us"}}})),
    )
    .await;

    // Current usage, live: calls (1500 − 1000) × 0.002 = 1.00; storage 123.45 × 0.10 = 12.345
    // → 1235 (half-up), US 10 × 0.25 = 2.50 → 250. Σ 1585; VAT 20 % = 317; total 1902.
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    let usage = &usage["customer_usage"];
    assert_eq!(usage["amount_cents"], 1585, "{usage}");
    assert_eq!(usage["taxes_amount_cents"], 317);
    assert_eq!(usage["total_amount_cents"], 1902);
    // The first period starts at the subscription's start instant, not its midnight (Lago's
    // Subscriptions::DatesService#charges_from_datetime).
    assert_eq!(usage["from_datetime"], "2024-04-11T09:00:00Z");
    assert_eq!(usage["to_datetime"], "2024-04-30T23:59:59Z");
    let storage =
        usage["charges_usage"].as_array().unwrap().iter().find(|c| c["billable_metric"]["code"] == "gb").unwrap();
    assert_eq!(storage["units"], "133.45");
    assert_eq!(storage["amount_cents"], 1485);
    assert_eq!(storage["filters"][0]["units"], "10");
    assert_eq!(storage["filters"][0]["amount_cents"], 250);

    // Nothing is due before the period ends.
    assert_eq!(app.bill("2024-04-30T23:59:59Z").await.invoices_issued, 0);
    // The close at month end issues one invoice; running it again issues nothing.
    assert_eq!(app.bill("2024-05-01T00:00:00Z").await.invoices_issued, 1);
    assert_eq!(app.bill("2024-05-01T01:00:00Z").await.invoices_issued, 0);

    let list = app.ok("GET", "/api/v1/invoices?external_customer_id=cust-1", None).await;
    assert_eq!(list["meta"]["total_count"], 1);
    let invoice = &list["invoices"][0];
    // Subscription fee: 20 of 30 April days (11..30) × 30.00 = 20.00 → 2000.
    // Fees 2000 + 100 + 1235 + 250 = 3585; VAT 717; total 4302.
    assert_eq!(invoice["fees_amount_cents"], 3585, "{invoice}");
    assert_eq!(invoice["taxes_amount_cents"], 717);
    assert_eq!(invoice["total_amount_cents"], 4302);
    assert_eq!(invoice["status"], "finalized");
    assert_eq!(invoice["number"], "ACM-0001-001-001");
    assert_eq!(invoice["issuing_date"], "2024-05-01");
    let fee_amounts: Vec<i64> =
        invoice["fees"].as_array().unwrap().iter().map(|f| f["amount_cents"].as_i64().unwrap()).collect();
    assert_eq!(fee_amounts, vec![2000, 100, 1235, 250]);

    // Fees are addressable on their own.
    let fee_id = invoice["fees"][1]["lago_id"].as_str().unwrap();
    let fee = app.ok("GET", &format!("/api/v1/fees/{fee_id}"), None).await;
    assert_eq!(fee["fee"]["units"], "1500");
    let fees = app.ok("GET", "/api/v1/fees?external_subscription_id=sub-1", None).await;
    assert_eq!(fees["meta"]["total_count"], 4);

    // Past usage shows the invoiced period.
    let past = app.ok("GET", "/api/v1/customers/cust-1/past_usage?external_subscription_id=sub-1", None).await;
    assert_eq!(past["usage_periods"][0]["amount_cents"], 1585);

    // The next month starts empty.
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    assert_eq!(usage["customer_usage"]["amount_cents"], 0);
    assert_eq!(usage["customer_usage"]["from_datetime"], "2024-05-01T00:00:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_before_the_subscription_bill_the_same() {
    let app = TestApp::start("2024-04-01T08:00:00Z").await;
    catalog(&app).await;
    // Usage backfilled first (a customer migrating in), the subscription created after.
    let april_2 = 1_711_972_800; // 2024-04-02T12:00:00Z
    app.ok("POST", "/api/v1/events/batch", Some(events("early", 100, "calls", april_2, json!({})))).await;
    app.set_now("2024-04-02T13:00:00Z");
    let created = app
        .ok(
            "POST",
            "/api/v1/subscriptions",
            Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1",
        "subscription_at": "2024-04-01T00:00:00Z"}})),
        )
        .await;
    assert_eq!(created["subscription"]["started_at"], "2024-04-01T00:00:00Z");
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    let calls = &usage["customer_usage"]["charges_usage"][0];
    assert_eq!(calls["units"], "100");
    assert_eq!(calls["events_count"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_bad_input_change_nothing() {
    let app = TestApp::start("2024-04-11T09:00:00Z").await;
    catalog(&app).await;
    app.ok(
        "POST",
        "/api/v1/subscriptions",
        Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "t1", "external_subscription_id": "sub-1", "code": "calls"}})),
    )
    .await;

    // A repeat is refused with Lago's 422 and counts nothing.
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/events",
            Some(json!({"event": {"transaction_id": "t1", "external_subscription_id": "sub-1", "code": "calls"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
        "error_details": {"transaction_id": ["value_already_exist"]}})
    );

    // A batch with one repeat and one bad timestamp is refused whole, errors keyed by index.
    let (status, body) = app.call("POST", "/api/v1/events/batch", Some(json!({"events": [
        {"transaction_id": "t2", "external_subscription_id": "sub-1", "code": "calls"},
        {"transaction_id": "t3", "external_subscription_id": "sub-1", "code": "calls", "timestamp": "yesterday"},
    ]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error_details"], json!({"1": {"timestamp": ["invalid_format"]}}));
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/events/batch",
            Some(json!({"events": [
                {"transaction_id": "t2", "external_subscription_id": "sub-1", "code": "calls"},
                {"transaction_id": "t1", "external_subscription_id": "sub-1", "code": "calls"},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error_details"], json!({"1": {"transaction_id": ["value_already_exist"]}}));
    let (status, _) = app.call("GET", "/api/v1/events/t2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "t2 was in the refused batch");
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    assert_eq!(usage["customer_usage"]["charges_usage"][0]["events_count"], 1);

    // The same transaction id on another subscription is another event.
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "t1", "external_subscription_id": "sub-2", "code": "calls"}})),
    )
    .await;

    // Lago's error shapes.
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/plans",
            Some(json!({"plan": {"name": "Bad", "code": "bad", "interval": "monthly",
        "amount_cents": 100, "amount_currency": "EUR",
        "charges": [{"billable_metric_code": "calls", "charge_model": "standard", "properties": {"amount": 5}}]}})),
        )
        .await;
    assert_eq!(
        (status, &body["error_details"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!({"properties": ["invalid_amount"]}))
    );
    let (status, body) = app.call("GET", "/api/v1/customers/nobody", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"status": 404, "error": "Not Found", "code": "customer_not_found"}))
    );
    let (status, body) = app.call_with("GET", "/api/v1/plans", None, Some("wrong")).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, json!({"status": 401, "error": "Unauthorized"})));
    let (status, _) = app.call_with("GET", "/api/v1/plans", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.call_with("POST", "/api/v1/customers", Some("{not json".into()), Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], 400);
    let (status, body) = app.call("POST", "/api/v1/customers", Some(json!({"external_id": "no root key"}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest: param is missing or the value is empty: customer"))
    );
    let (status, body) = app.call("GET", "/api/v1/nothing_here", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("resource_not_found")));
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/billable_metrics",
            Some(json!({"billable_metric": {
        "name": "Dup", "code": "calls", "aggregation_type": "count_agg"}})),
        )
        .await;
    assert_eq!(
        (status, &body["error_details"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!({"code": ["value_already_exist"]}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_issues_the_final_invoice() {
    let app = TestApp::start("2024-04-01T00:00:00Z").await;
    catalog(&app).await;
    app.ok(
        "POST",
        "/api/v1/subscriptions",
        Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "g1", "external_subscription_id": "sub-1",
        "code": "gb", "timestamp": 1_712_145_600, "properties": {"gb": 40, "region": "us"}}})),
    )
    .await; // 2024-04-03T12:00Z
    app.set_now("2024-04-10T12:00:00Z");
    let ended = app.ok("DELETE", "/api/v1/subscriptions/sub-1", None).await;
    assert_eq!(ended["subscription"]["status"], "terminated");
    let invoices = app.ok("GET", "/api/v1/invoices", None).await;
    let invoice = &invoices["invoices"][0];
    // 10 of 30 days × 30.00 = 10.00 → 1000; storage US 40 × 0.25 = 10.00 → 1000; calls 0.
    // Fees 2000; VAT 400; total 2400.
    assert_eq!(invoice["fees_amount_cents"], 2000, "{invoice}");
    assert_eq!(invoice["total_amount_cents"], 2400);
    assert_eq!(invoice["billing_periods"][0]["invoicing_reason"], "subscription_terminating");
    // The month-end close does not bill it again.
    assert_eq!(app.bill("2024-05-01T00:00:00Z").await.invoices_issued, 0);
    // An event after termination is parked, not billed.
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "late", "external_subscription_id": "sub-1", "code": "calls"}})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_keeps_a_draft_that_late_events_still_reach() {
    let app = TestApp::start("2024-04-01T00:00:00Z").await;
    catalog(&app).await;
    app.ok(
        "POST",
        "/api/v1/customers",
        Some(json!({"customer": {"external_id": "cust-1", "name": "Ann",
        "billing_configuration": {"invoice_grace_period": 3}}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/subscriptions",
        Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}})),
    )
    .await;
    assert_eq!(app.bill("2024-05-01T00:00:00Z").await.invoices_issued, 1);
    let invoice = &app.ok("GET", "/api/v1/invoices", None).await["invoices"][0];
    assert_eq!(invoice["status"], "draft");
    assert_eq!(invoice["number"], "ACM-0001-DRAFT");
    assert_eq!(invoice["fees_amount_cents"], 3000); // subscription only
    let id = invoice["lago_id"].as_str().unwrap().to_owned();

    // A late April event inside the grace period: refresh bills it (US 4 GB × 0.25 = 1.00).
    app.ok(
        "POST",
        "/api/v1/events",
        Some(json!({"event": {"transaction_id": "late", "external_subscription_id": "sub-1",
        "code": "gb", "timestamp": 1_714_392_000, "properties": {"gb": 4, "region": "us"}}})),
    )
    .await; // 2024-04-29T12:00Z
    let refreshed = app.ok("PUT", &format!("/api/v1/invoices/{id}/refresh"), None).await;
    assert_eq!(refreshed["invoice"]["fees_amount_cents"], 3100);
    // The grace period ends on May 4th: the close finalizes it with its number.
    assert_eq!(app.bill("2024-05-03T23:00:00Z").await.invoices_finalized, 0);
    assert_eq!(app.bill("2024-05-04T00:00:00Z").await.invoices_finalized, 1);
    let finalized = app.ok("GET", &format!("/api/v1/invoices/{id}"), None).await;
    assert_eq!(finalized["invoice"]["status"], "finalized");
    assert_eq!(finalized["invoice"]["number"], "ACM-0001-001-001");
    // 3100 + VAT 620
    assert_eq!(finalized["invoice"]["total_amount_cents"], 3720);
    let (status, _) = app.call("PUT", &format!("/api/v1/invoices/{id}/refresh"), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_added_later_counts_the_events_already_sent() {
    let app = TestApp::start("2024-04-01T00:00:00Z").await;
    catalog(&app).await;
    app.ok(
        "POST",
        "/api/v1/billable_metrics",
        Some(json!({"billable_metric": {
        "name": "Seats", "code": "seats", "aggregation_type": "unique_count_agg", "field_name": "user"}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/subscriptions",
        Some(json!({"subscription": {
        "external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}})),
    )
    .await;
    for (i, user) in ["ann", "bob", "ann"].iter().enumerate() {
        app.ok(
            "POST",
            "/api/v1/events",
            Some(json!({"event": {"transaction_id": format!("s{i}"),
            "external_subscription_id": "sub-1", "code": "seats", "properties": {"user": user}}})),
        )
        .await;
    }
    // No charge prices seats yet: the events wait. The plan gains a seats charge at 5.00.
    let plan = app.ok("GET", "/api/v1/plans/startup", None).await;
    let mut charges: Vec<Value> = plan["plan"]["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!({
        "id": c["lago_id"], "billable_metric_code": c["billable_metric_code"], "charge_model": c["charge_model"],
        "properties": c["properties"], "filters": c["filters"]})
        })
        .collect();
    charges.push(json!({"billable_metric_code": "seats", "charge_model": "standard", "properties": {"amount": "5"}}));
    app.ok("PUT", "/api/v1/plans/startup", Some(json!({"plan": {"charges": charges}}))).await;
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    let seats = usage["customer_usage"]["charges_usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["billable_metric"]["code"] == "seats")
        .unwrap()
        .clone();
    assert_eq!(seats["units"], "2"); // ann, bob
    assert_eq!(seats["amount_cents"], 1000);
}

/// Lago (issue 9): the first period starts at the subscription's `started_at` instant, not at
/// its local midnight (Subscriptions::DatesService#charges_from_datetime): current usage,
/// invoice periods, and which events count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_period_starts_at_the_start_instant() {
    let app = TestApp::start("2024-04-11T09:00:00Z").await;
    catalog(&app).await;
    app.ok(
        "POST",
        "/api/v1/subscriptions",
        Some(
            json!({"subscription": {"external_customer_id": "cust-1", "plan_code": "startup", "external_id": "sub-1"}}),
        ),
    )
    .await;
    // 08:00 the same day is before the subscription: stored, not billed; 10:00 counts.
    let (eight, ten) = (1_712_822_400, 1_712_829_600); // 2024-04-11T08:00:00Z, T10:00:00Z
    app.ok("POST", "/api/v1/events/batch", Some(events("before", 3, "calls", eight, json!({})))).await;
    app.ok("POST", "/api/v1/events/batch", Some(events("after", 2, "calls", ten, json!({})))).await;
    let usage = app.ok("GET", "/api/v1/customers/cust-1/current_usage?external_subscription_id=sub-1", None).await;
    assert_eq!(usage["customer_usage"]["from_datetime"], "2024-04-11T09:00:00Z");
    let calls = usage["customer_usage"]["charges_usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["billable_metric"]["code"] == "calls")
        .cloned()
        .unwrap();
    assert_eq!(calls["events_count"], 2, "{calls}");

    assert_eq!(app.bill("2024-05-01T00:00:00Z").await.invoices_issued, 1);
    let list = app.ok("GET", "/api/v1/invoices?external_customer_id=cust-1", None).await;
    let period = &list["invoices"][0]["billing_periods"][0];
    assert_eq!(period["charges_from_datetime"], "2024-04-11T09:00:00Z", "{period}");
    assert_eq!(period["subscription_from_datetime"], "2024-04-11T09:00:00Z");
    assert_eq!(period["charges_to_datetime"], "2024-04-30T23:59:59Z");
}
