//! tally's storage port.
//!
//! The model follows DynamoDB's rules so one design serves both deployments:
//! - **items**: a partition key and a sort key, an opaque value and a version; read one, query a
//!   partition by sort-key prefix with paging, and write up to [`MAX_TRANSACTION_WRITES`] items in
//!   one all-or-nothing transaction with per-item conditions (absent, or at a version);
//! - **the event log**: usage events appended in atomic batches, each refused if its
//!   `(organization, external_subscription_id, transaction_id)` is already stored, together with
//!   the usage-state merges the batch causes. Dedupe markers and state updates commit together, so
//!   a redelivered event can neither be lost nor counted twice.
//!
//! Every key begins with the organization id (the API-key index is the one global partition).
//! [`SqliteStore`] is the embedded implementation; [`contract`] is the suite every implementation
//! must pass.

pub mod contract;
pub mod intercepted;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use async_trait::async_trait;

/// DynamoDB's limit on items in one `TransactWriteItems`.
pub const MAX_TRANSACTION_WRITES: usize = 100;

/// Largest page a query returns.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: Key,
    pub value: Vec<u8>,
    /// 1 after the first put, +1 on each put.
    pub version: u64,
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    None,
    /// The item must not exist.
    Absent,
    /// The item must exist at this version (optimistic concurrency).
    Version(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        key: Key,
        value: Vec<u8>,
        condition: Condition,
    },
    Delete {
        key: Key,
        condition: Condition,
    },
    /// Writes nothing; fails the transaction unless the condition holds.
    Check {
        key: Key,
        condition: Condition,
    },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } | Write::Check { key, .. } => key,
        }
    }
}

/// Items of one partition whose sort key starts with `sk_prefix`, in sort-key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub pk: String,
    pub sk_prefix: String,
    /// Resume after this sort key (the previous page's `next`).
    pub after: Option<String>,
    pub limit: usize,
    pub descending: bool,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk_prefix: String::new(), after: None, limit: MAX_PAGE, descending: false }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sk_prefix = prefix.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Sort key to resume after, when more items may follow.
    pub next: Option<String>,
}

/// A usage event as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub organization_id: String,
    pub external_subscription_id: String,
    pub transaction_id: String,
    pub code: String,
    pub timestamp_ms: i64,
    /// The event as the API shows it (JSON), opaque to the store.
    pub body: Vec<u8>,
}

/// Merges a usage-state delta into the stored value (`None` when absent) and returns the new
/// value. `Fn`, not `FnOnce`: a store with optimistic concurrency may run it again on a retry.
pub type MergeFn = Box<dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, MergeError> + Send + Sync>;

/// Why a usage merge refused its batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The merged total cannot be represented: the batch is refused (the caller answers 422).
    #[error("usage total out of range")]
    OutOfRange,
    /// The stored state could not be read or merged.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for MergeError {
    fn from(message: String) -> Self {
        MergeError::Invalid(message)
    }
}

/// A change to one usage state caused by a batch of events.
pub struct UsageMerge {
    pub key: Key,
    pub merge: MergeFn,
}

impl UsageMerge {
    /// Runs the merge on the stored value. A merge that panics fails its own batch (a bug, but
    /// no request may end the writer or the consumer that runs it).
    pub fn apply(&self, current: Option<&[u8]>) -> Result<Vec<u8>, MergeError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.merge)(current)))
            .unwrap_or_else(|_| Err(MergeError::Invalid("usage merge panicked".into())))
    }
}

impl std::fmt::Debug for UsageMerge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageMerge").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Events to append in one all-or-nothing step, with the usage merges they cause and any other
/// item writes that must commit with them (guards that the catalog read is still current,
/// events parked until a subscription covers them…).
#[derive(Debug, Default)]
pub struct EventBatch {
    pub events: Vec<LoggedEvent>,
    pub usage: Vec<UsageMerge>,
    /// Applied (conditions checked) before the events; a failed condition refuses the batch with
    /// [`StoreError::ConditionFailed`], writing nothing. Unlike [`Store::transact`], a batch has
    /// no item limit (a batch of 100 events already writes 200 log items): a backend with a
    /// transaction limit must keep the all-or-nothing promise its own way.
    pub writes: Vec<Write>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended,
    /// Nothing was written: these batch indexes repeat a stored event, or an earlier one of the batch.
    Duplicates(Vec<usize>),
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub external_subscription_id: Option<String>,
    pub code: Option<String>,
    pub timestamp_from_ms: Option<i64>,
    pub timestamp_to_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition of a transaction failed; nothing was written.
    #[error("condition failed on write {index}")]
    ConditionFailed { index: usize },
    #[error("a transaction holds at most {MAX_TRANSACTION_WRITES} writes, got {0}")]
    TooManyWrites(usize),
    #[error("a transaction writes the same item twice")]
    DuplicateKeyInTransaction,
    #[error("usage merge failed: {0}")]
    Merge(MergeError),
    /// The backend was busy or throttled past its retries; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage port. Implementations: [`SqliteStore`] (embedded), DynamoDB (AWS).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;
    /// Whether the store can write now (`GET /health`): `Unavailable` with the reason if not.
    async fn health(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn query(&self, query: &Query) -> StoreResult<Page>;

    /// Applies all writes or none. At most [`MAX_TRANSACTION_WRITES`], each key once.
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()>;

    /// Appends a batch of events and applies its writes and usage merges, all or nothing.
    /// Refuses the whole batch if any event repeats a stored `(organization,
    /// external_subscription_id, transaction_id)` or an earlier event of the batch, or if a
    /// write's condition fails.
    async fn append_events(&self, batch: EventBatch) -> StoreResult<AppendOutcome>;

    /// Events of an organization with this transaction id (one per subscription at most).
    async fn events_by_transaction(&self, organization_id: &str, transaction_id: &str)
        -> StoreResult<Vec<LoggedEvent>>;

    /// Which of these `(external_subscription_id, transaction_id)` the organization has stored.
    async fn events_exist(&self, organization_id: &str, keys: &[(String, String)]) -> StoreResult<Vec<bool>> {
        let mut exist = Vec::with_capacity(keys.len());
        for (external_subscription_id, transaction_id) in keys {
            let found = self.events_by_transaction(organization_id, transaction_id).await?;
            exist.push(found.iter().any(|e| &e.external_subscription_id == external_subscription_id));
        }
        Ok(exist)
    }

    /// Events of an organization, newest received first, with the total count for paging.
    async fn list_events(
        &self,
        organization_id: &str,
        filter: &EventFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<LoggedEvent>, u64)>;
}
