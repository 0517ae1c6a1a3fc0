//! `sluice keys …` and `sluice admin …`: a small client of the admin API (its token from
//! `SLUICE_ADMIN_TOKEN`).

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Subcommand;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a run-time key; the key is printed once and never stored.
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// Comma-separated model aliases (patterns like `gpt-*` allowed).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Comma-separated route names.
        #[arg(long, value_delimiter = ',')]
        routes: Option<Vec<String>>,
        /// RFC 3339 expiry, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys from the config file and from the store, with their source.
    List,
    /// Revoke a run-time key; it stops working at once.
    Revoke { id: String },
    /// Print the `sha256:` hash of a key, for the config file.
    Hash { key: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin principal; its token is printed once and never stored.
    Create {
        /// `viewer` (reads), `operator` (reads; changes keys, limits, the cache) or `admin`.
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Confine it to one tenant's keys, limits, usage and cache entries.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// List admin principals (never their tokens).
    List,
    /// Revoke an admin principal; its token stops working at once.
    Revoke { id: String },
}

pub async fn run_admin(admin_url: &str, command: AdminCommand) -> anyhow::Result<()> {
    let base = admin_url.trim_end_matches('/');
    match command {
        AdminCommand::Create { role, tenant, id } => {
            let body = json!({ "id": id, "role": role, "tenant": tenant });
            let v = call(Method::POST, &format!("{base}/admin/principals"), Some(body)).await?;
            println!("id:    {}", v["id"].as_str().unwrap_or(""));
            println!("token: {}", v["token"].as_str().unwrap_or(""));
            eprintln!("Store the token now: the gateway keeps only its hash.");
        }
        AdminCommand::List => {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let url = match &after {
                    Some(id) => format!("{base}/admin/principals?limit=1000&after={id}"),
                    None => format!("{base}/admin/principals?limit=1000"),
                };
                let v = call(Method::GET, &url, None).await?;
                all.extend(v["data"].as_array().into_iter().flatten().cloned());
                match (v["has_more"].as_bool(), v["last_id"].as_str()) {
                    (Some(true), Some(last)) => after = Some(last.to_owned()),
                    _ => break,
                }
            }
            println!("{:<24} {:<9} {:<16} STATUS", "ID", "ROLE", "TENANT");
            for p in &all {
                let s = |f: &str| p[f].as_str().unwrap_or("-").to_owned();
                let status = if p["revoked_at"].is_string() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{:<24} {:<9} {:<16} {status}", s("id"), s("role"), s("tenant"));
            }
        }
        AdminCommand::Revoke { id } => {
            call(Method::DELETE, &format!("{base}/admin/principals/{id}"), None).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn run(admin_url: &str, command: KeysCommand) -> anyhow::Result<()> {
    let base = admin_url.trim_end_matches('/');
    match command {
        KeysCommand::Hash { key } => {
            println!("{}", sluice_config::key_hash_string(&key));
            Ok(())
        }
        KeysCommand::Create {
            id,
            tenant,
            team,
            user,
            tier,
            models,
            routes,
            expires_at,
        } => {
            let body = json!({ "id": id, "tenant": tenant, "team": team, "user": user, "tier": tier,
                               "models": models, "routes": routes, "expires_at": expires_at });
            let v = call(Method::POST, &format!("{base}/admin/keys"), Some(body)).await?;
            println!("id:  {}", v["id"].as_str().unwrap_or(""));
            println!("key: {}", v["key"].as_str().unwrap_or(""));
            eprintln!("Store the key now: the gateway keeps only its hash.");
            Ok(())
        }
        KeysCommand::List => {
            // Every page, in id order.
            let mut keys = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let url = match &after {
                    Some(id) => format!("{base}/admin/keys?limit=1000&after={id}"),
                    None => format!("{base}/admin/keys?limit=1000"),
                };
                let v = call(Method::GET, &url, None).await?;
                keys.extend(v["data"].as_array().into_iter().flatten().cloned());
                match (v["has_more"].as_bool(), v["last_id"].as_str()) {
                    (Some(true), Some(last)) => after = Some(last.to_owned()),
                    _ => break,
                }
            }
            println!(
                "{:<24} {:<8} {:<14} {:<14} {:<10} {:<9} MODELS",
                "ID", "SOURCE", "TENANT", "TEAM", "TIER", "STATUS"
            );
            for k in &keys {
                let s = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
                let status = if k["revoked_at"].is_string() {
                    "revoked"
                } else {
                    "active"
                };
                let models = k["models"].as_array().map_or("*".to_owned(), |m| {
                    m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                });
                println!(
                    "{:<24} {:<8} {:<14} {:<14} {:<10} {:<9} {}",
                    s("id"),
                    s("source"),
                    s("tenant"),
                    s("team"),
                    s("tier"),
                    status,
                    models
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            call(Method::DELETE, &format!("{base}/admin/keys/{id}"), None).await?;
            println!("revoked {id}");
            Ok(())
        }
    }
}

async fn call(method: Method, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Ok(token) = std::env::var("SLUICE_ADMIN_TOKEN") {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()))))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("cannot reach the admin API at {url}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            v["error"]["message"].as_str().unwrap_or("request failed")
        );
    }
    Ok(v)
}
