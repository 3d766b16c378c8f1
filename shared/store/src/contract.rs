//! The contract every [`Store`] implementation passes, so the embedded store cannot drift from
//! DynamoDB. Run it with [`run_all`] from an implementation's tests; each check works in its own
//! organization id, so it can share a table with other runs.

use crate::{
    AppendOutcome, Condition, EventBatch, EventFilter, Key, LoggedEvent, Query, Store, StoreError, UsageMerge, Write,
    MAX_TRANSACTION_WRITES,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Refuses transactions DynamoDB would refuse: too many writes, or one item written twice.
pub fn check_transaction_shape(writes: &[Write]) -> Result<(), StoreError> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::TooManyWrites(writes.len()));
    }
    check_distinct_keys(writes)
}

/// Refuses writes that touch one item twice.
pub fn check_distinct_keys(writes: &[Write]) -> Result<(), StoreError> {
    let mut keys = HashSet::with_capacity(writes.len());
    if !writes.iter().all(|w| keys.insert(w.key())) {
        return Err(StoreError::DuplicateKeyInTransaction);
    }
    Ok(())
}

type Check = fn(Arc<dyn Store>, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Every contract check, by name. `org` is a fresh organization id for the check.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("put_get_and_versions", |s, o| Box::pin(put_get_and_versions(s, o))),
        ("conditions_and_atomicity", |s, o| Box::pin(conditions_and_atomicity(s, o))),
        ("transaction_limits", |s, o| Box::pin(transaction_limits(s, o))),
        ("query_prefix_order_and_paging", |s, o| Box::pin(query_prefix_order_and_paging(s, o))),
        ("append_dedupes_exactly", |s, o| Box::pin(append_dedupes_exactly(s, o))),
        ("append_applies_usage_atomically", |s, o| Box::pin(append_applies_usage_atomically(s, o))),
        ("append_guards_and_writes", |s, o| Box::pin(append_guards_and_writes(s, o))),
        ("event_reads", |s, o| Box::pin(event_reads(s, o))),
        ("concurrent_appends_count_once", |s, o| Box::pin(concurrent_appends_count_once(s, o))),
    ]
}

/// Runs every check against `store`, each in its own organization `"{run_id}-{check}"`.
pub async fn run_all(store: Arc<dyn Store>, run_id: &str) {
    for (name, check) in checks() {
        check(store.clone(), format!("{run_id}-{name}")).await;
    }
}

fn key(org: &str, kind: &str, sk: &str) -> Key {
    Key::new(format!("{org}#{kind}"), sk)
}

fn put(key: Key, value: &str, condition: Condition) -> Write {
    Write::Put { key, value: value.as_bytes().to_vec(), condition }
}

fn event(org: &str, sub: &str, tx: &str, ts: i64) -> LoggedEvent {
    LoggedEvent {
        organization_id: org.into(),
        external_subscription_id: sub.into(),
        transaction_id: tx.into(),
        code: "calls".into(),
        timestamp_ms: ts,
        body: format!("{{\"transaction_id\":\"{tx}\"}}").into_bytes(),
    }
}

/// A usage merge that adds `n` to a decimal counter stored as text.
fn add(key: Key, n: u64) -> UsageMerge {
    UsageMerge {
        key,
        merge: Box::new(move |current| {
            let before = match current {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| "not a counter".to_string())?,
            };
            Ok((before + n).to_string().into_bytes())
        }),
    }
}

async fn counter(store: &dyn Store, key: &Key) -> Option<String> {
    let item = store.get(key).await.expect("get");
    item.map(|i| String::from_utf8(i.value).expect("utf-8"))
}

async fn put_get_and_versions(store: Arc<dyn Store>, org: String) {
    let k = key(&org, "metric", "calls");
    assert_eq!(store.get(&k).await.expect("get"), None);
    store.transact(vec![put(k.clone(), "v1", Condition::None)]).await.expect("put");
    let item = store.get(&k).await.expect("get").expect("present");
    assert_eq!((item.value.as_slice(), item.version), (b"v1".as_slice(), 1));
    store.transact(vec![put(k.clone(), "v2", Condition::Version(1))]).await.expect("update at version 1");
    let item = store.get(&k).await.expect("get").expect("present");
    assert_eq!((item.value.as_slice(), item.version), (b"v2".as_slice(), 2));
    store.transact(vec![Write::Delete { key: k.clone(), condition: Condition::Version(2) }]).await.expect("delete");
    assert_eq!(store.get(&k).await.expect("get"), None);
    // other organizations never see it
    store.transact(vec![put(k.clone(), "mine", Condition::None)]).await.expect("put");
    assert_eq!(store.get(&key(&format!("{org}-other"), "metric", "calls")).await.expect("get"), None);
}

