//! API Gateway v2 fixtures from `events/` through the Router, as the Lambda runtime hands them
//! over (the store is the embedded one: what is tested here is the HTTP edge).

use axum::body::Body;
use http_body_util::BodyExt;
use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};
use tower::ServiceExt;

async fn call(fixture: &str) -> (u16, serde_json::Value) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
    let tally = Tally::new(store, Arc::new(SystemClock));
    organizations::bootstrap(&tally, "tally", Some("fixture-key".into())).await.expect("org");
    let request = lambda_http::request::from_str(fixture).expect("API Gateway v2 event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = tally_api::router(tally).oneshot(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn health_through_api_gateway() {
    let (status, body) = call(include_str!("../../../events/apigw-v2-health.json")).await;
    assert_eq!((status, body["message"].as_str()), (200, Some("Success")));
}

#[tokio::test]
async fn an_event_through_api_gateway_is_stored() {
    let (status, body) = call(include_str!("../../../events/apigw-v2-create-event.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["transaction_id"], "fixture-1");
    assert_eq!(body["event"]["timestamp"], "2026-11-26T10:00:00.000Z");
}
