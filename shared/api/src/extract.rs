//! Request extraction in Lago's terms: the bearer key, root-keyed JSON bodies, paging.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};
use tally_service::{organizations, Org, PageRequest, ServiceError};

/// How long an organization's record is used before it is read again.
const AUTH_TTL: Duration = Duration::from_secs(2);

/// The organization of the request's `Authorization: Bearer <key>`.
pub struct Auth(pub Org);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header =
            parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        // Lago takes the second space-separated token.
        let key = header.split(' ').nth(1).filter(|k| !k.is_empty()).ok_or(ServiceError::Unauthorized)?;
        // The key itself is looked up on every request (a revoked key is refused at once);
        // only the organization's record is cached.
        let org_id = organizations::organization_of_key(&state.tally, key).await?;
        if let Some(org) = state.cached_org(&org_id) {
            return Ok(Auth(org));
        }
        let org = organizations::get(&state.tally, &org_id).await.map_err(|_| ServiceError::Unauthorized)?;
        state.remember_org(&org_id, org.clone(), Instant::now() + AUTH_TTL);
        Ok(Auth(org))
    }
}

/// Parses a JSON body and takes its root key (`{"customer": {...}}`), as Lago's controllers do.
/// Every string in it obeys [`tally_domain::input_rules`] (else 422, nothing changed).
pub fn root<T: DeserializeOwned>(body: &Bytes, root: &str) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    tally_domain::input_rules::check_body(&value).map_err(ServiceError::Validation)?;
    let inner = value
        .get(root)
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::BadRequest(format!("param is missing or the value is empty: {root}")))?;
    serde_json::from_value(inner.clone()).map_err(|e| ApiError::BadRequest(format!("{root}: {e}")))
}

/// The whole JSON body.
pub fn whole<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    tally_domain::input_rules::check_body(&value).map_err(ServiceError::Validation)?;
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Paging {
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

impl Paging {
    pub fn request(&self) -> PageRequest {
        PageRequest { page: self.page.unwrap_or(1).max(1), per_page: self.per_page.unwrap_or(100).clamp(1, 1000) }
    }
}

/// A query string as pairs, keeping repeated keys (`status[]=active&status[]=pending`), which
/// typed query extractors drop.
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    pub fn parse(query: Option<String>) -> Self {
        Self(query.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok()).unwrap_or_default())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Every value of `key` (or of `key[]`).
    pub fn all(&self, key: &str) -> Vec<String> {
        let list = format!("{key}[]");
        self.0.iter().filter(|(k, _)| k == key || *k == list).map(|(_, v)| v.clone()).collect()
    }

    pub fn paging(&self) -> Paging {
        Paging {
            page: self.get("page").and_then(|p| p.parse().ok()),
            per_page: self.get("per_page").and_then(|p| p.parse().ok()),
        }
    }
}
