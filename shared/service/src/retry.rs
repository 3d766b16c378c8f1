//! Optimistic writes lost to a concurrent writer are tried again, here, instead of answering
//! the client with an error for a race it did not cause.
//!
//! Every use case that reads an item, changes it and writes it back on the condition that it is
//! unchanged loops with a [`Retry`]: when the condition fails it waits a jittered, growing delay
//! (so the writers that collided do not collide again) and reads afresh. Only after
//! [`Retry::ATTEMPTS`] lost races does the client see 503 (retry later) — never a 500.

use crate::{ServiceError, ServiceResult};
use rand::Rng;
use std::time::Duration;

pub(crate) struct Retry {
    attempt: u32,
    what: &'static str,
}

impl Retry {
    /// Attempts before giving up; with the delays below, about 1.5 s of contention.
    pub(crate) const ATTEMPTS: u32 = 40;
    const FIRST_DELAY_US: u64 = 200;
    const MAX_DELAY_US: u64 = 50_000;

    /// A retry loop for writes of `what` (named in the error if the races never stop).
    pub(crate) fn new(what: &'static str) -> Self {
        Self { attempt: 0, what }
    }

    /// Called after a lost race: waits before the next attempt, or fails when they are spent.
    pub(crate) async fn lost_race(&mut self) -> ServiceResult<()> {
        self.attempt += 1;
        if self.attempt >= Self::ATTEMPTS {
            return Err(ServiceError::Unavailable(format!("{} kept changing concurrently; retry", self.what)));
        }
        let ceiling = (Self::FIRST_DELAY_US << self.attempt.min(16)).min(Self::MAX_DELAY_US);
        let delay = rand::rng().random_range(ceiling / 2..=ceiling);
        tokio::time::sleep(Duration::from_micros(delay)).await;
        Ok(())
    }
}
