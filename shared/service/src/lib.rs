//! tally's use cases over the storage port: thin over the pure domain, free of HTTP and AWS.
//!
//! [`Tally`] holds the ports (store, clock). Each module under it is a use case or a resource's
//! catalog operations; the HTTP layer only translates requests to these calls and results to
//! Lago's JSON.

pub mod audit;
pub mod billable_metrics;
pub mod clock;
pub mod customers;
pub mod due_index;
pub mod error;
pub mod events;
pub mod invoices;
pub mod keys;
pub mod organizations;
pub mod period_close;
pub mod plans;
pub mod queued_events;
pub mod records;
pub mod subscriptions;
pub mod taxes;
pub mod testing;
pub mod usage;

mod catalog_cache;
mod metering;
mod retry;

pub use metering::EventRecord;
pub use usage::{ChargeUsageView, CustomerUsage, PricedFee};

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{ServiceError, ServiceResult};
pub use records::OrganizationRecord;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use tally_store::{Condition, Item, Key, Query, Store, Write};

/// The application: the ports every use case runs on.
#[derive(Clone)]
pub struct Tally {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    cache: Arc<catalog_cache::CatalogCache>,
    /// States per usage bucket: 1 on the embedded store (one writer), more where concurrent
    /// writers would contend for one hot item (DynamoDB).
    usage_shards: u32,
    /// Where accepted events wait to be metered (AWS); `None`: metered as they are accepted.
    queue: Option<Arc<dyn tally_queue::Queue>>,
    /// Writes of one hot item taken in turn within this process (see [`Tally::serialize`]).
    turns: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// The organization a request acts for (from its API key).
pub type Org = OrganizationRecord;

impl Tally {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Arc::new(catalog_cache::CatalogCache::default()),
            usage_shards: 1,
            queue: None,
            turns: Arc::default(),
        }
    }

    /// Spreads each usage bucket over `shards` states (see [`Tally::usage_shards`]).
    pub fn with_usage_shards(mut self, shards: u32) -> Self {
        self.usage_shards = shards.clamp(1, 64);
        self
    }

    /// Accepted events go to `queue`; a consumer ([`queued_events::poll`]) meters them.
    pub fn with_queue(mut self, queue: Arc<dyn tally_queue::Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn usage_shards(&self) -> u32 {
        self.usage_shards
    }

    /// Waits for this process's turn to write one organization's hot item (a counter every
    /// creation bumps): writers in one process then never lose optimistic races to each other,
    /// which under load would exhaust their retries.
    pub(crate) async fn serialize(&self, org: &str, item: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            turns.entry(format!("{org}#{item}")).or_default().clone()
        };
        turn.lock_owned().await
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reads and decodes one record, with its version.
    pub(crate) async fn load<T: DeserializeOwned>(&self, key: &Key) -> ServiceResult<Option<(T, u64)>> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(Item { value, version, .. }) => Ok(Some((records::decode(&value)?, version))),
        }
    }

    /// Every record of a partition (following pages), in sort-key order.
    pub(crate) async fn load_all<T: DeserializeOwned>(&self, pk: String) -> ServiceResult<Vec<(T, u64)>> {
        let mut query = Query::partition(pk);
        let mut out = Vec::new();
        loop {
            let page = self.store.query(&query).await?;
            for item in page.items {
                out.push((records::decode(&item.value)?, item.version));
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl Tally {
    /// Visits a partition's items in sort-key order (reversed when `descending`), reading the
    /// store one page at a time: memory holds one store page, never the partition.
    pub(crate) async fn scan(
        &self,
        pk: String,
        descending: bool,
        mut visit: impl FnMut(&Item) -> ServiceResult<()>,
    ) -> ServiceResult<()> {
        let mut query = Query { descending, ..Query::partition(pk) };
        loop {
            let page = self.store.query(&query).await?;
            for item in &page.items {
                visit(item)?;
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One page of a partition's records in sort-key order (newest first when `descending`
    /// and the keys are time-ordered), keeping those `keep` accepts. Records outside the page
    /// are counted, decoded only when a filter must look at them.
    pub(crate) async fn page_of<T: DeserializeOwned>(
        &self,
        pk: String,
        descending: bool,
        request: PageRequest,
        keep: Option<&(dyn Fn(&T) -> bool + Send + Sync)>,
    ) -> ServiceResult<Paged<T>> {
        let mut pager = Pager::new(request);
        self.scan(pk, descending, |item| {
            match keep {
                None if pager.wants() => pager.offer(records::decode(&item.value)?),
                None => pager.skip(),
                Some(keep) => {
                    let record: T = records::decode(&item.value)?;
                    if keep(&record) {
                        pager.offer(record);
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(pager.finish())
    }
}

/// Builds one page of a list streamed in order: keeps the page's items, counts the rest.
pub(crate) struct Pager<T> {
    first: usize,
    request: PageRequest,
    seen: usize,
    items: Vec<T>,
}

impl<T> Pager<T> {
    pub(crate) fn new(request: PageRequest) -> Self {
        let request = PageRequest { page: request.page.max(1), per_page: request.per_page.max(1) };
        Self { first: (request.page - 1).saturating_mul(request.per_page), request, seen: 0, items: Vec::new() }
    }

    /// Whether the next item offered falls in the page.
    pub(crate) fn wants(&self) -> bool {
        self.seen >= self.first && self.items.len() < self.request.per_page
    }

    pub(crate) fn offer(&mut self, item: T) {
        if self.wants() {
            self.items.push(item);
        }
        self.seen += 1;
    }

    pub(crate) fn skip(&mut self) {
        self.seen += 1;
    }

    pub(crate) fn finish(self) -> Paged<T> {
        Paged {
            items: self.items,
            current_page: self.request.page,
            total_pages: self.seen.div_ceil(self.request.per_page),
            total_count: self.seen,
        }
    }
}

/// A put of a record with a condition.
pub(crate) fn put<T: Serialize>(key: Key, record: &T, condition: Condition) -> ServiceResult<Write> {
    Ok(Write::Put { key, value: records::encode(record)?, condition })
}

/// The condition that the item is still as it was read (`None`: still absent).
pub(crate) fn unchanged(version: Option<u64>) -> Condition {
    version.map_or(Condition::Absent, Condition::Version)
}

/// The write that bumps the organization's catalog epoch: part of every transaction that
/// changes plans or metrics, so ingestion never attributes with stale copies (subscription
/// histories are checked by their own versions).
pub(crate) fn bump_catalog_epoch(org: &str) -> Write {
    Write::Put { key: keys::catalog_epoch(org), value: b"{}".to_vec(), condition: Condition::None }
}

/// A new time-ordered id (UUIDv7), as Lago's `lago_id`.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Lago's paging: `page` from 1, `per_page` default 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: usize,
    pub per_page: usize,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { page: 1, per_page: 100 }
    }
}

/// One page of a list, with Lago's `meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub current_page: usize,
    pub total_pages: usize,
    pub total_count: usize,
}

impl<T> Paged<T> {
    /// Cuts one page out of a full list.
    pub fn of(all: Vec<T>, request: PageRequest) -> Self {
        let per_page = request.per_page.max(1);
        let page = request.page.max(1);
        let total_count = all.len();
        let items = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        Self { items, current_page: page, total_pages: total_count.div_ceil(per_page), total_count }
    }
}
