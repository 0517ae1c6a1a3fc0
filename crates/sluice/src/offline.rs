//! Commands that read the store a config names, without running a gateway: `sluice usage`
//! (the ledger) and `sluice audit verify` (the audit log's hash chain).

use std::path::Path;

use sluice_store::KeyStore;

/// The config at `path`, for its store only (provider credentials need not be in this
/// environment), and the PostgreSQL URL when it names one.
fn store_config(path: &Path) -> anyhow::Result<(sluice_config::Config, Option<String>)> {
    const UNSET: &str = "unset-for-store:";
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let env = |name: &str| std::env::var(name).ok().or_else(|| Some(format!("{UNSET}{name}")));
    let c = sluice_config::load_str(&text, &env).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let pg = match &c.store.postgres_url {
        Some(url) if url.expose().starts_with(UNSET) => {
            anyhow::bail!(
                "store.postgres_url_env: {} is not set",
                url.expose().trim_start_matches(UNSET)
            )
        }
        Some(url) => Some(url.expose().to_owned()),
        None => None,
    };
    Ok((c, pg))
}

pub async fn usage(path: &std::path::Path, q: &sluice_admin::usage::UsageQuery, as_json: bool) -> anyhow::Result<()> {
    use sluice_store::ledger::LedgerDb;
    let (c, pg) = store_config(path)?;
    let db = match pg {
        Some(url) => LedgerDb::postgres(&url).await?,
        None => LedgerDb::sqlite(&c.store.sqlite_path).await?,
    };
    let rows = sluice_admin::usage::query(&db, q, c.time_zone_offset_s, None)
        .await
        .map_err(|(_, m)| anyhow::anyhow!(m))?;
    if as_json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    println!(
        "{:<24} {:<14} {:>9} {:>12} {:>12} {:>14} {:>9}",
        q.by.as_deref().unwrap_or("key"),
        q.per.as_deref().unwrap_or("day"),
        "requests",
        "prompt",
        "completion",
        format!("cost {}", c.currency),
        "estimated"
    );
    for r in &rows {
        println!(
            "{:<24} {:<14} {:>9} {:>12} {:>12} {:>14.6} {:>9}",
            r.group,
            r.bucket,
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_micros as f64 / 1e6,
            r.estimated
        );
    }
    Ok(())
}

/// `sluice audit verify`: reads the whole audit log and its head, and checks the chain (and
/// that `head`, a hash a log line reported, is still in it). Fails naming the first bad entry.
pub async fn audit_verify(path: &Path, head: Option<&str>) -> anyhow::Result<()> {
    let (c, pg) = store_config(path)?;
    let store: Box<dyn KeyStore> = match pg {
        Some(url) => Box::new(sluice_store::PgStore::open(&url).await?),
        None => Box::new(sluice_store::SqliteStore::open(&c.store.sqlite_path).await?),
    };
    let mut entries = Vec::new();
    loop {
        let after = entries.last().map_or(0, |e: &sluice_store::audit::AuditEntry| e.seq);
        let page = store.audit_entries(after, 10_000, None).await?;
        if page.is_empty() {
            break;
        }
        entries.extend(page);
    }
    let stored_head = store.audit_head().await?;
    let anchor = store.audit_anchor().await?;
    sluice_store::audit::verify(&entries, anchor, stored_head.clone(), head)
        .map_err(|f| anyhow::anyhow!("audit log: {f}"))?;
    match stored_head {
        Some((seq, hash)) => println!("audit log: ok ({seq} entries; head {hash})"),
        None => println!("audit log: ok (empty)"),
    }
    Ok(())
}
