//! The report application: projects each event in one transaction with the inbox, answers queries,
//! and tells watchers about every committed change.

use baemin_mesh_store::Db;
use std::{collections::VecDeque, sync::Arc};

use baemin_kernel::{CallId, PageSize, PageToken};
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{DeliveryView, Fact, Filter, ReportError, Stats, Viewer, apply};
use crate::outbound::db;
use baemin_mesh_events::ChangeFeed;

/// Most rows a watcher's snapshot holds (newest first).
pub const SNAPSHOT_LIMIT: u64 = 1_000;

/// Changes a slow watcher may fall behind before it is re-sent a snapshot instead.
const WATCH_BUFFER: usize = 1_024;

/// A page request of ListDeliveryViews, parsed.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// How many rows at most.
    pub page_size: PageSize,
    /// Where the previous page stopped; `None` for the first page.
    pub page_token: Option<PageToken>,
    /// Which rows.
    pub filter: Filter,
}

/// One page of rows, newest call first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The rows.
    pub views: Vec<DeliveryView>,
    /// Where the next page starts; `None` on the last page.
    pub next_page_token: Option<PageToken>,
}

/// What watchers are told: a row as it is now, or to read everything again.
#[derive(Debug, Clone)]
enum Signal {
    View(Box<DeliveryView>),
    Resync,
}

/// The report service's use cases.
pub struct ReportApp {
    db: Db,
    changes: broadcast::Sender<Signal>,
    closing: CancellationToken,
    /// Where committed changes are announced to every replica (see [`Self::follow_changes`]); without
    /// it (a single process, tests) they go to this process's watchers directly.
    feed: Option<ChangeFeed>,
}

impl ReportApp {
    /// The application over its database.
    pub fn new(db: Db) -> Self {
        Self::with_watch_buffer(db, WATCH_BUFFER)
    }

    fn with_watch_buffer(db: Db, buffer: usize) -> Self {
        Self {
            db,
            changes: broadcast::channel(buffer).0,
            closing: CancellationToken::new(),
            feed: None,
        }
    }

    /// Announces committed changes on `feed`, for the watchers of every replica.
    pub fn announcing(mut self, feed: ChangeFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Feeds this replica's watchers from the announcements of every replica (its own included) until
    /// `stop`: each announced row is read again from the shared database; after announcements may have
    /// been lost, every watcher resyncs.
    pub async fn follow_changes(self: Arc<Self>, stop: CancellationToken) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let resync = || {
            let _ = self.changes.send(Signal::Resync);
        };
        let watched = || self.changes.receiver_count() > 0;
        feed.run(stop, watched, |key| self.read_again(key), resync).await;
    }

    /// Tells this replica's watchers the row `key` as the database has it now.
    async fn read_again(&self, key: String) {
        let Ok(call_id) = CallId::parse(&key, "call_id") else {
            tracing::warn!(key, "a change announced for a key that is no call id");
            return;
        };
        match db::find_visible(&self.db, &call_id).await {
            Ok(Some(view)) => {
                let _ = self.changes.send(Signal::View(Box::new(view)));
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read an announced change; watchers resync");
                let _ = self.changes.send(Signal::Resync);
            }
        }
    }

    /// Applies one event that arrived on `subject` with id `event_id`; a redelivered event applies
    /// nothing. Returns whether the row changed (and was announced to watchers).
    pub async fn project(&self, subject: &str, event_id: &str, fact: &Fact) -> Result<bool, ReportError> {
        Ok(self.project_all(&[(subject, event_id, fact.clone())]).await? > 0)
    }

    /// Applies events `(subject, event_id, fact)` in order in one transaction — all or none — skipping
    /// those applied before, then announces each changed call's last state once, if visible. Returns
    /// how many events changed a row.
    ///
    /// The calls' rows are locked first (another replica projecting an event of the same call waits for
    /// our commit, so neither overwrites the other's fields), in call id order: replicas applying
    /// batches of the same calls (lanes hash call ids alike everywhere) take their locks in one order,
    /// so they wait for each other instead of deadlocking.
    pub async fn project_all(&self, events: &[(&str, &str, Fact)]) -> Result<usize, ReportError> {
        let txn = baemin_mesh_store::begin_write(&self.db).await?;
        let mut calls: Vec<&CallId> = events.iter().map(|(_, _, fact)| &fact.call_id).collect();
        calls.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        calls.dedup();
        let mut rows: Vec<DeliveryView> = Vec::with_capacity(calls.len());
        for call_id in calls {
            rows.push(db::lock_or_create(&txn, call_id).await?);
        }
        let mut changed = Vec::new();
        for (subject, event_id, fact) in events {
            if !baemin_mesh_events::inbox::first_delivery(&txn, subject, event_id).await? {
                continue;
            }
            let Some(row) = rows.iter_mut().find(|row| row.call_id == fact.call_id) else {
                continue;
            };
            let next = apply(Some(row.clone()), fact);
            if next != *row {
                db::store(&txn, &next).await?;
                *row = next;
                if !changed.contains(&row.call_id) {
                    changed.push(row.call_id.clone());
                }
            }
        }
        txn.commit().await?;
        let changes = changed.len();
        for view in rows
            .into_iter()
            .filter(|row| changed.contains(&row.call_id) && row.is_visible())
        {
            self.announce(view).await;
        }
        Ok(changes)
    }