async fn conditions_and_atomicity(store: Arc<dyn Store>, org: String) {
    let a = key(&org, "plan", "a");
    let b = key(&org, "plan", "b");
    store.transact(vec![put(a.clone(), "a1", Condition::Absent)]).await.expect("create a");
    // second write's condition fails → the first is not applied either
    let err = store
        .transact(vec![put(b.clone(), "b1", Condition::Absent), put(a.clone(), "a2", Condition::Absent)])
        .await
        .expect_err("a exists");
    assert!(matches!(err, StoreError::ConditionFailed { index: 1 }), "{err:?}");
    assert_eq!(store.get(&b).await.expect("get"), None);
    assert_eq!(counter(store.as_ref(), &a).await.as_deref(), Some("a1"));
    // stale version refused
    let err = store.transact(vec![put(a.clone(), "a3", Condition::Version(7))]).await.expect_err("stale");
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
    // a check guards another write
    let err = store
        .transact(vec![
            Write::Check { key: b.clone(), condition: Condition::Version(1) },
            put(a.clone(), "a4", Condition::None),
        ])
        .await
        .expect_err("b absent");
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }));
    assert_eq!(counter(store.as_ref(), &a).await.as_deref(), Some("a1"));
}

async fn transaction_limits(store: Arc<dyn Store>, org: String) {
    let writes: Vec<Write> =
        (0..=MAX_TRANSACTION_WRITES).map(|i| put(key(&org, "x", &i.to_string()), "v", Condition::None)).collect();
    assert!(matches!(store.transact(writes).await, Err(StoreError::TooManyWrites(101))));
    let k = key(&org, "x", "same");
    let twice = vec![put(k.clone(), "1", Condition::None), put(k.clone(), "2", Condition::None)];
    assert!(matches!(store.transact(twice).await, Err(StoreError::DuplicateKeyInTransaction)));
    assert_eq!(store.get(&k).await.expect("get"), None);
}

async fn query_prefix_order_and_paging(store: Arc<dyn Store>, org: String) {
    let pk = format!("{org}#usage");
    let sks = ["2024-05#b", "2024-05#a", "2024-05#c", "2024-06#a", "2024-04#z"];
    let writes = sks.iter().map(|sk| put(Key::new(pk.clone(), *sk), sk, Condition::None)).collect();
    store.transact(writes).await.expect("put");
    let all = store.query(&Query::partition(pk.clone())).await.expect("query");
    let got: Vec<_> = all.items.iter().map(|i| i.key.sk.as_str()).collect();
    assert_eq!(got, ["2024-04#z", "2024-05#a", "2024-05#b", "2024-05#c", "2024-06#a"]);
    assert_eq!(all.next, None);

    let may = Query { limit: 2, ..Query::partition(pk.clone()).prefix("2024-05#") };
    let first = store.query(&may).await.expect("page 1");
    assert_eq!(first.items.iter().map(|i| i.key.sk.as_str()).collect::<Vec<_>>(), ["2024-05#a", "2024-05#b"]);
    let second = store.query(&Query { after: first.next.clone(), ..may.clone() }).await.expect("page 2");
    assert_eq!(second.items.iter().map(|i| i.key.sk.as_str()).collect::<Vec<_>>(), ["2024-05#c"]);
    assert_eq!(second.next, None);

    let newest = store.query(&Query { descending: true, limit: 1, ..may }).await.expect("desc");
    assert_eq!(newest.items[0].key.sk, "2024-05#c");
    let empty = store.query(&Query::partition(pk).prefix("2023")).await.expect("none");
    assert!(empty.items.is_empty());
}

