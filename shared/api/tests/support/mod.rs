//! A tally on a temporary embedded store with a clock the test moves, driven through the Router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tally_service::{organizations, period_close, FixedClock, Org, Tally};
use tally_store::SqliteStore;
use tower::ServiceExt;

pub const KEY: &str = "test-key";

pub struct TestApp {
    pub router: Router,
    pub tally: Tally,
    pub clock: Arc<FixedClock>,
    pub org: Org,
    _dir: tempfile::TempDir,
}

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("RFC 3339 instant")
}

impl TestApp {
    pub async fn start(now: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let clock = Arc::new(FixedClock::new(at(now)));
        let tally = Tally::new(store, clock.clone());
        let org = organizations::bootstrap(&tally, "Acme", Some(KEY.into())).await.expect("bootstrap").organization;
        Self { router: tally_api::router(tally.clone()), tally, clock, org, _dir: dir }
    }

    pub fn set_now(&self, now: &str) {
        self.clock.set(at(now));
    }

    /// Sends a request with the test key; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body.map(|b| b.to_string()), Some(KEY)).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from)).expect("request");
        let response = self.router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        (status, json)
    }

    // Not every test file uses every helper.
    #[allow(dead_code)]
    /// Sends raw bytes with a content type of the caller's choice; returns status, response
    /// content type and body text (for inputs a well-behaved client would never send).
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = self.router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Asserts a 200 and returns the body.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.call(method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {json}");
        json
    }

    /// Runs the period close as of `now`.
    pub async fn bill(&self, now: &str) -> period_close::CloseReport {
        self.set_now(now);
        period_close::run(&self.tally, &self.org, at(now)).await.expect("period close")
    }
}
