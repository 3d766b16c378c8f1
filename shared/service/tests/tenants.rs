//! API keys as `tally serve` and `tally api-keys` manage them (issue 8, tenants and keys).

use std::sync::Arc;
use tally_service::records::ApiKeyRecord;
use tally_service::{keys, organizations, FixedClock, ServiceError, Tally};
use tally_store::{Condition, SqliteStore, Write};

fn tally(dir: &std::path::Path) -> Tally {
    let store = Arc::new(SqliteStore::open(dir).expect("store"));
    Tally::new(store, Arc::new(FixedClock::new("2024-04-05T00:00:00Z".parse().expect("instant"))))
}

async fn opens(tally: &Tally, key: &str) -> bool {
    match organizations::authenticate(tally, key).await {
        Ok(_) => true,
        Err(ServiceError::Unauthorized) => false,
        Err(e) => panic!("authenticate: {e}"),
    }
}

#[tokio::test]
async fn a_new_tally_api_key_replaces_the_previous_one_unless_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let tally = tally(dir.path());
    let org = organizations::bootstrap(&tally, "Acme", Some("first".into())).await.expect("boot").organization;
    let (_, made) = organizations::create_api_key(&tally, &org.id).await.expect("key");
    assert!(opens(&tally, "first").await);
    // A restart with another TALLY_API_KEY: the first no longer opens anything.
    organizations::bootstrap(&tally, "Acme", Some("second".into())).await.expect("boot");
    assert!(!opens(&tally, "first").await);
    assert!(opens(&tally, "second").await);
    // Unless asked to keep the previous ones.
    organizations::bootstrap_with(&tally, "Acme", Some("third".into()), true).await.expect("boot");
    assert!(opens(&tally, "second").await && opens(&tally, "third").await);
    // Keys made with `tally api-keys create` are never replaced.
    assert!(opens(&tally, &made).await);
    // A restart without a key changes nothing.
    organizations::bootstrap(&tally, "Acme", None).await.expect("boot");
    assert!(opens(&tally, "third").await && opens(&tally, &made).await);
    let listed = organizations::list_api_keys(&tally, &org.id).await.expect("list");
    assert_eq!(listed.len(), 3); // second, third, made
    assert!(listed.iter().all(|k| k.prefix.len() <= 8));
}

#[tokio::test]
async fn keys_stored_before_keys_had_ids_are_replaced_too() {
    let dir = tempfile::tempdir().expect("dir");
    let tally = tally(dir.path());
    let org = organizations::bootstrap(&tally, "Acme", Some("new".into())).await.expect("boot").organization;
    // A key as earlier versions stored it: the global index only.
    let legacy = ApiKeyRecord { organization_id: org.id.clone(), created_at: tally.now(), id: None };
    let write = Write::Put {
        key: keys::api_key(&organizations::hash_api_key("legacy")),
        value: serde_json::to_vec(&legacy).expect("json"),
        condition: Condition::None,
    };
    tally.store.transact(vec![write]).await.expect("legacy key");
    assert!(opens(&tally, "legacy").await);
    organizations::bootstrap(&tally, "Acme", Some("newer".into())).await.expect("boot");
    assert!(!opens(&tally, "legacy").await && !opens(&tally, "new").await);
    assert!(opens(&tally, "newer").await);
}

#[tokio::test]
async fn organizations_are_listed_and_their_keys_revoked() {
    let dir = tempfile::tempdir().expect("dir");
    let tally = tally(dir.path());
    organizations::bootstrap(&tally, "Acme", Some("a".into())).await.expect("boot");
    let (beta, beta_key) = organizations::create(&tally, "Beta").await.expect("create");
    let all = organizations::list(&tally).await.expect("list");
    assert_eq!(all.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), vec!["Acme", "Beta"]);
    assert_eq!(organizations::authenticate(&tally, &beta_key).await.expect("auth").id, beta.id);
    let entry = organizations::list_api_keys(&tally, &beta.id).await.expect("keys").remove(0);
    // Another organization cannot revoke it.
    let acme = &all[0];
    assert!(matches!(
        organizations::revoke_api_key(&tally, &acme.id, &entry.id).await,
        Err(ServiceError::NotFound("api_key"))
    ));
    organizations::revoke_api_key(&tally, &beta.id, &entry.id).await.expect("revoke");
    assert!(!opens(&tally, &beta_key).await);
    assert!(matches!(organizations::create_api_key(&tally, "nope").await, Err(ServiceError::NotFound(_))));
}
