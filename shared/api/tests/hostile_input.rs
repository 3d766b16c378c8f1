//! Inputs a hostile or broken client sends (issue 8): none may end the process, stop other
//! tenants' writes, or be stored; each gets Lago's JSON error shape and changes nothing.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;

async fn gb_plan(app: &TestApp) {
    app.ok(
        "POST",
        "/api/v1/billable_metrics",
        Some(json!({"billable_metric": {"name": "Storage", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb"}})),
    )
    .await;
    app.ok(
        "POST",
        "/api/v1/plans",
        Some(json!({"plan": {
        "name": "Storage", "code": "storage", "interval": "monthly", "amount_cents": 1000, "amount_currency": "EUR",
        "charges": [{"billable_metric_code": "gb", "charge_model": "standard", "properties": {"amount": "0.10"}}]}})),
    )
    .await;
    for customer in ["victim", "bystander"] {
        app.ok(
            "POST",
            "/api/v1/subscriptions",
            Some(json!({"subscription": {
            "external_customer_id": customer, "plan_code": "storage", "external_id": format!("{customer}-sub"),
            "subscription_at": "2024-04-01T00:00:00Z"}})),
        )
        .await;
    }
}

fn gb_event(tx: &str, sub: &str, gb: &str) -> serde_json::Value {
    json!({"event": {"transaction_id": tx, "external_subscription_id": sub, "code": "gb",
                     "timestamp": 1_712_145_600, "properties": {"gb": gb}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_expressions_are_refused_without_crashing() {
    let app = TestApp::start("2024-04-05T00:00:00Z").await;
    // Each of these overflowed the stack of the server before the bounds.
    let hostile = [
        "(".repeat(2000) + "1" + &")".repeat(2000),
        "round(".repeat(3000) + "1" + &")".repeat(3000),
        "-".repeat(10_000) + "1",
        vec!["event.properties.a"; 100_000].join("+"),
        vec!["1"; 20_000].join("+"),
        "(".repeat(40) + "1" + &")".repeat(40),
    ];
    for (i, expression) in hostile.iter().enumerate() {
        let (status, body) = app
            .call(
                "POST",
                "/api/v1/billable_metrics",
                Some(json!({"billable_metric": {
                "name": "m", "code": format!("m{i}"), "aggregation_type": "sum_agg", "field_name": "v",
                "expression": expression}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "metric {i}: {body}");
        // `invalid_expression`, or `value_is_too_long` for the 100k-term one (over any text's limit).
        assert!(body["error_details"]["expression"].is_array(), "metric {i}: {body}");
        let (status, body) = app
            .call(
                "POST",
                "/api/v1/billable_metrics/evaluate_expression",
                Some(json!({
                "expression": expression, "event": {"code": "m", "properties": {"a": 1}}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "evaluate {i}: {body}");
    }
    // Nothing was stored, and the server still answers.
    let metrics = app.ok("GET", "/api/v1/billable_metrics", None).await;
    assert_eq!(metrics["billable_metrics"], json!([]));
    // An expression at the bounds still works: 32 levels, and a long sum.
    let nested = "(".repeat(32) + "event.properties.a * 2" + &")".repeat(32);
    let value = app
        .ok(
            "POST",
            "/api/v1/billable_metrics/evaluate_expression",
            Some(json!({
            "expression": nested, "event": {"code": "m", "properties": {"a": "21"}}})),
        )
        .await;
    assert_eq!(value["expression_result"]["value"], json!("42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_out_of_range_is_refused_and_everyone_else_goes_on() {
    let app = TestApp::start("2024-04-05T00:00:00Z").await;
    gb_plan(&app).await;
    let max = "79228162514264337593543950335"; // Decimal::MAX
    app.ok("POST", "/api/v1/events", Some(gb_event("big-1", "victim-sub", max))).await;
    // The second one would take the period's total past the exact range: refused, not stored.
    let (status, body) = app.call("POST", "/api/v1/events", Some(gb_event("big-2", "victim-sub", max))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], json!("validation_errors"));
    assert_eq!(body["error_details"]["properties"], json!(["value_is_out_of_range"]));
    let (status, _) = app.call("GET", "/api/v1/events/big-2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same in a batch, beside a good event: the whole batch is refused, nothing half-applied.
    let (status, _) = app
        .call(
            "POST",
            "/api/v1/events/batch",
            Some(json!({"events": [
            gb_event("b-ok", "bystander-sub", "1")["event"], gb_event("big-3", "victim-sub", max)["event"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.call("GET", "/api/v1/events/b-ok", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The writer lives on: other customers' events are stored, the health check is green.
    app.ok("POST", "/api/v1/events", Some(gb_event("small-1", "bystander-sub", "2.5"))).await;
    let health = app.ok("GET", "/health", None).await;
    assert_eq!(health["message"], json!("Success"));
    let usage =
        app.ok("GET", "/api/v1/customers/bystander/current_usage?external_subscription_id=bystander-sub", None).await;
    // 2.5 GB × 0.10 EUR = 0.25 EUR
    assert_eq!(usage["customer_usage"]["amount_cents"], json!(25));
    // The victim's usage (7.9 × 10²⁸ GB × 0.10 EUR) cannot be priced in 64-bit cents: Lago's 422.
    let (status, body) =
        app.call("GET", "/api/v1/customers/victim/current_usage?external_subscription_id=victim-sub", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The close bills the bystander and reports the victim, instead of failing for everyone.
    let report = app.bill("2024-05-01T00:10:00Z").await;
    assert_eq!(report.invoices_issued, 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].external_subscription_id, "victim-sub");
    let invoices = app.ok("GET", "/api/v1/invoices?external_customer_id=bystander", None).await;
    // 10.00 EUR subscription + 0.25 EUR usage = 10.25 EUR
    assert_eq!(invoices["invoices"][0]["fees_amount_cents"], json!(1025));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_and_bodies_obey_the_input_rules() {
    let app = TestApp::start("2024-04-05T00:00:00Z").await;
    let long = "x".repeat(100_000);
    for body in [
        json!({"customer": {"external_id": long, "name": "Long"}}),
        json!({"customer": {"external_id": "nul\u{0}id", "name": "Nul"}}),
        json!({"customer": {"external_id": "ok", "name": "bad\u{0}name"}}),
    ] {
        let (status, answer) = app.call("POST", "/api/v1/customers", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["code"], json!("validation_errors"));
    }
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/events",
            Some(json!({"event": {"transaction_id": "t\u{0}", "external_subscription_id": "s", "code": "c"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error_details"]["transaction_id"], json!(["value_is_invalid"]));
    let customers = app.ok("GET", "/api/v1/customers", None).await;
    assert_eq!(customers["customers"], json!([]), "nothing stored");

    // JSON sent under another content type is not read.
    let (status, content_type, body) =
        app.raw("POST", "/api/v1/customers", "text/plain", r#"{"customer": {"external_id": "plain"}}"#).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::BAD_REQUEST, "application/json"), "{body}");
    // Errors axum makes itself still come in Lago's shape: query string, path, method.
    for (method, path, expected) in [
        ("GET", "/api/v1/plans?per_page=-211", StatusCode::BAD_REQUEST),
        ("GET", "/api/v1/plans/%FF%FE", StatusCode::BAD_REQUEST),
        ("PATCH", "/api/v1/plans", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/api/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (status, content_type, body) = app.raw(method, path, "application/json", "").await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert_eq!(content_type, "application/json", "{method} {path}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(json["status"], json!(expected.as_u16()), "{method} {path}");
    }
}