    /// Tells the watchers of every replica about a committed change; nobody watching is fine.
    async fn announce(&self, view: DeliveryView) {
        match &self.feed {
            Some(feed) => feed.announce(view.call_id.as_str()).await,
            // No receiver is not an error: nobody is watching.
            None => {
                let _ = self.changes.send(Signal::View(Box::new(view)));
            }
        }
    }

    /// The row of `call_id`, if `viewer` may see it.
    pub async fn get(&self, viewer: &Viewer, call_id: &CallId) -> Result<DeliveryView, ReportError> {
        let view = db::find_visible(&self.db, call_id)
            .await?
            .ok_or_else(|| ReportError::NotFound(call_id.to_string()))?;
        if viewer.may_see(&view) {
            Ok(view)
        } else {
            Err(ReportError::PermissionDenied(format!(
                "call {call_id} is not yours to read"
            )))
        }
    }

    /// One page of the rows `viewer` may see, newest call first.
    pub async fn list(&self, viewer: &Viewer, query: &ListQuery) -> Result<Page, ReportError> {
        let filter = viewer.scope(query.filter.clone())?;
        let after = query.page_token.as_ref().map(PageToken::last_key);
        let size = query.page_size.get();
        let mut views = db::list(&self.db, &filter, after, size + 1).await?;
        let next_page_token = if views.len() as u64 > size {
            views.truncate(size as usize);
            views.last().map(|v| PageToken::after(v.call_id.as_str()))
        } else {
            None
        };
        Ok(Page { views, next_page_token })
    }

    /// The company's figures over every visible row (for the company only).
    pub async fn stats(&self, viewer: &Viewer) -> Result<Stats, ReportError> {
        viewer.ensure_company()?;
        Ok(Stats::from_totals(&db::totals(&self.db).await?))
    }

    /// The current rows `viewer` may see (of `call_id` only, when set): at most
    /// [`SNAPSHOT_LIMIT`], newest first.
    async fn snapshot(&self, viewer: &Viewer, call_id: Option<&CallId>) -> Result<Vec<DeliveryView>, ReportError> {
        match call_id {
            Some(call_id) => Ok(db::find_visible(&self.db, call_id)
                .await?
                .filter(|view| viewer.may_see(view))
                .into_iter()
                .collect()),
            None => {
                let filter = viewer.scope(Filter::default())?;
                Ok(db::list(&self.db, &filter, None, SNAPSHOT_LIMIT).await?)
            }
        }
    }

    /// Every row `viewer` may see as it changes (of `call_id` only, when set), after the current
    /// rows when `include_snapshot`. A watcher that falls behind is re-sent the current rows rather
    /// than silently missing changes. Ends with [`ReportError::ShuttingDown`] when the service stops.
    pub fn watch(
        self: &Arc<Self>,
        viewer: Viewer,
        call_id: Option<CallId>,
        include_snapshot: bool,
    ) -> impl Stream<Item = Result<DeliveryView, ReportError>> + Send + 'static {
        // Subscribe before reading the snapshot: a change committed in between is sent twice
        // rather than never.
        let watcher = Watcher {
            app: Arc::clone(self),
            changes: self.changes.subscribe(),
            viewer,
            call_id,
            pending: VecDeque::new(),
            needs_snapshot: include_snapshot,
            done: false,
        };
        futures::stream::unfold(watcher, Watcher::next)
    }

    /// Ends every watch stream: long-lived streams must not hold the server's graceful drain open.
    pub fn close_watches(&self) {
        self.closing.cancel();
    }
}

/// The state of one watch stream.
struct Watcher {
    app: Arc<ReportApp>,
    changes: broadcast::Receiver<Signal>,
    viewer: Viewer,
    call_id: Option<CallId>,
    pending: VecDeque<DeliveryView>,
    needs_snapshot: bool,
    done: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<DeliveryView, ReportError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if std::mem::take(&mut self.needs_snapshot) {
                match self.app.snapshot(&self.viewer, self.call_id.as_ref()).await {
                    Ok(rows) => self.pending = rows.into(),
                    Err(err) => return self.finish(err),
                }
            }
            if let Some(view) = self.pending.pop_front() {
                return Some((Ok(view), self));
            }
            let closing = self.app.closing.clone();
            let received = tokio::select! {
                () = closing.cancelled() => return self.finish(ReportError::ShuttingDown),
                received = self.changes.recv() => received,
            };
            match received {
                Ok(Signal::View(view)) if self.wants(&view) => return Some((Ok(*view), self)),
                Ok(Signal::View(_)) => {}
                Ok(Signal::Resync) => self.needs_snapshot = true,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a watcher fell behind; re-sending the current rows");
                    self.needs_snapshot = true;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn wants(&self, view: &DeliveryView) -> bool {
        self.call_id.as_ref().is_none_or(|id| *id == view.call_id) && self.viewer.may_see(view)
    }

    fn finish(mut self, err: ReportError) -> Option<(Result<DeliveryView, ReportError>, Self)> {
        self.done = true;
        Some((Err(err), self))
    }
}

#[cfg(test)]
mod tests;
