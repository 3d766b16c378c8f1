//! `tally organizations …` and `tally api-keys …`: tenants and their keys, on the same data as
//! a running `tally serve` (embedded or AWS), as `tally bill` is.

use super::{open, ApiKeysCommand, OrganizationsCommand, Storage, ORGANIZATION_NAME};
use std::sync::Arc;
use tally_service::{organizations, SystemClock, Tally};

async fn tally(storage: &Storage) -> anyhow::Result<Tally> {
    let tally = open(storage, Arc::new(SystemClock)).await?;
    // The default organization exists on any installation (no key is made or printed here).
    organizations::bootstrap(&tally, ORGANIZATION_NAME, None).await?;
    Ok(tally)
}

pub(super) async fn organizations(command: OrganizationsCommand) -> anyhow::Result<()> {
    match command {
        OrganizationsCommand::Create { name, storage } => {
            let tally = tally(&storage).await?;
            let (org, key) = organizations::create(&tally, &name).await?;
            println!("organization: {}", org.id);
            println!("API key: {key}");
        }
        OrganizationsCommand::List { storage } => {
            let tally = tally(&storage).await?;
            for org in organizations::list(&tally).await? {
                println!("{}  {}", org.id, org.name);
            }
        }
    }
    Ok(())
}

pub(super) async fn api_keys(command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Create { organization, storage } => {
            let tally = tally(&storage).await?;
            let (_, key) = organizations::create_api_key(&tally, &organization).await?;
            println!("API key: {key}");
        }
        ApiKeysCommand::List { organization, storage } => {
            let tally = tally(&storage).await?;
            organizations::get(&tally, &organization).await?;
            for entry in organizations::list_api_keys(&tally, &organization).await? {
                let origin = if entry.bootstrap { "  (TALLY_API_KEY or first start)" } else { "" };
                println!("{}  {}…  created {}{origin}", entry.id, entry.prefix, entry.created_at.to_rfc3339());
            }
        }
        ApiKeysCommand::Revoke { organization, key_id, storage } => {
            let tally = tally(&storage).await?;
            let entry = organizations::revoke_api_key(&tally, &organization, &key_id).await?;
            println!("revoked {} ({}…)", entry.id, entry.prefix);
        }
    }
    Ok(())
}
