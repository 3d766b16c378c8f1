//! The seeded auditor's kill -9 half: a real `tally serve` on the embedded store is killed with
//! SIGKILL at random instants while clients send events, restarted, and the clients resend
//! what got no answer (as Lago's clients retry); then `tally bill` is killed mid-close a few
//! times and run again. Checked against what the clients were told: every acknowledged event
//! is listed and billed once, each subscription period has exactly one invoice.
//! `TALLY_AUDIT_SEEDS` picks seeds (default 1), e.g. `TALLY_AUDIT_SEEDS=1-20`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_service::{events, invoices, organizations, FixedClock, Tally};

const KEY: &str = "kill-nine-key";
const SUBSCRIPTIONS: usize = 4;

fn tally_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tally")
}

fn serve(dir: &Path, port: u16) -> Child {
    Command::new(tally_bin())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--close-every", "3600", "--data-dir"])
        .arg(dir)
        .env("TALLY_API_KEY", KEY)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tally serve")
}

async fn healthy(client: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if let Ok(response) = client.get(format!("{url}/health")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tally serve did not become healthy");
}

async fn post(client: &reqwest::Client, url: &str, path: &str, body: Value) -> Result<(u16, String), reqwest::Error> {
    let response = client.post(format!("{url}/api/v1/{path}")).bearer_auth(KEY).json(&body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

type Batch = Vec<(usize, String)>; // (subscription index, transaction id)

fn batch_body(batch: &Batch) -> Value {
    let events: Vec<Value> = batch
        .iter()
        .map(|(sub, tx)| json!({"transaction_id": tx, "external_subscription_id": format!("sub-{sub}"), "code": "calls"}))
        .collect();
    json!({"events": events})
}

/// Whether the server took the batch: yes (2xx, or 422 because an earlier send stored it, a
/// batch being all or nothing), no answer (`None`), or a refusal (a bug here).
fn taken(answer: &Result<(u16, String), reqwest::Error>) -> Option<bool> {
    match answer {
        Ok((status, _)) if (200..300).contains(status) => Some(true),
        Ok((422, body)) if body.contains("value_already_exist") => Some(true),
        Ok((status, _)) if *status >= 500 => None,
        Ok(_) => Some(false),
        Err(_) => None,
    }
}

async fn run_seed(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let mut server = serve(dir.path(), port);
    healthy(&client, &url).await;
    let metric = json!({"billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}});
    assert_eq!(post(&client, &url, "billable_metrics", metric).await.expect("metric").0, 200);
    let plan = json!({"plan": {"name": "P", "code": "p", "interval": "monthly", "amount_cents": 1000,
        "amount_currency": "USD", "charges": [{"billable_metric_code": "calls", "charge_model": "standard",
        "properties": {"amount": "1"}}]}});
    assert_eq!(post(&client, &url, "plans", plan).await.expect("plan").0, 200);
    for i in 0..SUBSCRIPTIONS {
        let body = json!({"subscription": {"external_customer_id": format!("cust-{i}"), "plan_code": "p",
            "external_id": format!("sub-{i}")}});
        assert_eq!(post(&client, &url, "subscriptions", body).await.expect("subscription").0, 200);
    }

    let acknowledged: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut unanswered: Vec<Batch> = Vec::new();
    let mut next_tx = 0;
    for round in 0..4 {
        if round > 0 {
            server = serve(dir.path(), port);
            healthy(&client, &url).await;
        }
        // What got no answer before the last kill is sent again first.
        for batch in std::mem::take(&mut unanswered) {
            match taken(&post(&client, &url, "events/batch", batch_body(&batch)).await) {
                Some(true) => acknowledged.lock().expect("lock").extend(batch),
                other => panic!("seed {seed}: a resent batch was not taken: {other:?}"),
            }
        }
        // Four clients send batches of 10 until the server dies under them.
        let mut senders = Vec::new();
        let pending: Arc<Mutex<Vec<Batch>>> = Arc::default();
        for client_index in 0..4u64 {
            let batches: Vec<Batch> = (0..200)
                .map(|_| {
                    (0..10)
                        .map(|_| {
                            next_tx += 1;
                            (rng.random_range(0..SUBSCRIPTIONS), format!("tx-{client_index}-{next_tx}"))
                        })
                        .collect()
                })
                .collect();
            let (client, url, acknowledged, pending) =
                (client.clone(), url.clone(), acknowledged.clone(), pending.clone());
            senders.push(tokio::spawn(async move {
                let mut batches = batches.into_iter();
                for batch in batches.by_ref() {
                    match taken(&post(&client, &url, "events/batch", batch_body(&batch)).await) {
                        Some(true) => acknowledged.lock().expect("lock").extend(batch),
                        None => {
                            pending.lock().expect("lock").push(batch);
                            break;
                        }
                        Some(false) => panic!("a new batch was refused"),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        server.kill().expect("kill -9");
        server.wait().expect("reaped");
        for sender in senders {
            sender.await.expect("sender");
        }
        unanswered.extend(std::mem::take(&mut *pending.lock().expect("lock")));
    }
    server = serve(dir.path(), port);
    healthy(&client, &url).await;
    for batch in std::mem::take(&mut unanswered) {
        assert_eq!(taken(&post(&client, &url, "events/batch", batch_body(&batch)).await), Some(true));
        acknowledged.lock().expect("lock").extend(batch);
    }
    server.kill().expect("kill -9");
    server.wait().expect("reaped");

    // The close, killed mid-run a few times, then run to the end: after the period that holds
    // today and the next one have both ended.
    let now = chrono::Utc::now();
    use chrono::{Datelike, TimeZone};
    let (year, month) =
        if now.month() >= 11 { (now.year() + 1, now.month() - 10) } else { (now.year(), now.month() + 2) };
    let at = chrono::Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().expect("instant");
    let bill = || {
        Command::new(tally_bin())
            .args(["bill", "--at", &at.to_rfc3339(), "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tally bill")
    };
    for _ in 0..3 {
        let mut closing = bill();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        let _ = closing.kill();
        closing.wait().expect("reaped");
    }
    assert!(bill().wait().expect("bill").success(), "seed {seed}: the close completes");

    // What the store holds, read in-process now that no tally runs on it.
    let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
    let tally = Tally::new(store, Arc::new(FixedClock::new(at)));
    let org = organizations::bootstrap(&tally, "tally", None).await.expect("org").organization;
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let listed = events::list(&tally, &org, &Default::default(), Default::default()).await.expect("events");
    assert_eq!(listed.total_count, acknowledged.len(), "seed {seed}: every acknowledged event stored once");
    let mut per_sub: HashMap<String, u64> = HashMap::new();
    for (sub, _) in &acknowledged {
        *per_sub.entry(format!("sub-{sub}")).or_default() += 1;
    }
    let all = invoices::list(&tally, &org, &Default::default()).await.expect("invoices");
    for i in 0..SUBSCRIPTIONS {
        let id = format!("sub-{i}");
        let mine: Vec<_> = all.iter().filter(|inv| inv.subscription.external_id == id).collect();
        let mut periods: Vec<_> = mine.iter().map(|inv| inv.subscription.charges_from_datetime).collect();
        periods.sort();
        periods.dedup();
        assert_eq!(periods.len(), mine.len(), "seed {seed}: {id}: one invoice per period");
        assert_eq!(mine.len(), 2, "seed {seed}: {id}: this period and the next");
        let units: rust_decimal::Decimal =
            mine.iter().flat_map(|inv| &inv.fees).filter(|f| f.fee_type == "charge").map(|f| f.units).sum();
        assert_eq!(
            units,
            rust_decimal::Decimal::from(per_sub.get(&id).copied().unwrap_or(0)),
            "seed {seed}: {id}: billed units are the acknowledged events"
        );
    }
    println!("seed {seed}: {} events acknowledged, {} invoices", acknowledged.len(), all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_during_ingest_and_close_loses_and_doubles_nothing() {
    let spec = std::env::var("TALLY_AUDIT_SEEDS").unwrap_or_else(|_| "1".into());
    let seeds: Vec<u64> = match spec.split_once('-') {
        Some((a, b)) => (a.parse().unwrap_or(1)..=b.parse().unwrap_or(0)).collect(),
        None => spec.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
    };
    for seed in seeds {
        run_seed(seed).await;
    }
}
