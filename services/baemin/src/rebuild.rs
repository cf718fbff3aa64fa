//! `baemin report rebuild`: the report's read model rebuilt from the events stream into a fresh
//! database and, with `--compare`, checked row by row against the live report.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, bail};
use baemin_proto::report::v1::{self as pb, report_service_client::ReportServiceClient};
use baemin_report::rebuild::{self, Rebuilt};

/// How long `--compare` waits for the live report to apply what the rebuild read.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Rows named per kind of difference (the counts are always complete).
const SHOWN: usize = 20;

/// Rebuilds into `into` from the events stream on the NATS at `nats_url`, prints the figures, and
/// when `live` is given compares the result with the live report; fails if any row differs.
pub async fn run(
    nats_url: &str,
    into: &str,
    live: Option<ReportServiceClient<crate::clients::Transport>>,
) -> anyhow::Result<()> {
    let into = database_url(into);
    let jetstream = crate::status::jetstream(nats_url).await?;
    let rebuilt = rebuild::rebuild(&jetstream, &into)
        .await
        .context("rebuilding the report")?;
    figures(&rebuilt).iter().for_each(|line| println!("{line}"));
    let Some(mut client) = live else {
        return Ok(());
    };
    if let Some(note) = wait_for_live(&jetstream, rebuilt.last_sequence).await? {
        println!("note: {note}");
    }
    let live = live_rows(&mut client).await.context("listing the live report")?;
    let rebuilt = rebuild::rows(&into).await.context("reading the rebuilt report")?;
    let comparison = compare(&live, &rebuilt);
    comparison.lines().iter().for_each(|line| println!("{line}"));
    if comparison.differing() > 0 {
        bail!(
            "{} row(s) differ between the live report and the rebuilt one",
            comparison.differing()
        );
    }
    Ok(())
}

/// A DATABASE_URL as given, or the SQLite URL of a path (anything without a scheme).
fn database_url(into: &str) -> String {
    if into.contains(':') {
        into.to_owned()
    } else {
        baemin_mesh_store::sqlite_url(Path::new(into))
    }
}

/// What the rebuild did, for people.
pub fn figures(r: &Rebuilt) -> Vec<String> {
    let mut lines = vec![
        format!(
            "rebuilt the report from {} sequences {}..={}",
            baemin_mesh_events::STREAM_NAME,
            r.first_sequence.min(r.last_sequence),
            r.last_sequence
        ),
        format!(
            "  events applied {} (duplicates {}, skipped {} that can never apply)",
            r.events_applied, r.duplicates, r.skipped
        ),
        format!("  rows           {} shown, {} hidden", r.rows, r.hidden_rows),
    ];
    if r.first_sequence > 1 {
        lines.push(format!(
            "note: the stream starts at sequence {}: older events were removed by its retention and are not in the rebuild",
            r.first_sequence
        ));
    }
    lines
}