async fn append_dedupes_exactly(store: Arc<dyn Store>, org: String) {
    let batch = EventBatch {
        writes: vec![],
        events: vec![event(&org, "sub-1", "t1", 10), event(&org, "sub-1", "t2", 20)],
        usage: vec![],
    };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
    // a batch repeating t2 is refused whole: t3 is not stored either
    let batch = EventBatch {
        writes: vec![],
        events: vec![event(&org, "sub-1", "t3", 30), event(&org, "sub-1", "t2", 20)],
        usage: vec![],
    };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Duplicates(vec![1]));
    assert!(store.events_by_transaction(&org, "t3").await.expect("read").is_empty());
    // the same transaction id on another subscription is another event
    let batch = EventBatch { writes: vec![], events: vec![event(&org, "sub-2", "t1", 10)], usage: vec![] };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
    assert_eq!(store.events_by_transaction(&org, "t1").await.expect("read").len(), 2);
    // repeats inside one batch
    let batch = EventBatch {
        writes: vec![],
        events: vec![event(&org, "sub-3", "x", 1), event(&org, "sub-3", "x", 2)],
        usage: vec![],
    };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Duplicates(vec![1]));
    // another organization's identical event is its own
    let other = format!("{org}-other");
    let batch = EventBatch { writes: vec![], events: vec![event(&other, "sub-1", "t1", 10)], usage: vec![] };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
}

async fn append_applies_usage_atomically(store: Arc<dyn Store>, org: String) {
    let state = key(&org, "usage", "sub-1#calls");
    let batch =
        EventBatch { writes: vec![], events: vec![event(&org, "sub-1", "u1", 1)], usage: vec![add(state.clone(), 1)] };
    store.append_events(batch).await.expect("append");
    let batch = EventBatch {
        writes: vec![],
        events: vec![event(&org, "sub-1", "u2", 2), event(&org, "sub-1", "u3", 3)],
        usage: vec![add(state.clone(), 2)],
    };
    store.append_events(batch).await.expect("append");
    assert_eq!(counter(store.as_ref(), &state).await.as_deref(), Some("3"));
    // a refused batch leaves the state alone
    let batch =
        EventBatch { writes: vec![], events: vec![event(&org, "sub-1", "u1", 1)], usage: vec![add(state.clone(), 1)] };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Duplicates(vec![0]));
    assert_eq!(counter(store.as_ref(), &state).await.as_deref(), Some("3"));
    // a failing merge writes nothing, not even the events
    let broken =
        UsageMerge { key: state.clone(), merge: Box::new(|_| Err(crate::MergeError::Invalid("corrupt".into()))) };
    let batch = EventBatch { writes: vec![], events: vec![event(&org, "sub-1", "u4", 4)], usage: vec![broken] };
    assert!(matches!(store.append_events(batch).await, Err(StoreError::Merge(_))));
    assert!(store.events_by_transaction(&org, "u4").await.expect("read").is_empty());
    assert_eq!(counter(store.as_ref(), &state).await.as_deref(), Some("3"));
}

async fn event_reads(store: Arc<dyn Store>, org: String) {
    let events = vec![
        event(&org, "sub-1", "a", 300),
        event(&org, "sub-1", "b", 100),
        event(&org, "sub-2", "c", 200),
        LoggedEvent { code: "storage".into(), ..event(&org, "sub-1", "d", 200) },
    ];
    store.append_events(EventBatch { events, usage: vec![], writes: vec![] }).await.expect("append");
    let (newest, total) = store.list_events(&org, &EventFilter::default(), 0, 2).await.expect("list");
    assert_eq!(total, 4);
    assert_eq!(newest.iter().map(|e| e.transaction_id.as_str()).collect::<Vec<_>>(), ["d", "c"]);
    let filter = EventFilter {
        code: Some("calls".into()),
        external_subscription_id: Some("sub-1".into()),
        ..Default::default()
    };
    let (calls, total) = store.list_events(&org, &filter, 0, 10).await.expect("list");
    assert_eq!((total, calls.len()), (2, 2));
    let found = store.events_by_transaction(&org, "c").await.expect("read");
    assert_eq!(found, vec![event(&org, "sub-2", "c", 200)]);
    assert!(store.events_by_transaction(&format!("{org}-other"), "c").await.expect("read").is_empty());
    // Existence by (subscription, transaction): same transaction id under another subscription
    // is another event.
    let asked: Vec<(String, String)> = [("sub-1", "a"), ("sub-2", "a"), ("sub-2", "c"), ("sub-1", "zz")]
        .iter()
        .map(|(s, t)| (s.to_string(), t.to_string()))
        .collect();
    assert_eq!(store.events_exist(&org, &asked).await.expect("exist"), [true, false, true, false]);
    // A later batch lists before an earlier one (arrival times may be kept to the millisecond).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let later = vec![event(&org, "sub-3", "e", 50)];
    store.append_events(EventBatch { events: later, usage: vec![], writes: vec![] }).await.expect("append");
    let (newest, total) = store.list_events(&org, &EventFilter::default(), 0, 1).await.expect("list");
    assert_eq!((total, newest[0].transaction_id.as_str()), (5, "e"));
}

