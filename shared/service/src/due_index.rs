//! The due index: when the close must next look at each subscription and draft, so a close
//! costs what is due, not what exists.
//!
//! Entries live in [`SHARDS`] global partitions (`due#{shard}`), sorted by instant: a close
//! reads each shard from its start up to `now` and stops at the first entry in the future, so a
//! close with nothing due reads one page per shard whatever the number of subscriptions. On AWS
//! each shard is one child execution of the state machine's Distributed Map.
//!
//! The rule that keeps it exact: every write that changes when a subscription is due puts an
//! entry at (or before) that instant in the same transaction, and the close deletes an entry
//! only after it has done everything the entry stood for and put the subscription's next
//! entry. An entry may be early or redundant (processing it then does nothing); none is ever
//! missing. Entries of one subscription at one instant share a key, so repeating a put is
//! harmless.

use crate::metering::schedules;
use crate::records::{SubscriptionHistory, SubscriptionStatus};
use crate::{keys, put, Org, ServiceResult, Tally};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_store::{Condition, Key, Write};

/// Partitions of the due index. A close processes them independently (in parallel on AWS).
pub const SHARDS: u32 = 64;

/// What an entry asks the close to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Due {
    /// A subscription's history: start or end versions, bill the periods that ended.
    Subscription { external_id: String },
    /// A draft invoice whose grace period ends.
    Draft { invoice_id: String },
}

/// One entry of the due index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueEntry {
    pub organization_id: String,
    pub at_ms: i64,
    #[serde(flatten)]
    pub due: Due,
}

impl DueEntry {
    fn id(&self) -> String {
        match &self.due {
            Due::Subscription { external_id } => format!("s#{external_id}"),
            Due::Draft { invoice_id } => format!("d#{invoice_id}"),
        }
    }

    pub fn key(&self) -> Key {
        let id = self.id();
        Key::new(
            partition(shard_of(&self.organization_id, &id)),
            format!("{:015}#{}#{id}", self.at_ms.max(0), self.organization_id),
        )
    }
}

pub fn partition(shard: u32) -> String {
    format!("due#{shard:02}")
}

/// The sort key an instant's entries start at: a shard is due up to (and excluding) `at + 1ms`.
pub fn sort_key_bound(at: DateTime<Utc>) -> String {
    format!("{:015}$", at.timestamp_millis().max(0))
}

/// FNV-1a: stable across builds and platforms (the shard is part of stored keys).
fn shard_of(org: &str, id: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in org.bytes().chain([b'#']).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(SHARDS)) as u32
}

/// The shard holding a subscription's entries (for tests and capacity checks).
pub fn subscription_shard(org: &str, external_id: &str) -> u32 {
    shard_of(org, &format!("s#{external_id}"))
}

pub(crate) fn subscription_entry(org: &str, external_id: &str, at: DateTime<Utc>) -> DueEntry {
    DueEntry {
        organization_id: org.to_owned(),
        at_ms: at.timestamp_millis(),
        due: Due::Subscription { external_id: external_id.to_owned() },
    }
}

pub(crate) fn draft_entry(org: &str, invoice_id: &str, at: DateTime<Utc>) -> DueEntry {
    DueEntry {
        organization_id: org.to_owned(),
        at_ms: at.timestamp_millis(),
        due: Due::Draft { invoice_id: invoice_id.to_owned() },
    }
}

pub(crate) fn put_entry(entry: &DueEntry) -> ServiceResult<Write> {
    put(entry.key(), entry, Condition::None)
}

/// The next instant after `now` at which the close has something to do for this history: a
/// pending version's start, an active one's end, or the end of its current charge period.
/// `None` when every version is over.
pub(crate) async fn next_due(
    tally: &Tally,
    org: &Org,
    history: &SubscriptionHistory,
    now: DateTime<Utc>,
) -> ServiceResult<Option<DateTime<Utc>>> {
    let mut next: Option<DateTime<Utc>> = None;
    let mut earliest = |at: DateTime<Utc>| next = Some(next.map_or(at, |n| n.min(at)));
    for s in &history.versions {
        match s.status {
            SubscriptionStatus::Pending => earliest(s.subscription_at),
            SubscriptionStatus::Active => {
                if let Some(end) = s.ending_at {
                    earliest(end);
                }
                match crate::plans::compiled(tally, org, &s.plan_code).await? {
                    Some(plan) => {
                        let started_at = s.started_at.unwrap_or(s.subscription_at);
                        earliest(schedules(s, &plan).charges.period_at(now.max(started_at)).end);
                    }
                    // No plan to compute the period with: look again at the next close.
                    None => earliest(now),
                }
            }
            SubscriptionStatus::Terminated | SubscriptionStatus::Canceled => {}
        }
    }
    Ok(next)
}

