//! The mailbox watchdog: when a mailbox has not been checked successfully
//! for `[ops] stale_after_secs`, its room is told once; when it recovers, it
//! is told again. Mail is the team's work queue: silence in the room must
//! mean "no mail", never "mailroom cannot see the mail".
//!
//! Notices go through the outbox ([`JobSpec::ChatRoomNotice`]), so a chat
//! outage delays them rather than losing them. What was announced lives in
//! memory: after a restart a still-broken mailbox is announced again, once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::App;
use crate::domain::chat::Platform;
use crate::ops::health::{Announced, CheckState, MailboxReport};
use crate::store::JobSpec;

/// What the watchdog has to say about a mailbox now, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    WentStale,
    Recovered,
}

/// Pure decision: a stale mailbox not yet announced goes stale; a checked
/// one announced stale has recovered. `Starting` is neither: a mailbox that
/// was never announced stale needs no recovery notice.
pub fn decide(state: CheckState, announced: Announced) -> Option<Say> {
    match (state, announced) {
        (CheckState::Stale, Announced::Healthy) => Some(Say::WentStale),
        (CheckState::Ok, Announced::Stale) => Some(Say::Recovered),
        (CheckState::Stale, Announced::Stale)
        | (CheckState::Ok | CheckState::Starting, Announced::Healthy)
        | (CheckState::Starting, Announced::Stale) => None,
    }
}

/// `4 min 10 s`-style durations for notices.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn text(app: &App, r: &MailboxReport, say: Say) -> String {
    let address = app
        .mailbox(&r.mailbox)
        .map(|m| m.settings.address.as_str().to_owned())
        .unwrap_or_default();
    match say {
        Say::WentStale => {
            let since = match r.last_check_age {
                Some(age) => format!("last checked {} ago", human(age)),
                None => format!(
                    "not checked since mailroom started {} ago",
                    human(r.unchecked_for)
                ),
            };
            let why = r
                .last_error
                .as_deref()
                .map(|e| format!(" Last error: {e}."))
                .unwrap_or_default();
            format!(
                "⚠️ mailroom cannot check the mailbox {} ({address}): {since}. New mail will not \
                 show up here until it recovers.{why}",
                r.mailbox
            )
        }
        Say::Recovered => format!(
            "✅ mailroom can check the mailbox {} ({address}) again; mail that arrived meanwhile \
             is being imported.",
            r.mailbox
        ),
    }
}

/// Looks at every mailbox once and queues the notices due. Returns how many
/// mailboxes changed what was announced (for tests).
pub async fn step(app: &App) -> usize {
    let mut changed = 0;
    for r in app.health.report() {
        let Some(say) = decide(r.state, r.announced) else {
            continue;
        };
        let text = text(app, &r, say);
        match say {
            Say::WentStale => tracing::warn!(
                mailbox = %r.mailbox,
                unchecked_for_s = r.unchecked_for.as_secs(),
                error = r.last_error.as_deref().unwrap_or(""),
                "mailbox is stale"
            ),
            Say::Recovered => tracing::info!(mailbox = %r.mailbox, "mailbox recovered"),
        }
        let mut queued = true;
        for (platform, room) in rooms(app, &r) {
            let spec = JobSpec::ChatRoomNotice {
                platform,
                room,
                text: text.clone(),
            };
            let now = app.now_ms();
            if let Err(e) = app.store.enqueue(None, &spec, now, now).await {
                tracing::warn!(error = %e, mailbox = %r.mailbox, "cannot queue the watchdog notice; will try again");
                queued = false;
            }
        }
        // Only what reached the outbox counts as said; otherwise the next
        // look tries again (a room told twice beats a room never told).
        if queued {
            app.health.announce(
                &r.mailbox,
                match say {
                    Say::WentStale => Announced::Stale,
                    Say::Recovered => Announced::Healthy,
                },
            );
            app.outbox_wakeup.notify_one();
            changed += 1;
        }
    }
    changed
}

/// The rooms a mailbox's notices go to: its configured targets on running platforms.
fn rooms(app: &App, r: &MailboxReport) -> Vec<(Platform, String)> {
    let Some(m) = app.mailbox(&r.mailbox) else {
        return Vec::new();
    };
    app.platforms_for(&r.mailbox)
        .into_iter()
        .filter_map(|p| Some((p, m.settings.chat.room(p)?)))
        .collect()
}

/// Looks a few times per `stale_after` until `cancel` fires.
pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let every =
        (app.health.stale_after() / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
        step(&app).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_speaks_once_per_change() {
        use Announced as A;
        use CheckState as C;
        assert_eq!(decide(C::Stale, A::Healthy), Some(Say::WentStale));
        assert_eq!(decide(C::Stale, A::Stale), None, "said once");
        assert_eq!(decide(C::Ok, A::Stale), Some(Say::Recovered));
        assert_eq!(decide(C::Ok, A::Healthy), None);
        assert_eq!(decide(C::Starting, A::Healthy), None);
        assert_eq!(decide(C::Starting, A::Stale), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(250)), "4 min 10 s");
        assert_eq!(human(Duration::from_secs(7500)), "2 h 5 min");
    }
}
