//! `sluice`: the gateway binary. CLI parsing and wiring only; everything else lives in the
//! library crates.

mod admin_client;
mod cache_eval;
mod embed;
mod guard_eval;
#[cfg(unix)]
mod notify;
mod offline;
mod stop;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_gateway::StartOptions;
use sluice_mock::{Knobs, MockConfig, MockServer};

/// jemalloc, not the system allocator: cheaper allocation on the request path, and memory given
/// back to the system after a burst (glibc's arenas kept most of the 1 000 000-user sweep's
/// peak; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "An AI API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print every error with its line.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the built-in mock provider (OpenAI, Azure, Anthropic, Gemini and Bedrock formats).
    Mock {
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: SocketAddr,
        #[arg(long)]
        latency_ms: Option<u64>,
        #[arg(long)]
        ttft_ms: Option<u64>,
        #[arg(long)]
        chunk_delay_ms: Option<u64>,
        #[arg(long)]
        chunks: Option<u64>,
        /// Answer this share of requests (percent, at random) with `--status` (default 500).
        #[arg(long)]
        fail_percent: Option<u8>,
        /// The status of injected failures.
        #[arg(long)]
        status: Option<u16>,
        /// The Retry-After (seconds) of injected failures.
        #[arg(long)]
        retry_after_s: Option<u64>,
        /// Serve at most this many requests at once; the rest wait (a model server's slots).
        #[arg(long)]
        slots: Option<u64>,
        /// Require this bearer key, read from the named environment variable.
        #[arg(long)]
        api_key_env: Option<String>,
        /// Verify Bedrock requests' SigV4 signatures against AWS_ACCESS_KEY_ID and
        /// AWS_SECRET_ACCESS_KEY from the environment.
        #[arg(long)]
        verify_sigv4: bool,
    },
    /// Benchmark: direct to the mock vs nginx vs Sluice, pinned, open-loop (needs nginx and oha).
    Bench {
        /// Runs per figure (medians are quoted).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Open-loop request rates.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        rates: Vec<u32>,
        /// Request body sizes in bytes.
        #[arg(long, alias = "body-bytes", value_delimiter = ',', default_value = "1024,32768")]
        bodies: Vec<usize>,
        /// Connections for the throughput ceiling.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Sluice's config instead of the built-in one: a YAML template with {{PORT}},
        /// {{ADMIN_PORT}}, {{DIR}}, {{UPSTREAM}} and {{KEY_HASH}} (e.g. bench/default.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The model the request bodies name.
        #[arg(long, default_value = "chat")]
        model: String,
        /// What answers behind the proxies: mock, or canned (one fixed answer; not the
        /// bottleneck at 30 000 req/s; latency and ceiling sections only).
        #[arg(long, default_value = "mock", value_parser = parse_upstream)]
        upstream: sluice_bench::Upstream,
        /// The reference proxy.
        #[arg(long, default_value = "nginx")]
        nginx: PathBuf,
        /// The Sluice binary to measure (default: this one), e.g. to compare two builds.
        #[arg(long)]
        sluice: Option<PathBuf>,
        /// Keep both cores out of idle with idle-priority spinners: shows a hop's work without the
        /// wake-up latency of an idle CPU (per-core busy shares then read 100 %).
        #[arg(long)]
        keep_awake: bool,
        /// Give the bench key limits that never refuse, so every request is reserved and
        /// settled (measures what limits cost).
        #[arg(long)]
        with_limits: bool,
        /// Keep the limit counters in a Redis the bench starts (redis-server on PATH): every
        /// admission and settlement is a round trip. Implies --with-limits.
        #[arg(long)]
        redis: bool,
        /// Turn the spend ledger off, to measure what it costs.
        #[arg(long)]
        no_ledger: bool,
        /// Leave nginx out (Sluice and direct-to-mock only).
        #[arg(long)]
        no_nginx: bool,
        /// Which parts to run: latency, stream, ceiling, memory (the default), faults, capacity,
        /// users, cache.
        #[arg(long, value_delimiter = ',', default_value = "latency,stream,ceiling,memory", value_parser = parse_section)]
        sections: Vec<sluice_bench::Section>,
        #[arg(long, env = "OHA", default_value = "oha")]
        oha: PathBuf,
        /// Streams held open for the memory-per-stream figure (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        open_streams: usize,
        /// Distinct end users that come and go in the `users` section.
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
        /// Also write the Markdown report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Spend and tokens from the ledger database, by key, team, tenant or model, per hour, day
    /// or month (what the instances have shipped: up to one ship interval behind).
    Usage {
        #[arg(long, short)]
        config: PathBuf,
        /// key, team, tenant or model.
        #[arg(long, default_value = "key")]
        by: String,
        /// hour, day or month.
        #[arg(long, default_value = "day")]
        per: String,
        /// From (YYYY-MM-DD, RFC 3339 or unix ms; default: 31 days ago).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The admin audit log, read from the store the config names.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The bench's reference processes: a canned upstream, or a bare hyper proxy in front of one.
    #[command(hide = true)]
    BenchReference {
        /// `upstream` or `proxy`.
        what: String,
        #[arg(long)]
        listen: SocketAddr,
        /// The proxy's upstream, host:port.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// The response cache's tools.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Sentence embeddings of texts on standard input (one per line: a JSON string, an object
    /// with `text`, or plain text), one JSON array per line: what the in-process embedder
    /// computes, for offline tools.
    Embed {
        /// The model directory (default: models/all-minilm-l6-v2).
        #[arg(long)]
        model_dir: Option<PathBuf>,
    },
    /// The guardrails' tools.
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
    /// Manage virtual keys through the admin API.
    Keys {
        #[arg(long, env = "SLUICE_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
        admin_url: String,
        #[command(subcommand)]
        command: admin_client::KeysCommand,
    },
    /// Manage who may call the admin API: principals with a role, optionally one tenant's.
    Admin {
        #[arg(long, env = "SLUICE_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
        admin_url: String,
        #[command(subcommand)]
        command: admin_client::AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the audit log's hash chain: an edited, deleted or cut-off entry fails it.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// A head hash from the log (`audit_hash`): it must still be in the chain.
        #[arg(long)]
        head: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// The semantic cache's decision on each labelled pair (JSON lines `{"a", "b", "same",
    /// "kind"}`) with a route's settings or the shipped defaults, and the hit and false-hit
    /// rates by threshold with and without the hit check.
    Eval {
        pairs: PathBuf,
        /// Take the settings and the model directory from this config…
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// …and this route (default: the first with a semantic cache).
        #[arg(long)]
        route: Option<String>,
        /// The model directory (default: the config's `embedder.path`, else models/all-minilm-l6-v2).
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// JSON lines: one per pair, then the summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GuardCommand {
    /// The shipped guardrails' verdict on each labelled row (JSON lines `{"text", "category",
    /// "split", "injection": bool, "expect": [values]}`) and the rates per category and split.
    Eval {
        rows: PathBuf,
        /// The injection screen's threshold (default: the shipped one).
        #[arg(long)]
        threshold: Option<f32>,
        /// JSON lines: one per row, then one per category.
        #[arg(long)]
        json: bool,
        /// Also run the injection classifier head (over embeddings from this model directory,
        /// e.g. models/all-minilm-l6-v2); a row fires when the screen or the classifier does.
        #[arg(long)]
        classifier: Option<PathBuf>,
    },
}

fn parse_section(s: &str) -> Result<sluice_bench::Section, String> {
    sluice_bench::Section::parse(s).ok_or_else(|| {
        format!("unknown section {s:?}: latency, stream, ceiling, memory, faults, capacity, users or cache")
    })
}

fn parse_upstream(s: &str) -> Result<sluice_bench::Upstream, String> {
    sluice_bench::Upstream::parse(s).ok_or_else(|| format!("unknown upstream {s:?}: mock or canned"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::BenchReference { what, listen, upstream } = &cli.command {
        let what = match (what.as_str(), upstream) {
            ("upstream", _) => sluice_bench::reference::Reference::Upstream,
            ("proxy", Some(u)) => sluice_bench::reference::Reference::Proxy { upstream: u.clone() },
            _ => {
                eprintln!("bench-reference: `upstream`, or `proxy --upstream HOST:PORT`");
                return ExitCode::FAILURE;
            }
        };
        return match sluice_bench::reference::serve(what, *listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hyper=warn,hnsw_rs=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Check { config } => check(&config),
            Command::Usage {
                config,
                by,
                per,
                since,
                until,
                json,
            } => {
                let q = sluice_admin::usage::UsageQuery {
                    by: Some(by),
                    per: Some(per),
                    since,
                    until,
                };
                offline::usage(&config, &q, json).await
            }
            Command::Audit {
                command: AuditCommand::Verify { config, head },
            } => offline::audit_verify(&config, head.as_deref()).await,
            Command::Mock {
                listen,
                latency_ms,
                ttft_ms,
                chunk_delay_ms,
                chunks,
                fail_percent,
                status,
                retry_after_s,
                slots,
                api_key_env,
                verify_sigv4,
            } => {
                let defaults = Knobs {
                    latency_ms,
                    ttft_ms,
                    chunk_delay_ms,
                    chunks,
                    fail_percent,
                    status,
                    retry_after_s,
                    slots,
                    ..Knobs::default()
                };
                let api_key = api_key_env.and_then(|name| std::env::var(name).ok());
                let aws = if verify_sigv4 {
                    match (
                        std::env::var("AWS_ACCESS_KEY_ID"),
                        std::env::var("AWS_SECRET_ACCESS_KEY"),
                    ) {
                        (Ok(id), Ok(secret)) => Some((id, secret)),
                        _ => anyhow::bail!("--verify-sigv4 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
                    }
                } else {
                    None
                };
                mock(listen, MockConfig { defaults, api_key, aws }).await
            }
            Command::Keys { admin_url, command } => admin_client::run(&admin_url, command).await,
            Command::Admin { admin_url, command } => admin_client::run_admin(&admin_url, command).await,
            Command::Cache {
                command:
                    CacheCommand::Eval {
                        pairs,
                        config,
                        route,
                        model_dir,
                        json,
                    },
            } => {
                let args = cache_eval::EvalArgs {
                    pairs,
                    config,
                    route,
                    model_dir,
                    json,
                };
                tokio::task::spawn_blocking(move || cache_eval::run(&args)).await?
            }
            Command::Embed { model_dir } => tokio::task::spawn_blocking(move || embed::run(model_dir)).await?,
            Command::Guard {
                command:
                    GuardCommand::Eval {
                        rows,
                        threshold,
                        json,
                        classifier,
                    },
            } => {
                let args = guard_eval::EvalArgs {
                    rows,
                    threshold,
                    json,
                    classifier,
                };
                tokio::task::spawn_blocking(move || guard_eval::run(&args)).await?
            }
            Command::BenchReference { .. } => Ok(()), // served above, before the runtime
            Command::Bench {
                runs,
                seconds,
                rates,
                bodies,
                connections,
                config,
                model,
                upstream,
                nginx,
                no_nginx,
                keep_awake,
                with_limits,
                redis,
                no_ledger,
                sluice,
                sections,
                oha,
                out,
                open_streams,
                users,
            } => {
                let tools = std::env::current_exe()?;
                let options = sluice_bench::Options {
                    sluice: sluice.unwrap_or_else(|| tools.clone()),
                    tools,
                    config,
                    model,
                    upstream,
                    nginx: (!no_nginx).then_some(nginx),
                    oha,
                    sections,
                    keep_awake,
                    with_limits,
                    redis,
                    no_ledger,
                    runs,
                    duration: std::time::Duration::from_secs(seconds),
                    rates,
                    bodies,
                    connections,
                    proxy_core: 0,
                    client_core: 1,
                    open_streams,
                    users,
                };
                let report = tokio::task::spawn_blocking(move || sluice_bench::run(&options)).await??;
                println!("{report}");
                if let Some(path) = out {
                    std::fs::write(path, &report)?;
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    // Before anything can say it is ready: a SIGTERM from then on drains.
    let stop = stop::StopSignals::install();
    let config = sluice_config::load_file(&path)?;
    let gateway = sluice_gateway::start(
        config,
        StartOptions {
            config_path: Some(path),
            watch: true,
            env: None,
            admin: Some(sluice_admin::router),
        },
    )
    .await?;
    eprintln!(
        "sluice listening on http://{} (admin on http://{})",
        gateway.addr, gateway.admin_addr
    );
    #[cfg(unix)]
    notify::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    stop.wait().await;
    #[cfg(unix)]
    notify::notify("STOPPING=1");
    tracing::info!("shutting down: draining in-flight requests");
    let left = gateway.shutdown().await;
    if left > 0 {
        tracing::warn!(connections = left, "drain time ran out with connections still open");
    }
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let c = sluice_config::load_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    println!(
        "{}: ok (version {}; {} deployments, {} models, {} routes, {} keys)",
        path.display(),
        c.version,
        c.deployments.len(),
        c.models.len(),
        c.routes.len(),
        c.keys.len()
    );
    Ok(())
}

async fn mock(listen: SocketAddr, config: MockConfig) -> anyhow::Result<()> {
    let stop = stop::StopSignals::install();
    let server = MockServer::start(listen, config).await?;
    eprintln!("sluice mock provider on {}", server.base_url());
    stop.wait().await;
    Ok(())
}
