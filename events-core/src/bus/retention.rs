//! Enforcing [`Retention`](crate::retention::Retention): on demand and on a timer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Bus;
use crate::retention::{Keep, RetentionReport};
use crate::store::{PURGE_PAGE, Purge, StoreError};

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Bus {
    /// Deletes what the retention rules ([`BusBuilder::retention`](crate::BusBuilder::retention))
    /// say is past keeping, now: stored events per rule, then dead letters. The background
    /// task calls this every [`Retention::every`](crate::retention::Retention::every).
    ///
    /// # Errors
    /// [`StoreError::Closed`] without a store or rules; what the store says otherwise.
    pub async fn enforce_retention(&self) -> Result<RetentionReport, StoreError> {
        let (Some(store), Some(retention)) = (&self.inner.store, &self.inner.retention) else {
            return Err(StoreError::Closed);
        };
        let now = nanos(SystemTime::now());
        // What durable handlers and the outbox still need stays, unless the policy says.
        // Per event name, the oldest event a durable handler has not finished.
        let mut unfinished: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        let mut before_outbox = u64::MAX;
        if !retention.delete_undelivered {
            for (info, slot) in &self.inner.durable {
                if let Some(Ok(first)) = store.undelivered(slot.name(), info.name, 0, 1)?.first() {
                    let floor = unfinished.entry(info.name).or_insert(u64::MAX);
                    *floor = (*floor).min(first.sequence);
                }
            }
            if let Some(outbox) = store.outbox() {
                if let Some(oldest) = outbox.backlog()?.oldest {
                    before_outbox = oldest;
                }
            }
        }
        let mut report = RetentionReport::default();
        let mut held_back = before_outbox != u64::MAX;
        let mut taken = std::collections::HashSet::new();
        for (pattern, keep) in &retention.rules {
            let mut names: Vec<String> = self
                .inner
                .registry
                .events
                .iter()
                .map(|e| e.name)
                .filter(|n| crate::pattern::matches(pattern, n) && taken.insert(*n))
                .map(str::to_owned)
                .collect();
            names.sort_unstable();
            names.dedup();
            let age_limit = keep.age.map_or(u64::MAX, |age| {
                now.saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX))
            });
            let before = age_limit.min(before_outbox);
            // A count alone deletes whatever the age; an age alone keeps no minimum.
            let (before, keep_newest) = match (keep.age, keep.count) {
                (None, Some(n)) => (before_outbox, n),
                (_, n) => (before, n.unwrap_or(0)),
            };
            let below = names
                .iter()
                .filter_map(|n| unfinished.get(n.as_str()))
                .min()
                .copied()
                .unwrap_or(u64::MAX);
            held_back |= below != u64::MAX;
            // In pages of `PURGE_PAGE`, one transaction each, so that a rule past a huge
            // backlog takes bounded memory and never holds the store's writes back long.
            let mut deleted = 0;
            while !names.is_empty() {
                let page = Purge::new(names.clone(), below, before, keep_newest).limit(PURGE_PAGE);
                let n = store.purge(page).await?;
                deleted += n;
                if n < PURGE_PAGE {
                    break;
                }
                tokio::task::yield_now().await;
            }
            report.deleted.push((pattern.clone(), deleted));
        }
        report.held_back = held_back;
        if let Some(keep) = retention.dead_letters {
            report.dead_letters = self.expire_dead_letters(keep) as u64;
        }
        #[cfg(feature = "macros")]
        self.audit(crate::audit::RetentionRun {
            deleted: report.deleted.clone(),
            dead_letters: report.dead_letters,
        });
        Ok(report)
    }

    /// Deletes the dead letters `keep` is past: older than its age (by last failure), or
    /// beyond its count (oldest first).
    fn expire_dead_letters(&self, keep: Keep) -> usize {
        let cutoff = keep.age.and_then(|age| SystemTime::now().checked_sub(age));
        let mut letters = self.inner.dead_letters.lock();
        let total = letters.len();
        let excess = keep.count.map_or(0, |n| total.saturating_sub(n as usize));
        let mut seen = 0usize;
        let mut gone = Vec::new();
        letters.retain(|d| {
            seen += 1;
            let old = cutoff.is_some_and(|c| d.last_failure < c);
            let over = seen <= excess;
            if old || over {
                gone.push(d.id);
            }
            !(old || over)
        });
        drop(letters);
        for id in &gone {
            self.unstore_dead_letter(*id);
        }
        gone.len()
    }

    /// Starts the background task of the retention rules, if any (inside a runtime).
    pub(crate) fn start_retention(&self) {
        let Some(every) = self.inner.retention.as_ref().map(|r| r.every) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let bus = Bus { inner };
                if let Err(e) = bus.enforce_retention().await {
                    tracing::warn!(error = %e, "a retention run failed; the next one retries");
                }
                drop(bus);
                tokio::time::sleep(Duration::ZERO).await;
            }
        });
    }
}
