//! Organizations and their API keys: the default one created on first start, more with
//! [`create`]; keys created, listed and revoked per organization, found again from the key.

use crate::records::{ApiKeyEntry, ApiKeyRecord, OrganizationRecord};
use crate::{keys, new_id, put, ServiceError, ServiceResult, Tally};
use sha2::{Digest, Sha256};
use tally_store::{Condition, StoreError, Write};

/// The API key's SHA-256, hex: keys are stored hashed, never in clear.
pub fn hash_api_key(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// A new random API key.
pub fn generate_api_key() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    format!("tally_{}", hex::encode(bytes))
}

/// The default organization's fixed id in the embedded deployment.
pub const DEFAULT_ORGANIZATION_ID: &str = "00000000-0000-7000-8000-000000000001";

/// What first start created (or found).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organization: OrganizationRecord,
    /// The key in clear, only when it was just created or given.
    pub api_key: Option<String>,
}

fn new_organization(tally: &Tally, id: &str, name: &str) -> OrganizationRecord {
    OrganizationRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        created_at: tally.now(),
        default_currency: "USD".into(),
        timezone: "UTC".into(),
        invoice_grace_period: 0,
        net_payment_term: 0,
        document_number_prefix: document_number_prefix(name, id),
        customers_count: 0,
    }
}

/// The writes that store a new key of `org_id`: the global hash index and the organization's
/// list entry, in one transaction.
fn key_writes(tally: &Tally, org_id: &str, api_key: &str, bootstrap: bool) -> ServiceResult<(ApiKeyEntry, Vec<Write>)> {
    let entry = ApiKeyEntry {
        id: new_id(),
        hash: hash_api_key(api_key),
        prefix: api_key.chars().take(8).collect(),
        created_at: tally.now(),
        bootstrap,
    };
    let index =
        ApiKeyRecord { organization_id: org_id.to_owned(), created_at: entry.created_at, id: Some(entry.id.clone()) };
    let writes = vec![
        put(keys::api_key(&entry.hash), &index, Condition::Absent)?,
        put(keys::api_key_entry(org_id, &entry.id), &entry, Condition::Absent)?,
    ];
    Ok((entry, writes))
}

