//! Chat outages as the outbox sees them. Chat jobs never give up on a
//! transient failure (the platform down, 5xx, rate limits): they wait with
//! the capped backoff however long it takes. While a platform fails, the
//! jobs it delays are counted; the first job that goes through again ends
//! the outage, and if it lasted at least `outbox.chat_outage_notice_secs`
//! each room of that platform is told once: "posting resumed after an
//! outage of …; N messages delayed".
//!
//! The count lives in memory: after a restart during an outage the notice
//! counts only the jobs delayed since the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::chat::Platform;

/// The platforms failing now, with when it began and which jobs waited.
#[derive(Debug, Default)]
pub struct ChatOutages(Mutex<BTreeMap<Platform, Outage>>);

#[derive(Debug)]
struct Outage {
    since_ms: i64,
    delayed: BTreeSet<i64>,
}

/// An outage that ended, long enough to tell the room about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub lasted: Duration,
    /// Chat jobs (messages, notices, files) that had to wait.
    pub delayed: usize,
}

impl ChatOutages {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Platform, Outage>> {
        // A panic elsewhere while holding it cannot leave the map
        // half-updated in a way that matters: at worst a notice is lost.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `job` failed transiently on `platform` at `now_ms`.
    pub fn failed(&self, platform: Platform, job: i64, now_ms: i64) {
        self.map()
            .entry(platform)
            .or_insert_with(|| Outage {
                since_ms: now_ms,
                delayed: BTreeSet::new(),
            })
            .delayed
            .insert(job);
    }

    /// A job went through on `platform`: its outage, if any, is over.
    /// Returns it when it lasted at least `notice_after`.
    pub fn succeeded(
        &self,
        platform: Platform,
        now_ms: i64,
        notice_after: Duration,
    ) -> Option<Resumed> {
        let outage = self.map().remove(&platform)?;
        let lasted = Duration::from_millis((now_ms - outage.since_ms).max(0) as u64);
        (lasted >= notice_after).then_some(Resumed {
            lasted,
            delayed: outage.delayed.len(),
        })
    }
}

impl Resumed {
    /// What the room is told.
    pub fn notice(&self) -> String {
        let n = self.delayed;
        format!(
            "✅ Posting resumed after an outage of {}; {n} message{} delayed.",
            human(self.lasted),
            if n == 1 { " was" } else { "s were" }
        )
    }
}

/// "45 s", "3 min 20 s", "2 h 5 min".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_with_the_jobs_it_delayed() {
        let o = ChatOutages::default();
        let notice_after = Duration::from_secs(60);
        assert_eq!(o.succeeded(Platform::Slack, 0, notice_after), None);
        o.failed(Platform::Slack, 7, 1_000);
        o.failed(Platform::Slack, 7, 5_000);
        o.failed(Platform::Slack, 8, 9_000);
        o.failed(Platform::Matrix, 9, 9_000);
        let r = o
            .succeeded(Platform::Slack, 1_000 + 200_000, notice_after)
            .unwrap();
        assert_eq!(r.delayed, 2);
        assert_eq!(
            r.notice(),
            "✅ Posting resumed after an outage of 3 min 20 s; 2 messages were delayed."
        );
        assert_eq!(o.succeeded(Platform::Slack, 300_000, notice_after), None);
        // Matrix's short hiccup is over without a word.
        assert_eq!(o.succeeded(Platform::Matrix, 10_000, notice_after), None);
        assert_eq!(human(Duration::from_secs(7_500)), "2 h 5 min");
        assert_eq!(human(Duration::from_secs(45)), "45 s");
    }
}
