//! `baemin status`: consumer lag and dead letters from NATS, and the outbox backlog of a local mesh's
//! SQLite files (a deployed mesh exports the backlog as a metric instead).

use std::path::Path;

use anyhow::Context;
use baemin_mesh_events::{consumer_lag, deadletter, outbox};
use sea_orm::Database;

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
    for service in ServiceName::ALL {
        let file = data_dir.join(format!("{}.db", service.as_str()));
        if !file.exists() {
            continue;
        }
        let db = Database::connect(format!("sqlite://{}?mode=ro", file.display())).await?;
        let pending = outbox::backlog(&db)
            .await
            .with_context(|| format!("reading the outbox of {}", file.display()))?;
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
