//! API Gateway v2 fixtures from `events/` through the Router, as the Lambda runtime hands them
//! over (the store is the embedded one: what is tested here is the HTTP edge).

use axum::body::Body;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tally_queue::{MemoryQueue, Queue};
use tally_service::{events, organizations, queued_events, Org, SystemClock, Tally};
use tower::ServiceExt;

async fn app() -> (Tally, Org, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
    let tally = Tally::new(store, Arc::new(SystemClock));
    let org = organizations::bootstrap(&tally, "tally", Some("fixture-key".into())).await.expect("org").organization;
    (tally, org, dir)
}

async fn call(tally: &Tally, fixture: &str) -> (u16, serde_json::Value) {
    let request = lambda_http::request::from_str(fixture).expect("API Gateway v2 event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = tally_api::router(tally.clone()).oneshot(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn health_through_api_gateway() {
    let (tally, _, _dir) = app().await;
    let (status, body) = call(&tally, include_str!("../../../events/apigw-v2-health.json")).await;
    assert_eq!((status, body["message"].as_str()), (200, Some("Success")));
}

#[tokio::test]
async fn an_event_through_api_gateway_is_stored() {
    let (tally, org, _dir) = app().await;
    let (status, body) = call(&tally, include_str!("../../../events/apigw-v2-create-event.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["transaction_id"], "fixture-1");
    assert_eq!(body["event"]["timestamp"], "2026-11-26T10:00:00.000Z");
    assert!(events::get(&tally, &org, "fixture-1", None).await.is_ok(), "without a queue: stored at once");
}

/// As deployed: `POST /events` puts the event on the queue; the consumer stores it with the id
/// the API answered with; the same event again is refused with Lago's 422.
#[tokio::test]
async fn with_a_queue_an_event_is_enqueued_then_metered() {
    let (tally, org, _dir) = app().await;
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let tally = tally.with_queue(queue.clone());
    let fixture = include_str!("../../../events/apigw-v2-create-event.json");
    let (status, body) = call(&tally, fixture).await;
    assert_eq!(status, 200, "{body}");
    assert!(events::get(&tally, &org, "fixture-1", None).await.is_err(), "not stored before it is consumed");

    let outcome = queued_events::poll(&tally, &org, queue.as_ref(), Duration::from_secs(1)).await.expect("poll");
    assert_eq!((outcome.ingested, outcome.failed.len()), (1, 0));
    let stored = events::get(&tally, &org, "fixture-1", None).await.expect("stored");
    assert_eq!(serde_json::json!(stored.lago_id), body["event"]["lago_id"]);
    assert!(queue.receive(10, Duration::ZERO).await.expect("receive").is_empty(), "deleted once done");

    let (status, body) = call(&tally, fixture).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error_details"]["transaction_id"][0], "value_already_exist");
}
