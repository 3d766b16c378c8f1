//! `tally`: a usage-based billing engine that speaks Lago's API.
//!
//! - `tally serve`: the API and the period-close scheduler, on the embedded store.
//! - `tally bill`: runs the period close as of an instant, even while a server runs on the data.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tally_service::{organizations, period_close, Clock, FixedClock, SystemClock, Tally};
use tally_store::SqliteStore;

#[derive(Parser)]
#[command(name = "tally", version, about = "Usage-based billing engine with Lago's REST API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the API on the embedded store, with the period close running every minute.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000", env = "TALLY_ADDR")]
        addr: SocketAddr,
        /// Where the embedded store keeps its data.
        #[arg(long, default_value = "tally-data", env = "TALLY_DATA_DIR")]
        data_dir: PathBuf,
        /// Seconds between two runs of the period close.
        #[arg(long, default_value_t = 60)]
        close_every: u64,
    },
    /// Invoice every period that has ended by `--at` (default: now), catching up on missed ones.
    /// Safe to run twice, and while `tally serve` runs on the same data.
    Bill {
        /// The instant to close as of (RFC 3339, e.g. 2024-06-01T00:00:00Z).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[arg(long, default_value = "tally-data", env = "TALLY_DATA_DIR")]
        data_dir: PathBuf,
    },
}

const ORGANIZATION_NAME: &str = "tally";

// The API allocates many small JSON values per event; glibc's allocator spent a fifth of the
// ingest CPU on them, mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { addr, data_dir, close_every } => serve(addr, &data_dir, close_every).await,
        Command::Bill { at, data_dir } => bill(at, &data_dir).await,
    }
}

fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Tally> {
    let store = SqliteStore::open(data_dir).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Tally::new(Arc::new(store), clock))
}

/// The API key: `TALLY_API_KEY` if set, else the one generated on first start (kept in the data
/// directory so later starts can print it again; the store itself keeps only its hash).
async fn api_key(tally: &Tally, data_dir: &Path) -> anyhow::Result<(tally_service::Org, String)> {
    let key_file = data_dir.join("api_key");
    let given = std::env::var("TALLY_API_KEY").ok().filter(|k| !k.is_empty());
    let remembered = std::fs::read_to_string(&key_file).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
    let bootstrap = organizations::bootstrap(tally, ORGANIZATION_NAME, given.clone().or(remembered.clone())).await?;
    let key = bootstrap.api_key.or(remembered).context("no API key: set TALLY_API_KEY")?;
    if given.is_none() {
        std::fs::write(&key_file, &key).with_context(|| format!("writing {}", key_file.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok((bootstrap.organization, key))
}

async fn serve(addr: SocketAddr, data_dir: &Path, close_every: u64) -> anyhow::Result<()> {
    let tally = open(data_dir, Arc::new(SystemClock))?;
    let (org, key) = api_key(&tally, data_dir).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    println!("tally listening on http://{local}");
    println!("API key: {key}");
    println!("data directory: {}", data_dir.display());
    tracing::info!(%local, data_dir = %data_dir.display(), "tally serving");

    let closer = tally.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(close_every.max(1)));
        loop {
            every.tick().await;
            match period_close::run(&closer, &org, closer.now()).await {
                Ok(report) if report != period_close::CloseReport::default() => tracing::info!(?report, "period close"),
                Ok(_) => {}
                Err(e) => tracing::error!("period close failed: {e}"),
            }
        }
    });

    axum::serve(listener, tally_api::router(tally))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn bill(at: Option<DateTime<Utc>>, data_dir: &Path) -> anyhow::Result<()> {
    let at = at.unwrap_or_else(Utc::now);
    let tally = open(data_dir, Arc::new(FixedClock::new(at)))?;
    // The close needs the organization, not a key: never create or print one here.
    let org = organizations::bootstrap(&tally, ORGANIZATION_NAME, None).await?.organization;
    eprintln!("closing periods as of {at} in {}…", data_dir.display());
    let report = period_close::run(&tally, &org, at).await?;
    println!(
        "activated {} subscription(s), terminated {}, issued {} invoice(s), finalized {} draft(s)",
        report.subscriptions_activated,
        report.subscriptions_terminated,
        report.invoices_issued,
        report.invoices_finalized
    );
    Ok(())
}
