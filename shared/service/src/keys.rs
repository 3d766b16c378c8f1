//! The data model: every item's partition and sort key, in one place.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | organization | `{org}` | `organization` |
//! | catalog epoch (bumped by every plan or metric change) | `{org}` | `catalog_epoch` |
//! | last customer sequential id | `{org}` | `customer_sequence` |
//! | due index built (see `due_index`) | `{org}` | `due_index` |
//! | due index (global, sharded) | `due#{shard, 2 digits}` | `{instant ms, 15 digits}#{org}#{s or d}#{id}` |
//! | API key index (global) | `apikey` | SHA-256 of the key, hex |
//! | organization index (global) | `organizations` | organization id |
//! | API keys of an organization | `{org}#apikey` | key id |
//! | billable metric | `{org}#metric` | code |
//! | plan (with charges) | `{org}#plan` | code |
//! | tax | `{org}#tax` | code |
//! | customer | `{org}#customer` | external_id |
//! | subscriptions of an external_id | `{org}#subscription` | external_id |
//! | usage state (one of `usage_shards` per bucket) | `{org}#usage#{subscription}` | `{period start ms, 15 digits}#{charge}#{shard, 2 digits}#{bucket}` |
//! | event waiting for a subscription or charge | `{org}#pending#{external_subscription_id}` | transaction_id |
//! | billing marker (one per invoice) | `{org}#billed#{subscription}` | billing key |
//! | invoice | `{org}#invoice` | lago_id (UUIDv7, so time-ordered) |
//! | fee index | `{org}#fee` | fee lago_id |
//!
//! Usage events themselves live in the store's event log, keyed by organization too.

use tally_store::Key;

pub fn organization(org: &str) -> Key {
    Key::new(org, "organization")
}

pub fn catalog_epoch(org: &str) -> Key {
    Key::new(org, "catalog_epoch")
}

pub fn customer_sequence(org: &str) -> Key {
    Key::new(org, "customer_sequence")
}

pub fn api_key(key_hash: &str) -> Key {
    Key::new(API_KEYS, key_hash)
}

/// The global partition of API key hashes.
pub const API_KEYS: &str = "apikey";

/// The global partition listing organizations.
pub const ORGANIZATIONS: &str = "organizations";

pub fn organization_entry(org: &str) -> Key {
    Key::new(ORGANIZATIONS, org)
}

pub fn api_key_entries(org: &str) -> String {
    format!("{org}#apikey")
}

pub fn api_key_entry(org: &str, key_id: &str) -> Key {
    Key::new(api_key_entries(org), key_id)
}

pub fn metrics(org: &str) -> String {
    format!("{org}#metric")
}

pub fn metric(org: &str, code: &str) -> Key {
    Key::new(metrics(org), code)
}

pub fn plans(org: &str) -> String {
    format!("{org}#plan")
}

pub fn plan(org: &str, code: &str) -> Key {
    Key::new(plans(org), code)
}

pub fn taxes(org: &str) -> String {
    format!("{org}#tax")
}

pub fn tax(org: &str, code: &str) -> Key {
    Key::new(taxes(org), code)
}

pub fn customers(org: &str) -> String {
    format!("{org}#customer")
}

pub fn customer(org: &str, external_id: &str) -> Key {
    Key::new(customers(org), external_id)
}

pub fn subscriptions(org: &str) -> String {
    format!("{org}#subscription")
}

pub fn subscription(org: &str, external_id: &str) -> Key {
    Key::new(subscriptions(org), external_id)
}

pub fn usage_partition(org: &str, subscription_id: &str) -> String {
    format!("{org}#usage#{subscription_id}")
}

/// Sort-key prefix of every usage state of one period.
pub fn usage_period_prefix(period_start_ms: i64) -> String {
    format!("{period_start_ms:015}#")
}

pub fn usage(org: &str, subscription_id: &str, period_start_ms: i64, charge_id: &str, shard: u32, bucket: &str) -> Key {
    Key::new(usage_partition(org, subscription_id), format!("{period_start_ms:015}#{charge_id}#{shard:02}#{bucket}"))
}

pub fn pending_events(org: &str, external_subscription_id: &str) -> String {
    format!("{org}#pending#{external_subscription_id}")
}

pub fn pending_event(org: &str, external_subscription_id: &str, transaction_id: &str) -> Key {
    Key::new(pending_events(org, external_subscription_id), transaction_id)
}

pub fn billed_partition(org: &str, subscription_id: &str) -> String {
    format!("{org}#billed#{subscription_id}")
}

pub fn billed(org: &str, subscription_id: &str, billing_key: &str) -> Key {
    Key::new(billed_partition(org, subscription_id), billing_key)
}

pub fn invoices(org: &str) -> String {
    format!("{org}#invoice")
}

pub fn invoice(org: &str, lago_id: &str) -> Key {
    Key::new(invoices(org), lago_id)
}

pub fn fee(org: &str, fee_id: &str) -> Key {
    Key::new(format!("{org}#fee"), fee_id)
}
