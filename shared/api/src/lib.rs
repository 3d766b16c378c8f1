//! Lago's public REST API (v1) over tally's use cases, as one axum [`Router`]: served by
//! `tally serve` on a socket and, in AWS, by the `api` Lambda behind API Gateway.
//!
//! Handlers are thin: extract (key, path, root-keyed JSON) → call a use case → render Lago's
//! JSON ([`views`]). Every failure leaves through [`error::ApiError`] in Lago's shapes.

mod edges;
pub mod error;
mod extract;
mod routes;
pub mod views;

use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tally_service::{Org, Tally};

#[derive(Clone)]
pub struct AppState {
    pub tally: Tally,
    auth: Arc<Mutex<HashMap<String, (Org, Instant)>>>,
}

impl AppState {
    pub fn new(tally: Tally) -> Self {
        Self { tally, auth: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The organization's record by id, while fresh.
    fn cached_org(&self, org_id: &str) -> Option<Org> {
        let cache = self.auth.lock().ok()?;
        let (org, until) = cache.get(org_id)?;
        (Instant::now() < *until).then(|| org.clone())
    }

    fn remember_org(&self, org_id: &str, org: Org, until: Instant) {
        if let Ok(mut cache) = self.auth.lock() {
            if cache.len() > 1000 {
                cache.clear();
            }
            cache.insert(org_id.to_owned(), (org, until));
        }
    }
}

/// The whole API. `GET /health` needs no key; everything under `/api/v1` does.
pub fn router(tally: Tally) -> Router {
    routes::all()
        .with_state(AppState::new(tally))
        .layer(axum::middleware::from_fn(edges::lago_shapes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(edges::panicked))
}