async fn concurrent_appends_count_once(store: Arc<dyn Store>, org: String) {
    // 16 tasks deliver the same 20 events (a retrying client, a redelivering queue) and 16 more
    // tasks each add their own event: exactly 20 + 16 events count.
    let state = key(&org, "usage", "sub-1#calls");
    let mut tasks = Vec::new();
    for worker in 0..32u64 {
        let (store, org, state) = (store.clone(), org.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let mut appended = 0;
            if worker < 16 {
                for i in 0..20 {
                    let batch = EventBatch {
                        writes: vec![],
                        events: vec![event(&org, "sub-1", &format!("same-{i}"), i)],
                        usage: vec![add(state.clone(), 1)],
                    };
                    if store.append_events(batch).await.expect("append") == AppendOutcome::Appended {
                        appended += 1;
                    }
                }
            } else {
                let batch = EventBatch {
                    writes: vec![],
                    events: vec![event(&org, "sub-1", &format!("own-{worker}"), 5)],
                    usage: vec![add(state.clone(), 1)],
                };
                assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
                appended += 1;
            }
            appended
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await.expect("task");
    }
    assert_eq!(appended, 36);
    assert_eq!(counter(store.as_ref(), &state).await.as_deref(), Some("36"));
}

async fn append_guards_and_writes(store: Arc<dyn Store>, org: String) {
    // A guard on an item read earlier: the batch commits only if the item is unchanged.
    let plan = key(&org, "plan", "p");
    store.transact(vec![put(plan.clone(), "v1", Condition::None)]).await.expect("put");
    let parked = key(&org, "pending", "g1");
    let batch = EventBatch {
        events: vec![event(&org, "sub-1", "g1", 1)],
        usage: vec![],
        writes: vec![
            Write::Check { key: plan.clone(), condition: Condition::Version(1) },
            put(parked.clone(), "waiting", Condition::None),
        ],
    };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
    assert_eq!(counter(store.as_ref(), &parked).await.as_deref(), Some("waiting"));
    // the plan changes: a batch guarded by the old version is refused whole
    store.transact(vec![put(plan.clone(), "v2", Condition::Version(1))]).await.expect("update");
    let state = key(&org, "usage", "g");
    let batch = EventBatch {
        events: vec![event(&org, "sub-1", "g2", 2)],
        usage: vec![add(state.clone(), 1)],
        writes: vec![Write::Check { key: plan, condition: Condition::Version(1) }],
    };
    let err = store.append_events(batch).await.expect_err("stale guard");
    assert!(matches!(err, StoreError::ConditionFailed { index: 0 }), "{err:?}");
    assert!(store.events_by_transaction(&org, "g2").await.expect("read").is_empty());
    assert_eq!(store.get(&state).await.expect("get"), None);
    // and a batch of merges and writes alone (no new event) commits too
    let batch = EventBatch {
        events: vec![],
        usage: vec![add(state.clone(), 5)],
        writes: vec![Write::Delete { key: parked.clone(), condition: Condition::Version(1) }],
    };
    assert_eq!(store.append_events(batch).await.expect("append"), AppendOutcome::Appended);
    assert_eq!(counter(store.as_ref(), &state).await.as_deref(), Some("5"));
    assert_eq!(store.get(&parked).await.expect("get"), None);
}
