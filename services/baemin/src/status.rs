//! `baemin status`: consumer lag and dead letters from NATS, and the outbox backlog of a local mesh's
//! SQLite files (a deployed mesh exports the backlog as a metric instead).

use std::path::Path;

use anyhow::Context;
use baemin_mesh_events::{consumer_lag, deadletter, outbox};

use crate::cli::ServiceName;

/// A JetStream context on the mesh's NATS.
pub async fn jetstream(url: &str) -> anyhow::Result<async_nats::jetstream::Context> {
    let servers =
        baemin_mesh_events::server_addrs(url).map_err(|reason| anyhow::anyhow!("NATS URL {url:?}: {reason}"))?;
    let client = async_nats::connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    Ok(async_nats::jetstream::new(client))
}

/// Prints the status of the mesh.
pub async fn show(nats_url: &str, data_dir: &Path) -> anyhow::Result<()> {
    let js = jetstream(nats_url).await?;
    let (last, lags) = consumer_lag(&js).await?;
    println!("events stream: {last} event(s) published");
    println!(
        "  {:<40} {:<36} {:>8} {:>8} {:>12}",
        "consumer", "subject", "pending", "unacked", "redelivered"
    );
    for lag in &lags {
        println!(
            "  {:<40} {:<36} {:>8} {:>8} {:>12}",
            lag.name, lag.filter, lag.pending, lag.ack_pending, lag.redelivered
        );
    }
    let letters = deadletter::list(&js).await?;
    println!("dead letters: {} (baemin dead-letters list)", letters.len());
    let mut backlog = Vec::new();
    let recorded = recorded_databases(data_dir)?;
    for service in ServiceName::ALL {
        let file = data_dir.join(format!("{}.db", service.as_str()));
        let (url, shown) = match recorded.iter().find(|(s, _)| *s == service) {
            Some((_, url)) => (url.clone(), baemin_mesh_server::config::redact_url(url)),
            None if recorded.is_empty() && file.exists() => (
                format!("sqlite://{}?mode=ro", file.display()),
                file.display().to_string(),
            ),
            None => continue,
        };
        let db = baemin_mesh_store::open(&url, 1)
            .await
            .map_err(|_| anyhow::anyhow!("cannot open {shown}"))?;
        let pending = outbox::backlog(&db)
            .await
            .with_context(|| format!("reading the outbox of {shown}"))?;
        db.close().await.ok();
        backlog.push(format!("{} {pending}", service.as_str()));
    }
    if !backlog.is_empty() {
        println!(
            "outbox backlog (unpublished events) in {}: {}",
            data_dir.display(),
            backlog.join(", ")
        );
    }
    Ok(())
}

/// The file where `baemin up` records the PostgreSQL databases of its services.
const DATABASES_FILE: &str = "databases";

/// Records `databases` (service, URL) in `data_dir` for `baemin status`, readable by its owner only (the
/// URLs hold passwords); with none (SQLite files), removes an earlier record.
pub fn record_databases(data_dir: &Path, databases: &[(ServiceName, String)]) -> anyhow::Result<()> {
    let path = data_dir.join(DATABASES_FILE);
    let _ = std::fs::remove_file(&path);
    if databases.is_empty() {
        return Ok(());
    }
    let lines: String = databases
        .iter()
        .map(|(service, url)| format!("{} {url}\n", service.as_str()))
        .collect();
    crate::token::write_private(&path, &lines)
}

/// What [`record_databases`] recorded in `data_dir` (none when the mesh there runs on SQLite files).
fn recorded_databases(data_dir: &Path) -> anyhow::Result<Vec<(ServiceName, String)>> {
    let path = data_dir.join(DATABASES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (name, url) = line
                .split_once(' ')
                .with_context(|| format!("{}: a line is not `<service> <url>`", path.display()))?;
            let service = ServiceName::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .with_context(|| format!("{}: unknown service {name:?}", path.display()))?;
            Ok((service, url.to_owned()))
        })
        .collect()
}
