//! `tally`: a usage-based billing engine that speaks Lago's API.
//!
//! - `tally serve`: the API and the period-close scheduler, on the embedded store (or on AWS:
//!   DynamoDB, with events through SQS and consumers in the process).
//! - `tally bill`: runs the period close as of an instant, even while a server runs on the data.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tally_service::{organizations, period_close, queued_events, Clock, FixedClock, SystemClock, Tally};
use tally_store::{SqliteStore, Store};

mod tenants;

#[derive(Parser)]
#[command(name = "tally", version, about = "Usage-based billing engine with Lago's REST API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the API, with the period close running every minute.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000", env = "TALLY_ADDR")]
        addr: SocketAddr,
        #[command(flatten)]
        storage: Storage,
        /// Seconds between two runs of the period close.
        #[arg(long, default_value_t = 60)]
        close_every: u64,
        /// Keep the API keys given (`TALLY_API_KEY`) or generated at earlier starts working
        /// when `TALLY_API_KEY` now names another one (by default they stop working).
        #[arg(long)]
        keep_previous_keys: bool,
    },
    /// Invoice every period that has ended by `--at` (default: now), catching up on missed ones.
    /// Safe to run twice, and while `tally serve` runs on the same data.
    Bill {
        /// The instant to close as of (RFC 3339, e.g. 2024-06-01T00:00:00Z).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[command(flatten)]
        storage: Storage,
    },
    /// Organizations of this installation (each with its own data and API keys).
    #[command(subcommand)]
    Organizations(OrganizationsCommand),
    /// API keys of an organization: create, list, revoke.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
}

#[derive(Subcommand)]
enum OrganizationsCommand {
    /// Create an organization; prints its id and first API key. Works while `tally serve` runs.
    Create {
        /// The organization's name.
        name: String,
        #[command(flatten)]
        storage: Storage,
    },
    /// List the organizations, one a line: id, then name.
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Create an API key for an organization; prints it (only this once: it is stored hashed).
    Create {
        #[arg(long)]
        organization: String,
        #[command(flatten)]
        storage: Storage,
    },
    /// List an organization's keys, one a line: key id, the key's first 8 characters, creation.
    List {
        #[arg(long)]
        organization: String,
        #[command(flatten)]
        storage: Storage,
    },
    /// Revoke a key (by the id `list` shows): refused from the next request on.
    Revoke {
        #[arg(long)]
        organization: String,
        /// The key's id.
        key_id: String,
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// SQLite in `--data-dir`.
    Embedded,
    /// DynamoDB, through the standard AWS configuration (`AWS_ENDPOINT_URL` may point it at
    /// another endpoint, such as moto's server).
    Aws,
}

#[derive(Args)]
struct Storage {
    #[arg(long, value_enum, default_value = "embedded", env = "TALLY_BACKEND")]
    backend: Backend,
    /// Where the embedded store keeps its data (and where a generated API key is kept).
    #[arg(long, default_value = "tally-data", env = "TALLY_DATA_DIR")]
    data_dir: PathBuf,
    /// DynamoDB table (`--backend aws`).
    #[arg(long, default_value = "tally", env = "TALLY_DYNAMODB_TABLE")]
    table: String,
    /// SQS queue of accepted events, metered by the server's consumers (`--backend aws`).
    #[arg(long, default_value = "tally-events", env = "TALLY_QUEUE")]
    queue: String,
    /// S3 bucket for documents (`--backend aws`).
    #[arg(long, default_value = "tally-documents", env = "TALLY_BUCKET")]
    bucket: String,
    /// EventBridge bus (`--backend aws`).
    #[arg(long, default_value = "tally", env = "TALLY_EVENT_BUS")]
    event_bus: String,
    /// Create the AWS resources that are missing: table, queue (with its dead-letter queue),
    /// bucket and bus (`--backend aws`).
    #[arg(long)]
    create_resources: bool,
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
        Command::Serve { addr, storage, close_every, keep_previous_keys } => {
            serve(addr, &storage, close_every, keep_previous_keys).await
        }
        Command::Bill { at, storage } => bill(at, &storage).await,
        Command::Organizations(command) => tenants::organizations(command).await,
        Command::ApiKeys(command) => tenants::api_keys(command).await,
    }
}

