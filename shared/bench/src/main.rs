//! `tally-bench`: how fast a real `tally serve` ingests, and how fast usage reads stay, as the
//! store grows.
//!
//! 1. Measures the raw embedded-store write rate for the same rows (batches of 100 events with
//!    their usage merges, same concurrency): the ceiling the HTTP path can approach.
//! 2. Starts `tally serve` (a second process) on a fresh data directory, notes its idle RSS,
//!    creates a plan and subscriptions, then sends batches of 100 events over HTTP from
//!    `--connections` connections. At every checkpoint it prints the ingest rate and batch latency
//!    of the last window, then the p99 of `current_usage` (200 calls) under that load and again
//!    with the senders paused, and the server's RSS.
//!
//! Run: `cargo build --release --bin tally --bin tally-bench && target/release/tally-bench`.
//! `tally-bench close` measures the period close instead (see [`close`]).

// Rates and latencies are measurements, not money: floats are right here.
#![allow(clippy::float_arithmetic)]

mod close;

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_store::{EventBatch, LoggedEvent, SqliteStore, Store, UsageMerge};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Ingestion and usage-read benchmark of tally serve")]
struct Args {
    #[command(subcommand)]
    command: Option<Bench>,
    /// Total events to send.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Print figures each time this many more events are stored.
    #[arg(long, default_value_t = 1_000_000)]
    checkpoint: u64,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Subscriptions the events are spread over.
    #[arg(long, default_value_t = 1000)]
    subscriptions: usize,
    /// Events written straight to the store to measure the ceiling (0 to skip).
    #[arg(long, default_value_t = 1_000_000)]
    raw_events: u64,
    /// The tally binary (default: next to this one).
    #[arg(long)]
    tally: Option<PathBuf>,
    /// Data directory (default: a temporary one, removed at the end).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// The period close: `tally bill` timed over N subscriptions with usage.
    Close(close::CloseArgs),
}

const KEY: &str = "bench-key";

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Event `i` as JSON, written straight into `out`: the load generator shares the two cores
/// with the server, so it spends as little as it can per event.
fn write_event(out: &mut String, i: u64, subscriptions: usize) {
    use std::fmt::Write;
    let code = if i.is_multiple_of(2) { "calls" } else { "gb" };
    let region = if i.is_multiple_of(3) { "eu" } else { "us" };
    let (gb, tenths) = ((i % 1000) / 10, (i % 1000) % 10);
    let _ = write!(
        out,
        r#"{{"transaction_id":"tx-{i:012}","external_subscription_id":"sub-{}","code":"{code}","properties":{{"gb":{gb}.{tenths},"region":"{region}"}}}}"#,
        i % subscriptions as u64
    );
}

fn event(i: u64, subscriptions: usize) -> String {
    let mut out = String::with_capacity(160);
    write_event(&mut out, i, subscriptions);
    out
}

/// A batch request body: `{"events":[...]}`.
fn batch_body(events: std::ops::Range<u64>, subscriptions: usize) -> Vec<u8> {
    let mut out = String::with_capacity(16 + 160 * (events.end - events.start) as usize);
    out.push_str(r#"{"events":["#);
    for i in events {
        if !out.ends_with('[') {
            out.push(',');
        }
        write_event(&mut out, i, subscriptions);
    }
    out.push_str("]}");
    out.into_bytes()
}

/// The store's own write rate for the same rows: batches of events with a usage merge each.
async fn raw_store_rate(events: u64, batch: usize, connections: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path())?);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                if first >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                let logged: Vec<LoggedEvent> = (first..first + batch as u64)
                    .map(|i| LoggedEvent {
                        organization_id: "org".into(),
                        external_subscription_id: format!("sub-{}", i % 1000),
                        transaction_id: format!("tx-{i:012}"),
                        code: "calls".into(),
                        timestamp_ms: 1_700_000_000_000 + i as i64,
                        body: event(i, 1000).into_bytes(),
                    })
                    .collect();
                let key = tally_store::Key::new("org#usage#sub", format!("{:04}", first % 1000));
                let merge =
                    UsageMerge { key, merge: Box::new(|current| Ok(current.map(<[u8]>::to_vec).unwrap_or_default())) };
                store.append_events(EventBatch { events: logged, usage: vec![merge], writes: vec![] }).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(binary: &PathBuf, data_dir: &std::path::Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(binary)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--close-every", "3600", "--data-dir"])
        .arg(data_dir)
        .env("TALLY_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let server = Server { child, url: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{}/health", server.url)).send().await.is_ok() {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("tally serve did not start")
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = client.post(url).bearer_auth(KEY).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    Ok(body)
}

async fn setup(client: &reqwest::Client, url: &str, subscriptions: usize) -> anyhow::Result<()> {
    setup_catalog(client, url).await?;
    for i in 0..subscriptions {
        post(
            client,
            &format!("{url}/api/v1/subscriptions"),
            json!({"subscription": {"external_customer_id": format!("cust-{i}"),
            "plan_code": "bench", "external_id": format!("sub-{i}")}}),
        )
        .await?;
    }
    Ok(())
}

