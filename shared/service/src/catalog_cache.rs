//! In-memory copies of what ingestion reads for every event: compiled plans and subscription
//! histories, each with the store version it was read at.
//!
//! Never trusted blindly: ingestion guards its writes with a check that each item is still at
//! the cached version, so an item changed by another process (or another request) fails the
//! write, the entry is dropped, and the batch is attributed again from fresh reads.

use crate::records::{CompiledPlan, SubscriptionHistory};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries kept per map before it is cleared (a crude bound on memory).
const MAX_ENTRIES: usize = 100_000;

type OrgKey = (String, String);

/// A subscription history and its version (`None`: known to be absent).
type CachedHistory = (Arc<SubscriptionHistory>, Option<u64>);

#[derive(Default)]
pub(crate) struct CatalogCache {
    plans: Mutex<HashMap<OrgKey, (Arc<CompiledPlan>, u64)>>,
    subscriptions: Mutex<HashMap<OrgKey, CachedHistory>>,
}

fn bounded_insert<V>(map: &mut HashMap<OrgKey, V>, key: OrgKey, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl CatalogCache {
    pub(crate) fn plan(&self, org: &str, code: &str) -> Option<(Arc<CompiledPlan>, u64)> {
        self.plans.lock().ok()?.get(&(org.to_owned(), code.to_owned())).cloned()
    }

    pub(crate) fn put_plan(&self, org: &str, code: &str, plan: Arc<CompiledPlan>, version: u64) {
        if let Ok(mut plans) = self.plans.lock() {
            bounded_insert(&mut plans, (org.to_owned(), code.to_owned()), (plan, version));
        }
    }

    pub(crate) fn forget_plan(&self, org: &str, code: &str) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.remove(&(org.to_owned(), code.to_owned()));
        }
    }

    pub(crate) fn subscription(&self, org: &str, external_id: &str) -> Option<CachedHistory> {
        self.subscriptions.lock().ok()?.get(&(org.to_owned(), external_id.to_owned())).cloned()
    }

    pub(crate) fn put_subscription(
        &self,
        org: &str,
        external_id: &str,
        history: Arc<SubscriptionHistory>,
        version: Option<u64>,
    ) {
        if let Ok(mut subs) = self.subscriptions.lock() {
            bounded_insert(&mut subs, (org.to_owned(), external_id.to_owned()), (history, version));
        }
    }

    pub(crate) fn forget_subscription(&self, org: &str, external_id: &str) {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.remove(&(org.to_owned(), external_id.to_owned()));
        }
    }
}
