//! `tally-bench close`: how fast `tally bill` closes a period, and what a close with nothing due
//! costs, as the number of subscriptions grows.
//!
//! For each N: a fresh data directory, `tally serve` (a second process) with a plan of a
//! subscription fee and two usage charges, N subscriptions created over HTTP and
//! `--events-per-subscription` events each; then the server stops and `tally bill` runs three
//! times as a scheduler would: mid-period (nothing due), at the period's end (N invoices), and
//! again at the same instant (nothing due: every invoice exists). Each run prints the close's
//! own time (from `tally bill`'s stderr) and the whole process's (start, opening the store,
//! which loads the dedupe filter of every stored event, then the close).

use crate::{post, setup_catalog, start_server};
use anyhow::{bail, Context};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct CloseArgs {
    /// Subscription counts to measure, one fresh installation each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    subscriptions: Vec<usize>,
    /// Usage events per subscription before the close.
    #[arg(long, default_value_t = 3)]
    events_per_subscription: usize,
    /// Concurrent HTTP connections for the setup.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

/// One timed `tally bill`: the whole process, and the close inside it (from its stderr).
struct Billed {
    process_s: f64,
    close_ms: f64,
    summary: String,
}

/// Runs `tally bill --at` on the data directory.
fn bill(binary: &Path, data_dir: &Path, at: &str) -> anyhow::Result<Billed> {
    let started = Instant::now();
    let output = Command::new(binary)
        .args(["bill", "--at", at, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("running {} bill", binary.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("tally bill failed: {summary} {stderr}");
    }
    let close_ms = stderr
        .lines()
        .find_map(|line| line.strip_prefix("closed in ")?.split_whitespace().next()?.parse::<f64>().ok())
        .map(|micros| micros / 1000.0)
        .context("tally bill did not say how long the close took")?;
    Ok(Billed { process_s: seconds, close_ms, summary })
}

/// The number after `issued` in `tally bill`'s summary line.
fn issued(summary: &str) -> Option<usize> {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words.windows(2).find(|w| w[0] == "issued").and_then(|w| w[1].parse().ok())
}

/// Runs `work(i)` for every `i < n` from `connections` concurrent tasks.
async fn concurrently<F, Fut>(n: usize, connections: usize, work: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, work) = (next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                work(i).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The subscriptions, then their events.
async fn populate(url: &str, subscriptions: usize, events_each: usize, connections: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    setup_catalog(&client, url).await?;
    let (c, u) = (client.clone(), url.to_owned());
    concurrently(subscriptions, connections, move |i| {
        let (client, url) = (c.clone(), u.clone());
        async move {
            let subscription = json!({"subscription": {"external_customer_id": format!("cust-{i}"),
                "plan_code": "bench", "external_id": format!("sub-{i}")}});
            post(&client, &format!("{url}/api/v1/subscriptions"), subscription).await.map(|_| ())
        }
    })
    .await?;
    let (c, u) = (client.clone(), url.to_owned());
    concurrently(subscriptions, connections, move |i| {
        let (client, url) = (c.clone(), u.clone());
        async move {
            let events: Vec<_> = (0..events_each)
                .map(|e| {
                    json!({"transaction_id": format!("tx-{i}-{e}"), "external_subscription_id": format!("sub-{i}"),
                    "code": if e % 2 == 0 { "calls" } else { "gb" },
                    "properties": {"gb": e + 1, "region": if e % 3 == 0 { "eu" } else { "us" }}})
                })
                .collect();
            post(&client, &format!("{url}/api/v1/events/batch"), json!({"events": events})).await.map(|_| ())
        }
    })
    .await
}

pub async fn run(binary: &PathBuf, args: &CloseArgs) -> anyhow::Result<()> {
    use chrono::{Datelike, TimeZone, Utc};
    let now = Utc::now();
    let (year, month) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    let period_end = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().context("next month")?;
    let mid_period = now.to_rfc3339();
    let period_end = period_end.to_rfc3339();
    println!("| subscriptions | close at period end | invoices/s | close, nothing due (mid-period) | close, nothing due (all billed) |");
    println!("|---|---|---|---|---|");
    for &n in &args.subscriptions {
        let temp = tempfile::tempdir()?;
        let started = Instant::now();
        {
            let mut server = start_server(binary, temp.path()).await?;
            populate(&server.url, n, args.events_per_subscription, args.connections).await?;
            // Stopped as an operator would (Ctrl-C), so the store closes cleanly.
            Command::new("kill").args(["-INT", &server.child.id().to_string()]).status()?;
            server.child.wait()?;
        }
        eprintln!(
            "setup: {n} subscriptions, {} events each, in {:.0} s",
            args.events_per_subscription,
            started.elapsed().as_secs_f64()
        );
        let idle = bill(binary, temp.path(), &mid_period)?;
        let close = bill(binary, temp.path(), &period_end)?;
        if issued(&close.summary) != Some(n) {
            bail!("expected {n} invoices: {}", close.summary);
        }
        let again = bill(binary, temp.path(), &period_end)?;
        if issued(&again.summary) != Some(0) {
            bail!("a second close issued invoices: {}", again.summary);
        }
        // The close itself, then the whole `tally bill` process (which opens the store first).
        println!(
            "| {n} | {:.2} s ({:.2} s process) | {:.0} | {:.1} ms ({:.0} ms process) | {:.1} ms ({:.0} ms process) |",
            close.close_ms / 1000.0,
            close.process_s,
            n as f64 / (close.close_ms / 1000.0),
            idle.close_ms,
            idle.process_s * 1000.0,
            again.close_ms,
            again.process_s * 1000.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_issued_count_of_the_summary() {
        let line = "activated 0 subscription(s), terminated 0, issued 12 invoice(s), finalized 0 draft(s)";
        assert_eq!(super::issued(line), Some(12));
    }
}