/// Waits (a while) until the live report's consumer has applied every sequence up to `last`; says
/// why a comparison may legitimately differ if it has not, or has applied more.
async fn wait_for_live(jetstream: &async_nats::jetstream::Context, last: u64) -> anyhow::Result<Option<String>> {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let Some(live) = rebuild::live_progress(jetstream).await? else {
            return Ok(Some("the live report has no consumer on this NATS".into()));
        };
        if live.delivered_sequence >= last && live.ack_pending == 0 {
            return Ok((live.delivered_sequence > last).then(|| {
                format!(
                    "the live report has applied events after sequence {last} (up to {}): rows they changed differ",
                    live.delivered_sequence
                )
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Some(format!(
                "after {CATCH_UP:?} the live report has applied up to sequence {} of {last} ({} unacknowledged): \
                 rows it has not caught up on differ",
                live.delivered_sequence, live.ack_pending
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every row the live report lists, newest call first.
pub async fn live_rows(
    client: &mut ReportServiceClient<crate::clients::Transport>,
) -> anyhow::Result<Vec<pb::DeliveryView>> {
    let (mut views, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_delivery_views(pb::ListDeliveryViewsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        views.extend(page.views);
        if page.next_page_token.is_empty() {
            return Ok(views);
        }
        page_token = page.next_page_token;
    }
}

/// How the live rows and the rebuilt rows differ, by call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Rows the live report lists.
    pub live: usize,
    /// Rows the rebuilt model lists.
    pub rebuilt: usize,
    /// Calls only the live report shows.
    pub only_live: Vec<pb::DeliveryView>,
    /// Calls only the rebuilt model shows.
    pub only_rebuilt: Vec<pb::DeliveryView>,
    /// Calls both show, differently: (live, rebuilt).
    pub changed: Vec<(pb::DeliveryView, pb::DeliveryView)>,
}

impl Comparison {
    /// How many calls differ.
    pub fn differing(&self) -> usize {
        self.only_live.len() + self.only_rebuilt.len() + self.changed.len()
    }

    /// The verdict, then the first differing rows of each kind.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "compared with the live report: {} live row(s), {} rebuilt row(s), {} differ",
            self.live,
            self.rebuilt,
            self.differing()
        )];
        let view = crate::print::view_line;
        lines.extend(
            self.only_live
                .iter()
                .take(SHOWN)
                .map(|v| format!("  only live     {}", view(v))),
        );
        lines.extend(
            self.only_rebuilt
                .iter()
                .take(SHOWN)
                .map(|v| format!("  only rebuilt  {}", view(v))),
        );
        for (live, rebuilt) in self.changed.iter().take(SHOWN) {
            lines.push(format!("  live          {}", view(live)));
            lines.push(format!("  rebuilt       {}", view(rebuilt)));
        }
        lines
    }
}

/// Compares every field of every row, `updated_at` included: it is the latest `occurred_at` of the
/// events applied to the row, so the same events give the same value however late they are replayed.
pub fn compare(live: &[pb::DeliveryView], rebuilt: &[pb::DeliveryView]) -> Comparison {
    let by_call = |rows: &[pb::DeliveryView]| -> BTreeMap<String, pb::DeliveryView> {
        rows.iter().map(|v| (v.call_id.clone(), v.clone())).collect()
    };
    let (mut live_rows, rebuilt_rows) = (by_call(live), by_call(rebuilt));
    let mut comparison = Comparison {
        live: live.len(),
        rebuilt: rebuilt.len(),
        ..Comparison::default()
    };
    for (call_id, rebuilt) in rebuilt_rows {
        match live_rows.remove(&call_id) {
            None => comparison.only_rebuilt.push(rebuilt),
            Some(live) if live != rebuilt => comparison.changed.push((live, rebuilt)),
            Some(_) => {}
        }
    }
    comparison.only_live = live_rows.into_values().collect();
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(call_id: &str, fee: i64) -> pb::DeliveryView {
        pb::DeliveryView {
            call_id: call_id.into(),
            fee,
            ..Default::default()
        }
    }

    #[test]
    fn equal_rows_in_any_order_do_not_differ() {
        let live = [row("a", 1_000), row("b", 2_000)];
        let rebuilt = [row("b", 2_000), row("a", 1_000)];
        let comparison = compare(&live, &rebuilt);
        assert_eq!(comparison.differing(), 0);
        assert_eq!((comparison.live, comparison.rebuilt), (2, 2));
    }

    #[test]
    fn missing_extra_and_changed_rows_each_count_once() {
        let live = [row("a", 1_000), row("b", 2_000), row("c", 3_000)];
        let rebuilt = [row("b", 2_500), row("c", 3_000), row("d", 4_000)];
        let comparison = compare(&live, &rebuilt);
        assert_eq!(comparison.differing(), 3);
        assert_eq!(comparison.only_live, [row("a", 1_000)]);
        assert_eq!(comparison.only_rebuilt, [row("d", 4_000)]);
        assert_eq!(comparison.changed, [(row("b", 2_000), row("b", 2_500))]);
        assert!(comparison.lines()[0].ends_with("3 differ"), "{:?}", comparison.lines());
    }

    #[test]
    fn a_path_means_a_new_sqlite_file() {
        assert_eq!(database_url("/tmp/r.db"), "sqlite:///tmp/r.db?mode=rwc");
        assert_eq!(database_url("sqlite://r.db?mode=rwc"), "sqlite://r.db?mode=rwc");
        assert_eq!(database_url("postgres://u@h/r"), "postgres://u@h/r");
    }
}
