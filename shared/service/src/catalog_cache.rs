//! In-memory copies of what ingestion reads for every event: subscription histories and
//! compiled plans.
//!
//! Plans and metrics are tagged with the *catalog epoch* they were read under: one item per
//! organization whose version every change to plans or metrics bumps, in the same transaction
//! as the change. Subscription histories keep the version of their own item. Ingestion guards
//! its write with a check that the epoch is unchanged and one check per subscription history it
//! attributed with (at that version, or still absent). So a change made anywhere (another
//! request, `tally bill` in another process) fails the write instead of letting a stale copy
//! attribute an event, and the batch is attributed again from fresh reads; while a change to
//! one subscription conflicts only with batches for that subscription.

use crate::records::{CompiledPlan, SubscriptionHistory};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries kept per map before it is cleared (a crude bound on memory).
const MAX_ENTRIES: usize = 100_000;

type OrgKey = (String, String);

/// A catalog epoch: the epoch item's version, `None` while it was never written.
pub(crate) type Epoch = Option<u64>;

/// A subscription history and the version of its item (`None`: no item).
pub(crate) type CachedHistory = (Arc<SubscriptionHistory>, Option<u64>);

#[derive(Default)]
pub(crate) struct CatalogCache {
    epochs: Mutex<HashMap<String, Epoch>>,
    plans: Mutex<HashMap<OrgKey, (Arc<CompiledPlan>, Epoch)>>,
    subscriptions: Mutex<HashMap<OrgKey, CachedHistory>>,
}

fn bounded_insert<V>(map: &mut HashMap<OrgKey, V>, key: OrgKey, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl CatalogCache {
    pub(crate) fn epoch(&self, org: &str) -> Option<Epoch> {
        self.epochs.lock().ok()?.get(org).copied()
    }

    pub(crate) fn set_epoch(&self, org: &str, epoch: Epoch) {
        if let Ok(mut epochs) = self.epochs.lock() {
            epochs.insert(org.to_owned(), epoch);
        }
    }

    /// Drops everything known about an organization (its catalog changed).
    pub(crate) fn forget(&self, org: &str) {
        if let Ok(mut epochs) = self.epochs.lock() {
            epochs.remove(org);
        }
        if let Ok(mut plans) = self.plans.lock() {
            plans.retain(|(o, _), _| o != org);
        }
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.retain(|(o, _), _| o != org);
        }
    }

    pub(crate) fn plan(&self, org: &str, code: &str, epoch: Epoch) -> Option<Arc<CompiledPlan>> {
        let plans = self.plans.lock().ok()?;
        let (plan, tag) = plans.get(&(org.to_owned(), code.to_owned()))?;
        (*tag == epoch).then(|| plan.clone())
    }

    pub(crate) fn put_plan(&self, org: &str, code: &str, plan: Arc<CompiledPlan>, epoch: Epoch) {
        if let Ok(mut plans) = self.plans.lock() {
            bounded_insert(&mut plans, (org.to_owned(), code.to_owned()), (plan, epoch));
        }
    }

    /// A cached history with the version of its item (`None`: it did not exist).
    pub(crate) fn subscription(&self, org: &str, external_id: &str) -> Option<CachedHistory> {
        let subs = self.subscriptions.lock().ok()?;
        subs.get(&(org.to_owned(), external_id.to_owned())).cloned()
    }

    pub(crate) fn put_subscription(&self, org: &str, external_id: &str, history: CachedHistory) {
        if let Ok(mut subs) = self.subscriptions.lock() {
            bounded_insert(&mut subs, (org.to_owned(), external_id.to_owned()), history);
        }
    }
}
