//! A store that runs a hook before every call of another: how tests count reads, inject faults
//! (before a call, or after it applied) and make races happen at a chosen point, without each
//! test writing its own delegating store.

use crate::{AppendOutcome, EventBatch, EventFilter, Item, Key, LoggedEvent, Page, Query, Store, StoreResult, Write};
use async_trait::async_trait;
use std::sync::Arc;

/// Which call a hook runs around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Get,
    Query,
    Transact,
    AppendEvents,
    EventsByTransaction,
    EventsExist,
    ListEvents,
}

impl Call {
    /// Whether the call writes.
    pub fn writes(self) -> bool {
        matches!(self, Call::Transact | Call::AppendEvents)
    }
}

/// What to answer once the call has run.
pub enum Then {
    /// The call's own answer.
    Answer,
    /// This error, though the call applied (a timeout once the write is durable).
    Fail(crate::StoreError),
}

/// A hook run before each call: an error skips the call and is its answer.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    async fn before(&self, call: Call) -> StoreResult<Then>;
}

pub struct Intercepted<H> {
    pub inner: Arc<dyn Store>,
    pub hooks: H,
}

impl<H: Hooks> Intercepted<H> {
    pub fn new(inner: Arc<dyn Store>, hooks: H) -> Self {
        Self { inner, hooks }
    }

    async fn around<T>(&self, call: Call, run: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let then = self.hooks.before(call).await?;
        let answer = run.await?;
        match then {
            Then::Answer => Ok(answer),
            Then::Fail(e) => Err(e),
        }
    }
}

#[async_trait]
impl<H: Hooks> Store for Intercepted<H> {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.around(Call::Get, self.inner.get(key)).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.around(Call::Query, self.inner.query(query)).await
    }
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        self.around(Call::Transact, self.inner.transact(writes)).await
    }
    async fn append_events(&self, batch: EventBatch) -> StoreResult<AppendOutcome> {
        self.around(Call::AppendEvents, self.inner.append_events(batch)).await
    }
    async fn events_by_transaction(&self, org: &str, transaction_id: &str) -> StoreResult<Vec<LoggedEvent>> {
        self.around(Call::EventsByTransaction, self.inner.events_by_transaction(org, transaction_id)).await
    }
    async fn events_exist(&self, org: &str, keys: &[(String, String)]) -> StoreResult<Vec<bool>> {
        self.around(Call::EventsExist, self.inner.events_exist(org, keys)).await
    }
    async fn list_events(
        &self,
        org: &str,
        filter: &EventFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<LoggedEvent>, u64)> {
        self.around(Call::ListEvents, self.inner.list_events(org, filter, offset, limit)).await
    }
}
