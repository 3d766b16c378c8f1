//! The organization and its API key: created on first start, found again from the key.

use crate::records::{ApiKeyRecord, OrganizationRecord};
use crate::{keys, put, ServiceError, ServiceResult, Tally};
use sha2::{Digest, Sha256};
use tally_store::{Condition, StoreError};

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

/// Makes sure the default organization exists and that `api_key` (if given) opens it. Without a
/// key, the first start generates one and returns it; later starts return `None` (the key is only
/// stored hashed).
pub async fn bootstrap(tally: &Tally, name: &str, api_key: Option<String>) -> ServiceResult<Bootstrap> {
    let org_key = keys::organization(DEFAULT_ORGANIZATION_ID);
    let existing = tally.load::<OrganizationRecord>(&org_key).await?;
    let organization = match existing {
        Some((org, _)) => org,
        None => {
            let org = OrganizationRecord {
                id: DEFAULT_ORGANIZATION_ID.to_owned(),
                name: name.to_owned(),
                created_at: tally.now(),
                default_currency: "USD".into(),
                timezone: "UTC".into(),
                invoice_grace_period: 0,
                net_payment_term: 0,
                document_number_prefix: document_number_prefix(name, DEFAULT_ORGANIZATION_ID),
                customers_count: 0,
            };
            let api_key = api_key.clone().unwrap_or_else(generate_api_key);
            let writes = vec![
                put(org_key.clone(), &org, Condition::Absent)?,
                put(
                    keys::api_key(&hash_api_key(&api_key)),
                    &ApiKeyRecord { organization_id: org.id.clone(), created_at: tally.now() },
                    Condition::None,
                )?,
            ];
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
    match api_key {
        Some(key) => {
            let record = ApiKeyRecord { organization_id: organization.id.clone(), created_at: tally.now() };
            tally.store.transact(vec![put(keys::api_key(&hash_api_key(&key)), &record, Condition::None)?]).await?;
            Ok(Bootstrap { organization, api_key: Some(key) })
        }
        None => Ok(Bootstrap { organization, api_key: None }),
    }
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
    let (index, _) =
        tally.load::<ApiKeyRecord>(&keys::api_key(&hash_api_key(api_key))).await?.ok_or(ServiceError::Unauthorized)?;
    let (org, _) = tally
        .load::<OrganizationRecord>(&keys::organization(&index.organization_id))
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    Ok(org)
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