/// Usage states per bucket on DynamoDB, where concurrent writers share hot items.
const AWS_USAGE_SHARDS: u32 = 8;

async fn open(storage: &Storage, clock: Arc<dyn Clock>) -> anyhow::Result<Tally> {
    let shards = match storage.backend {
        Backend::Embedded => 1,
        Backend::Aws => AWS_USAGE_SHARDS,
    };
    let store: Arc<dyn Store> = match storage.backend {
        Backend::Embedded => Arc::new(
            SqliteStore::open(&storage.data_dir)
                .with_context(|| format!("opening the store in {}", storage.data_dir.display()))?,
        ),
        Backend::Aws => {
            let config = tally_aws::load_config().await;
            let store = tally_aws::DynamoStore::new(tally_aws::dynamodb_client(&config), &storage.table);
            if storage.create_resources {
                store.create_table_if_missing().await.with_context(|| format!("creating table {}", storage.table))?;
                let s3 = tally_aws::s3_client(&config);
                tally_aws::create_bucket_if_missing(&s3, &storage.bucket).await?;
                let events = tally_aws::eventbridge_client(&config);
                tally_aws::create_event_bus_if_missing(&events, &storage.event_bus).await?;
            }
            Arc::new(store)
        }
    };
    Ok(Tally::new(store, clock).with_usage_shards(shards))
}

/// Seconds a received message stays hidden from other consumers (then it is delivered again).
const QUEUE_VISIBILITY: Duration = Duration::from_secs(30);

/// Consumers of the ingest queue inside `tally serve --backend aws`.
const QUEUE_CONSUMERS: usize = 4;

/// The ingest queue of `--backend aws` (created with its dead-letter queue if asked to).
async fn ingest_queue(storage: &Storage) -> anyhow::Result<tally_aws::SqsQueue> {
    let config = tally_aws::load_config().await;
    let client = tally_aws::sqs_client(&config);
    let queue = if storage.create_resources {
        tally_aws::SqsQueue::create_if_missing(client, &storage.queue, QUEUE_VISIBILITY).await
    } else {
        tally_aws::SqsQueue::named(client, &storage.queue).await
    };
    queue.with_context(|| format!("opening queue {}", storage.queue))
}