/// Two metrics and the plan `bench`: a subscription fee, a standard charge and a graduated one
/// with a filter.
async fn setup_catalog(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let api = |path: &str| format!("{url}/api/v1/{path}");
    post(
        client,
        &api("billable_metrics"),
        json!({"billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}}),
    )
    .await?;
    post(
        client,
        &api("billable_metrics"),
        json!({"billable_metric": {"name": "GB", "code": "gb", "aggregation_type": "sum_agg",
        "field_name": "gb", "filters": [{"key": "region", "values": ["eu", "us"]}]}}),
    )
    .await?;
    post(
        client,
        &api("plans"),
        json!({"plan": {"name": "Bench", "code": "bench", "interval": "monthly", "amount_cents": 1000,
        "amount_currency": "USD", "charges": [
            {"billable_metric_code": "calls", "charge_model": "standard", "properties": {"amount": "0.001"}},
            {"billable_metric_code": "gb", "charge_model": "graduated", "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": 100, "per_unit_amount": "0.1", "flat_amount": "0"},
                {"from_value": 101, "to_value": null, "per_unit_amount": "0.05", "flat_amount": "1"}]},
             "filters": [{"values": {"region": ["eu"]}, "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": null, "per_unit_amount": "0.2", "flat_amount": "0"}]}}]}]}}),
    )
    .await?;
    Ok(())
}

async fn usage_p99(client: &reqwest::Client, url: &str, subscriptions: usize) -> anyhow::Result<f64> {
    let mut h = Histogram::<u64>::new(3)?;
    for i in 0..200 {
        let sub = i % subscriptions;
        let started = Instant::now();
        let response = client
            .get(format!("{url}/api/v1/customers/cust-{sub}/current_usage?external_subscription_id=sub-{sub}"))
            .bearer_auth(KEY)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("current_usage: {}", response.status());
        }
        response.bytes().await?;
        h.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(ms(&h, 0.99))
}

/// [`usage_p99`] from a client of its own (a dashboard, say): its own thread, runtime and
/// connection, so the figure is the server's, not the wait for the senders' busy runtime.
async fn usage_p99_apart(url: &str, subscriptions: usize) -> anyhow::Result<f64> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            usage_p99(&client, &url, subscriptions).await
        })
    })
    .await?
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match &args.tally {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("tally"),
    };
    if let Some(Bench::Close(close)) = &args.command {
        return close::run(&binary, close).await;
    }

    if args.raw_events > 0 {
        let rate = raw_store_rate(args.raw_events, args.batch, args.connections).await?;
        println!(
            "raw store: {rate:.0} events/s ({} events, batches of {}, {} writers, fsync per commit)",
            args.raw_events, args.batch, args.connections
        );
    }

    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let server = start_server(&binary, &data_dir).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id();
    println!("server idle RSS: {:.1} MB", rss_mb(pid).unwrap_or(f64::NAN));

    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    setup(&client, &server.url, args.subscriptions).await?;
    println!("setup: 1 plan, {} subscriptions", args.subscriptions);

    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let window = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    // Senders hold it shared while a request is out; the checkpoint takes it to pause them.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let url = format!("{}/api/v1/events/batch", server.url);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, url, next, stored, window, gate) =
            (client.clone(), url.clone(), next.clone(), stored.clone(), window.clone(), gate.clone());
        let (total, batch, subscriptions) = (args.events, args.batch as u64, args.subscriptions);
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = batch_body(first..(first + batch).min(total), subscriptions);
                let _sending = gate.read().await;
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                if !status.is_success() {
                    bail!("batch failed: {status}");
                }
                window.lock().await.record(started.elapsed().as_micros() as u64)?;
                stored.fetch_add(batch, Ordering::Relaxed);
            }
        }));
    }

    let mut checkpoint = args.checkpoint.min(args.events);
    let mut window_start = (Instant::now(), 0u64);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now_stored = stored.load(Ordering::Relaxed);
        if now_stored >= checkpoint {
            let elapsed = window_start.0.elapsed().as_secs_f64();
            let rate = (now_stored - window_start.1) as f64 / elapsed;
            let latencies = std::mem::replace(&mut *window.lock().await, Histogram::<u64>::new(3)?);
            let loaded = usage_p99_apart(&server.url, args.subscriptions).await?;
            // Again with the senders paused: what the read costs at this size, without the
            // ingest load competing for the two cores.
            let at_rest = {
                let _paused = gate.write().await;
                usage_p99_apart(&server.url, args.subscriptions).await?
            };
            println!(
                "{:>11} events stored: {:>8.0} events/s, batch p50 {:>6.1} ms, p99 {:>6.1} ms; current_usage p99 {:.2} ms under load, {:.2} ms at rest; RSS {:.0} MB",
                now_stored, rate, ms(&latencies, 0.5), ms(&latencies, 0.99), loaded, at_rest, rss_mb(pid).unwrap_or(f64::NAN)
            );
            window_start = (Instant::now(), stored.load(Ordering::Relaxed));
            if checkpoint >= args.events {
                break;
            }
            checkpoint = (checkpoint + args.checkpoint).min(args.events);
        }
        if tasks.iter().all(|t| t.is_finished()) && stored.load(Ordering::Relaxed) < checkpoint {
            break;
        }
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "total: {} events in {:.1} s ({:.0} events/s)",
        args.events,
        started.elapsed().as_secs_f64(),
        args.events as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_batches_are_the_events_they_claim() {
        let body: Value = serde_json::from_slice(&batch_body(122..124, 1000)).expect("valid JSON");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            json!({"transaction_id": "tx-000000000122", "external_subscription_id": "sub-122", "code": "calls",
                   "properties": {"gb": 12.2, "region": "us"}})
        );
        assert_eq!(events[1]["code"], "gb");
        assert_eq!(serde_json::from_str::<Value>(&event(3, 2)).expect("JSON")["properties"]["region"], "eu");
    }
}