/// The entries to write with a changed subscription history: its next due instant, plus
/// `also` (e.g. a termination instant whose final invoice is billed after the commit: if that
/// fails, the close finds it).
pub(crate) async fn history_writes(
    tally: &Tally,
    org: &Org,
    history: &SubscriptionHistory,
    external_id: &str,
    also: Option<DateTime<Utc>>,
) -> ServiceResult<Vec<Write>> {
    let now = tally.now();
    let mut instants: Vec<DateTime<Utc>> = next_due(tally, org, history, now).await?.into_iter().collect();
    // A history with a started version starts its index entry no later than its first period
    // end: a subscription created back-dated is billed for its past periods at the next close.
    for s in history.versions.iter().filter(|s| s.status == SubscriptionStatus::Active) {
        if let (Some(started_at), Some(plan)) = (s.started_at, crate::plans::compiled(tally, org, &s.plan_code).await?)
        {
            let first_end = schedules(s, &plan).charges.period_at(started_at).end;
            if first_end <= now {
                instants.push(first_end);
            }
        }
    }
    instants.extend(also);
    instants.sort();
    instants.dedup();
    instants.iter().map(|at| put_entry(&subscription_entry(&org.id, external_id, *at))).collect()
}

/// Whether the organization's entries have been built (an organization from before the index
/// gets them at its first close).
fn built_marker(org: &str) -> Key {
    Key::new(org, "due_index")
}

/// Written with a new organization: it has nothing to build.
pub(crate) fn built_marker_write(org: &str) -> ServiceResult<Write> {
    put(built_marker(org), &true, Condition::None)
}

/// Builds the organization's entries once, from every subscription history and draft: early
/// entries (a history's first period end, its pending starts, its ends), which the close then
/// moves forward as it processes them.
pub async fn ensure_built(tally: &Tally, org: &Org) -> ServiceResult<()> {
    if tally.store.get(&built_marker(&org.id)).await?.is_some() {
        return Ok(());
    }
    let mut writes = Vec::new();
    for (history, _) in tally.load_all::<SubscriptionHistory>(keys::subscriptions(&org.id)).await? {
        let Some(external_id) = history.latest().map(|s| s.external_id.clone()) else { continue };
        let mut instants = Vec::new();
        for s in &history.versions {
            match s.status {
                SubscriptionStatus::Pending => instants.push(s.subscription_at),
                SubscriptionStatus::Active | SubscriptionStatus::Terminated => {
                    if let (Some(started_at), Some(plan)) =
                        (s.started_at, crate::plans::compiled(tally, org, &s.plan_code).await?)
                    {
                        instants.push(schedules(s, &plan).charges.period_at(started_at).end);
                    }
                    instants.extend(s.ending_at);
                    instants.extend(s.terminated_at);
                }
                SubscriptionStatus::Canceled => {}
            }
        }
        if let Some(first) = instants.into_iter().min() {
            writes.push(put_entry(&subscription_entry(&org.id, &external_id, first))?);
        }
    }
    let drafts = crate::invoices::list(
        tally,
        org,
        &crate::invoices::InvoiceFilter { status: Some("draft".into()), ..Default::default() },
    )
    .await?;
    for draft in drafts {
        if let Some(at) = draft.finalize_at {
            writes.push(put_entry(&draft_entry(&org.id, &draft.lago_id, at))?);
        }
    }
    for chunk in writes.chunks(tally_store::MAX_TRANSACTION_WRITES) {
        tally.store.transact(chunk.to_vec()).await?;
    }
    tally.store.transact(vec![built_marker_write(&org.id)?]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_by_instant_within_a_shard_and_stop_at_the_bound() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let early = subscription_entry("org", "a", at("2024-05-01T00:00:00Z")).key();
        let late = subscription_entry("org", "a", at("2024-06-01T00:00:00Z")).key();
        assert_eq!(early.pk, late.pk);
        assert!(early.sk < late.sk);
        let bound = sort_key_bound(at("2024-05-01T00:00:00Z"));
        assert!(early.sk < bound && bound < late.sk);
    }

    #[test]
    fn shards_spread_subscriptions_evenly() {
        let mut counts = vec![0u32; SHARDS as usize];
        for i in 0..64_000 {
            counts[subscription_shard("org", &format!("sub-{i}")) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(min > Some(850) && max < Some(1150), "{min:?}..{max:?}");
    }
}