/// Meters queued events until the process ends; each consumer takes up to 10 messages at a time.
fn spawn_consumers(tally: &Tally, org: &tally_service::Org, queue: Arc<dyn tally_queue::Queue>) {
    for _ in 0..QUEUE_CONSUMERS {
        let (tally, org, queue) = (tally.clone(), org.clone(), queue.clone());
        tokio::spawn(async move {
            loop {
                match queued_events::poll(&tally, &org, queue.as_ref(), Duration::from_secs(2)).await {
                    Ok(outcome) if !outcome.failed.is_empty() => {
                        tracing::warn!(failed = outcome.failed.len(), "queued events will be delivered again")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("ingest queue: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// The API key: `TALLY_API_KEY` if set (the keys of earlier starts then stop working unless
/// `keep_previous`), else the one generated on first start (kept in the data directory so later
/// starts can print it again; the store itself keeps only its hash).
async fn api_key(tally: &Tally, data_dir: &Path, keep_previous: bool) -> anyhow::Result<(tally_service::Org, String)> {
    let key_file = data_dir.join("api_key");
    let given = std::env::var("TALLY_API_KEY").ok().filter(|k| !k.is_empty());
    let remembered = std::fs::read_to_string(&key_file).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
    if let Some(given) = given {
        let bootstrap =
            organizations::bootstrap_with(tally, ORGANIZATION_NAME, Some(given.clone()), keep_previous).await?;
        // The generated key, if any, no longer opens anything: do not keep it around.
        if remembered.is_some_and(|r| r != given) && !keep_previous {
            std::fs::remove_file(&key_file).with_context(|| format!("removing {}", key_file.display()))?;
        }
        return Ok((bootstrap.organization, given));
    }
    let bootstrap = organizations::bootstrap(tally, ORGANIZATION_NAME, None).await?;
    let key = match (bootstrap.api_key, remembered) {
        (Some(generated), _) => {
            std::fs::write(&key_file, &generated).with_context(|| format!("writing {}", key_file.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
            }
            generated
        }
        (None, Some(remembered)) if organizations::authenticate(tally, &remembered).await.is_ok() => remembered,
        _ => anyhow::bail!(
            "no working API key in {}: set TALLY_API_KEY, or make one with `tally api-keys create --organization {}`",
            key_file.display(),
            bootstrap.organization.id
        ),
    };
    Ok((bootstrap.organization, key))
}

async fn serve(addr: SocketAddr, storage: &Storage, close_every: u64, keep_previous_keys: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&storage.data_dir)?;
    // One server per data directory: the embedded store's writer keeps the newest dedupe keys in
    // memory, so a second writer of events would not see them. (`tally bill` writes no events.)
    let lock_path = storage.data_dir.join("serve.lock");
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if storage.backend == Backend::Embedded && lock.try_lock().is_err() {
        anyhow::bail!("another `tally serve` is running on {}", storage.data_dir.display());
    }
    let mut tally = open(storage, Arc::new(SystemClock)).await?;
    let data_dir = storage.data_dir.as_path();
    let (org, key) = api_key(&tally, data_dir, keep_previous_keys).await?;
    // On AWS, accepted events go through the queue, as in the serverless deployment.
    if storage.backend == Backend::Aws {
        let queue: Arc<dyn tally_queue::Queue> = Arc::new(ingest_queue(storage).await?);
        tally = tally.with_queue(queue.clone());
        spawn_consumers(&tally, &org, queue);
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    println!("tally listening on http://{local}");
    println!("API key: {key}");
    match storage.backend {
        Backend::Embedded => println!("data directory: {}", data_dir.display()),
        Backend::Aws => println!("DynamoDB table: {}, queue: {}", storage.table, storage.queue),
    }
    tracing::info!(%local, data_dir = %data_dir.display(), "tally serving");

    let closer = tally.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(close_every.max(1)));
        loop {
            every.tick().await;
            match period_close::run_all(&closer, closer.now()).await {
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

async fn bill(at: Option<DateTime<Utc>>, storage: &Storage) -> anyhow::Result<()> {
    let at = at.unwrap_or_else(Utc::now);
    let opening = std::time::Instant::now();
    let tally = open(storage, Arc::new(FixedClock::new(at))).await?;
    let opened = opening.elapsed();
    // The close needs the organizations, not a key: never create or print one here.
    organizations::bootstrap(&tally, ORGANIZATION_NAME, None).await?;
    eprintln!("closing periods as of {at}…");
    let closing = std::time::Instant::now();
    let report = period_close::run_all(&tally, at).await?;
    eprintln!("closed in {} µs (store opened in {} µs)", closing.elapsed().as_micros(), opened.as_micros());
    println!(
        "activated {} subscription(s), terminated {}, issued {} invoice(s), finalized {} draft(s)",
        report.subscriptions_activated,
        report.subscriptions_terminated,
        report.invoices_issued,
        report.invoices_finalized
    );
    // Every other subscription is billed; say which could not be, and fail the command so a
    // scheduler notices (the next run tries them again).
    for failure in &report.failures {
        eprintln!("could not bill subscription {}: {}", failure.external_subscription_id, failure.reason);
    }
    if !report.failures.is_empty() {
        anyhow::bail!("{} subscription(s) could not be billed", report.failures.len());
    }
    Ok(())
}