/// Makes sure the default organization exists. Without a key, the first start generates one
/// and returns it; later starts return `None` (the key is only stored hashed). A key given
/// (`TALLY_API_KEY`) opens it from now on; the keys given or generated at earlier starts stop
/// working, unless `keep_previous` (keys made with [`create_api_key`] are never touched).
pub async fn bootstrap_with(
    tally: &Tally,
    name: &str,
    api_key: Option<String>,
    keep_previous: bool,
) -> ServiceResult<Bootstrap> {
    let org_key = keys::organization(DEFAULT_ORGANIZATION_ID);
    let existing = tally.load::<OrganizationRecord>(&org_key).await?;
    let organization = match existing {
        Some((org, _)) => org,
        None => {
            let org = new_organization(tally, DEFAULT_ORGANIZATION_ID, name);
            let api_key = api_key.clone().unwrap_or_else(generate_api_key);
            let (_, mut writes) = key_writes(tally, &org.id, &api_key, true)?;
            writes.push(put(org_key.clone(), &org, Condition::Absent)?);
            writes.push(put(keys::organization_entry(&org.id), &serde_json::json!({}), Condition::None)?);
            writes.push(crate::due_index::built_marker_write(&org.id)?);
            match tally.store.transact(writes).await {
                Ok(()) => return Ok(Bootstrap { organization: org, api_key: Some(api_key) }),
                // Another process created it first: use theirs.
                Err(StoreError::ConditionFailed { .. }) => {
                    tally.load::<OrganizationRecord>(&org_key).await?.ok_or(ServiceError::NotFound("organization"))?.0
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    // Organizations made before the index existed.
    if tally.store.get(&keys::organization_entry(&organization.id)).await?.is_none() {
        let entry = put(keys::organization_entry(&organization.id), &serde_json::json!({}), Condition::None)?;
        tally.store.transact(vec![entry]).await?;
    }
    let Some(key) = api_key else {
        return Ok(Bootstrap { organization, api_key: None });
    };
    let hash = hash_api_key(&key);
    let known = tally.load::<ApiKeyRecord>(&keys::api_key(&hash)).await?;
    match known {
        Some((record, _)) if record.organization_id != organization.id => return Err(ServiceError::Unauthorized),
        Some(_) => {}
        None => {
            let (_, writes) = key_writes(tally, &organization.id, &key, true)?;
            match tally.store.transact(writes).await {
                // The same key given to two processes starting at once.
                Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !keep_previous {
        replace_bootstrap_keys(tally, &organization.id, &hash).await?;
    }
    Ok(Bootstrap { organization, api_key: Some(key) })
}

/// [`bootstrap_with`], replacing earlier bootstrap keys when a key is given.
pub async fn bootstrap(tally: &Tally, name: &str, api_key: Option<String>) -> ServiceResult<Bootstrap> {
    bootstrap_with(tally, name, api_key, false).await
}

/// Revokes the organization's bootstrap keys other than `keep_hash`, and the keys stored before
/// keys had ids (those were all bootstrap keys).
async fn replace_bootstrap_keys(tally: &Tally, org_id: &str, keep_hash: &str) -> ServiceResult<()> {
    for entry in list_api_keys(tally, org_id).await? {
        if entry.bootstrap && entry.hash != keep_hash {
            revoke_api_key(tally, org_id, &entry.id).await?;
        }
    }
    // Keys without an id predate the per-organization lists: found in the global index.
    let mut legacy = Vec::new();
    let mut query = tally_store::Query::partition(keys::API_KEYS);
    loop {
        let page = tally.store.query(&query).await?;
        for item in &page.items {
            let record: ApiKeyRecord = crate::records::decode(&item.value)?;
            if record.organization_id == org_id && record.id.is_none() && item.key.sk != keep_hash {
                legacy.push(Write::Delete { key: item.key.clone(), condition: Condition::Version(item.version) });
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    for chunk in legacy.chunks(tally_store::MAX_TRANSACTION_WRITES) {
        tally.store.transact(chunk.to_vec()).await?;
    }
    Ok(())
}

/// A new organization with its first API key (returned in clear, once).
pub async fn create(tally: &Tally, name: &str) -> ServiceResult<(OrganizationRecord, String)> {
    if name.trim().is_empty() {
        return Err(ServiceError::invalid("name", "value_is_mandatory"));
    }
    if let Err(code) = tally_domain::input_rules::identifier(name) {
        return Err(ServiceError::invalid("name", code));
    }
    let org = new_organization(tally, &new_id(), name);
    let api_key = generate_api_key();
    let (_, mut writes) = key_writes(tally, &org.id, &api_key, false)?;
    writes.push(put(keys::organization(&org.id), &org, Condition::Absent)?);
    writes.push(put(keys::organization_entry(&org.id), &serde_json::json!({}), Condition::Absent)?);
    writes.push(crate::due_index::built_marker_write(&org.id)?);
    tally.store.transact(writes).await?;
    Ok((org, api_key))
}

/// Every organization of the installation.
pub async fn list(tally: &Tally) -> ServiceResult<Vec<OrganizationRecord>> {
    let mut organizations = Vec::new();
    let mut query = tally_store::Query::partition(keys::ORGANIZATIONS);
    loop {
        let page = tally.store.query(&query).await?;
        for item in &page.items {
            if let Some((org, _)) = tally.load::<OrganizationRecord>(&keys::organization(&item.key.sk)).await? {
                organizations.push(org);
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(organizations),
        }
    }
}

/// One organization by id (404 `organization_not_found`).
pub async fn get(tally: &Tally, org_id: &str) -> ServiceResult<OrganizationRecord> {
    Ok(tally
        .load::<OrganizationRecord>(&keys::organization(org_id))
        .await?
        .ok_or(ServiceError::NotFound("organization"))?
        .0)
}

/// A new API key for an organization (returned in clear, once; stored hashed).
pub async fn create_api_key(tally: &Tally, org_id: &str) -> ServiceResult<(ApiKeyEntry, String)> {
    get(tally, org_id).await?;
    let api_key = generate_api_key();
    let (entry, writes) = key_writes(tally, org_id, &api_key, false)?;
    tally.store.transact(writes).await?;
    Ok((entry, api_key))
}

/// The organization's keys, oldest first (ids are time-ordered).
pub async fn list_api_keys(tally: &Tally, org_id: &str) -> ServiceResult<Vec<ApiKeyEntry>> {
    Ok(tally.load_all::<ApiKeyEntry>(keys::api_key_entries(org_id)).await?.into_iter().map(|(e, _)| e).collect())
}

/// Revokes a key: it opens nothing from the next request on (404 `api_key_not_found` when the
/// organization has no such key).
pub async fn revoke_api_key(tally: &Tally, org_id: &str, key_id: &str) -> ServiceResult<ApiKeyEntry> {
    let entry_key = keys::api_key_entry(org_id, key_id);
    let (entry, _) = tally.load::<ApiKeyEntry>(&entry_key).await?.ok_or(ServiceError::NotFound("api_key"))?;
    let writes = vec![
        Write::Delete { key: entry_key, condition: Condition::None },
        Write::Delete { key: keys::api_key(&entry.hash), condition: Condition::None },
    ];
    tally.store.transact(writes).await?;
    Ok(entry)
}

/// Lago's default invoice prefix: the first 3 letters of the name, upper case, and the last 4
/// characters of the organization id.
fn document_number_prefix(name: &str, id: &str) -> String {
    let letters: String = name.chars().filter(char::is_ascii_alphabetic).take(3).collect::<String>().to_uppercase();
    let tail = &id[id.len().saturating_sub(4)..];
    format!("{}-{}", if letters.is_empty() { "ORG".into() } else { letters }, tail.to_uppercase())
}

/// The organization an API key opens (401 otherwise).
pub async fn authenticate(tally: &Tally, api_key: &str) -> ServiceResult<OrganizationRecord> {
    let org_id = organization_of_key(tally, api_key).await?;
    let (org, _) =
        tally.load::<OrganizationRecord>(&keys::organization(&org_id)).await?.ok_or(ServiceError::Unauthorized)?;
    Ok(org)
}

/// The id of the organization an API key opens (401 otherwise): one point read, made on every
/// request so that a revoked key is refused at once, in every process.
pub async fn organization_of_key(tally: &Tally, api_key: &str) -> ServiceResult<String> {
    let (index, _) =
        tally.load::<ApiKeyRecord>(&keys::api_key(&hash_api_key(api_key))).await?.ok_or(ServiceError::Unauthorized)?;
    Ok(index.organization_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_follows_lago() {
        assert_eq!(document_number_prefix("tally", DEFAULT_ORGANIZATION_ID), "TAL-0001");
        assert_eq!(document_number_prefix("42", "abcdef"), "ORG-CDEF");
    }
}
