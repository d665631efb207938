//! Counters, gauges and latency histograms, exposed at `/metrics` in the
//! OpenMetrics text format (which Prometheus scrapes).
//!
//! One [`Metrics`] lives in the bridge's `App`; the flows call its
//! typed methods at the points where the thing happened, so a metric's name
//! and labels are spelled once, here.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::chat::Platform;
use crate::domain::ids::MailboxName;
use crate::domain::render::Rendering;
use crate::store::JobState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabel {
    mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformLabel {
    platform: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenderingLabels {
    platform: &'static str,
    rendering: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplyFailedLabels {
    mailbox: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    mailbox: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChatErrorLabels {
    platform: &'static str,
    kind: &'static str,
}

/// Why a reply did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFailure {
    /// The mail server answered 5xx.
    Refused,
    /// Transient failures until `outbox.max_attempts` ran out.
    RetriesExhausted,
    /// The connection broke after the data left: maybe delivered, never re-sent.
    Uncertain,
    /// Nothing could be sent (no usable recipient, mailbox gone from the config).
    Unsendable,
}

impl ReplyFailure {
    fn as_str(self) -> &'static str {
        match self {
            ReplyFailure::Refused => "refused",
            ReplyFailure::RetriesExhausted => "retries_exhausted",
            ReplyFailure::Uncertain => "uncertain",
            ReplyFailure::Unsendable => "unsendable",
        }
    }
}

/// Whether a chat error will be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatErrorKind {
    Transient,
    Permanent,
}

/// The outbox states `/metrics` reports a depth for: work not yet done, and
/// work that needs a human. Done and cancelled jobs are history, not depth.
pub const DEPTH_STATES: [JobState; 4] = [
    JobState::Pending,
    JobState::InFlight,
    JobState::Failed,
    JobState::Uncertain,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 5 ms doubling up to about 11 minutes: from a local post to a reply that
/// waited out the undo window and a few SMTP retries.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// mailroom's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    emails_ingested: Family<MailboxLabel, Counter>,
    threads_posted: Family<PlatformLabel, Counter>,
    replies_sent: Family<MailboxLabel, Counter>,
    replies_failed: Family<ReplyFailedLabels, Counter>,
    outbox_jobs: Family<StateLabel, Gauge>,
    job_retries: Family<KindLabel, Counter>,
    imap_reconnects: Family<MailboxLabel, Counter>,
    chat_errors: Family<ChatErrorLabels, Counter>,
    posts_failed: Family<PlatformLabel, Counter>,
    posts_degraded: Family<RenderingLabels, Counter>,
    files_refused: Family<PlatformLabel, Counter>,
    ingest_latency: HistogramFamily<MailboxLabel>,
    post_latency: HistogramFamily<PlatformLabel>,
    reply_latency: HistogramFamily<MailboxLabel>,
    check_age: Family<MailboxLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    mail_loops: Family<MailboxLabel, Counter>,
    mail_loop_messages: Family<MailboxLabel, Counter>,
    oauth_refreshes: Family<RefreshLabels, Counter>,
    oauth_refresh_latency: HistogramFamily<MailboxLabel>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mailroom");
        let m = Metrics {
            emails_ingested: Family::default(),
            threads_posted: Family::default(),
            replies_sent: Family::default(),
            replies_failed: Family::default(),
            outbox_jobs: Family::default(),
            job_retries: Family::default(),
            imap_reconnects: Family::default(),
            chat_errors: Family::default(),
            posts_failed: Family::default(),
            posts_degraded: Family::default(),
            files_refused: Family::default(),
            ingest_latency: Family::new_with_constructor(latency_histogram),
            post_latency: Family::new_with_constructor(latency_histogram),
            reply_latency: Family::new_with_constructor(latency_histogram),
            check_age: Family::default(),
            mail_loops: Family::default(),
            mail_loop_messages: Family::default(),
            oauth_refreshes: Family::default(),
            oauth_refresh_latency: Family::new_with_constructor(latency_histogram),
            registry: Registry::default(),
        };
        // Counters get `_total` appended, units their `_seconds`.
        registry.register(
            "emails_ingested",
            "Emails stored from IMAP (new tickets and follow-ups; duplicates not counted)",
            m.emails_ingested.clone(),
        );
        registry.register(
            "threads_posted",
            "Ticket threads started in chat",
            m.threads_posted.clone(),
        );
        registry.register(
            "replies_sent",
            "Replies the SMTP server accepted",
            m.replies_sent.clone(),
        );
        registry.register(
            "replies_failed",
            "Replies that did not go out, by reason",
            m.replies_failed.clone(),
        );
        registry.register(
            "outbox_jobs",
            "Outbox jobs by state (pending, in_flight, failed, uncertain)",
            m.outbox_jobs.clone(),
        );
        registry.register(
            "job_retries",
            "Outbox job attempts that failed transiently and were rescheduled, by job kind",
            m.job_retries.clone(),
        );
        registry.register(
            "imap_reconnects",
            "IMAP connections lost or refused, each followed by a reconnect",
            m.imap_reconnects.clone(),
        );
        registry.register(
            "chat_errors",
            "Chat platform errors met by outbox jobs, by kind",
            m.chat_errors.clone(),
        );
        registry.register(
            "chat_posts_failed",
            "Emails (new tickets or follow-ups) that could not be posted to chat at all; each is in `mailroom outbox list`",
            m.posts_failed.clone(),
        );
        registry.register(
            "chat_posts_degraded",
            "Emails posted to chat at a lower rendering (plain, minimal) after the fuller one was refused",
            m.posts_degraded.clone(),
        );
        registry.register(
            "chat_files_refused",
            "Attachments (or full texts) that could not be uploaded into a thread; the thread says which",
            m.files_refused.clone(),
        );
        registry.register_with_unit(
            "ingest_latency",
            "From the IMAP FETCH of a message's body to the message stored",
            Unit::Seconds,
            m.ingest_latency.clone(),
        );
        registry.register_with_unit(
            "post_latency",
            "From an email stored to its ticket thread (or follow-up) posted in chat",
            Unit::Seconds,
            m.post_latency.clone(),
        );
        registry.register_with_unit(
            "reply_latency",
            "From a reply queued (undo window included) to the SMTP server accepting it",
            Unit::Seconds,
            m.reply_latency.clone(),
        );
        registry.register_with_unit(
            "mailbox_check_age",
            "Time since the mailbox was last checked successfully (or since start)",
            Unit::Seconds,
            m.check_age.clone(),
        );
        registry.register(
            "mail_loops",
            "Mail loops detected (one sender over the mailbox's loop_guard limit); each told once in the room",
            m.mail_loops.clone(),
        );
        registry.register(
            "mail_loop_messages",
            "Emails of a mail loop, stored and filed in their ticket without a chat post",
            m.mail_loop_messages.clone(),
        );
        registry.register(
            "oauth_refreshes",
            "OAuth2 access token refreshes, by outcome (ok, refused, unavailable)",
            m.oauth_refreshes.clone(),
        );
        registry.register_with_unit(
            "oauth_refresh_latency",
            "One call of the token endpoint to refresh a mailbox's access token",
            Unit::Seconds,
            m.oauth_refresh_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One email of a mail loop; `started`: the first of its loop.
    pub fn mail_loop(&self, mailbox: &MailboxName, started: bool) {
        let label = Metrics::mailbox(mailbox);
        if started {
            self.mail_loops.get_or_create(&label).inc();
        }
        self.mail_loop_messages.get_or_create(&label).inc();
    }

    fn mailbox(mailbox: &MailboxName) -> MailboxLabel {
        MailboxLabel {
            mailbox: mailbox.as_str().to_owned(),
        }
    }

    fn platform(platform: Platform) -> PlatformLabel {
        PlatformLabel {
            platform: platform.as_str(),
        }
    }

    /// A refresh of a mailbox's access token ended with `outcome` after `took`.
    pub fn oauth_refreshed(&self, mailbox: &MailboxName, outcome: &'static str, took: Duration) {
        let labels = RefreshLabels {
            mailbox: mailbox.as_str().to_owned(),
            outcome,
        };
        self.oauth_refreshes.get_or_create(&labels).inc();
        self.oauth_refresh_latency
            .get_or_create(&Metrics::mailbox(mailbox))
            .observe(took.as_secs_f64());
    }

    pub fn email_ingested(&self, mailbox: &MailboxName, since_fetch: Duration) {
        let label = Metrics::mailbox(mailbox);
        self.emails_ingested.get_or_create(&label).inc();
        self.ingest_latency
            .get_or_create(&label)
            .observe(since_fetch.as_secs_f64());
    }

    pub fn thread_posted(&self, platform: Platform) {
        self.threads_posted
            .get_or_create(&Metrics::platform(platform))
            .inc();
    }

    pub fn posted(&self, platform: Platform, since_stored: Duration) {
        self.post_latency
            .get_or_create(&Metrics::platform(platform))
            .observe(since_stored.as_secs_f64());
    }

    pub fn reply_sent(&self, mailbox: &MailboxName, since_queued: Duration) {
        let label = Metrics::mailbox(mailbox);
        self.replies_sent.get_or_create(&label).inc();
        self.reply_latency
            .get_or_create(&label)
            .observe(since_queued.as_secs_f64());
    }

    pub fn reply_failed(&self, mailbox: &MailboxName, reason: ReplyFailure) {
        self.replies_failed
            .get_or_create(&ReplyFailedLabels {
                mailbox: mailbox.as_str().to_owned(),
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn job_retried(&self, kind: &'static str) {
        self.job_retries.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn imap_reconnect(&self, mailbox: &MailboxName) {
        self.imap_reconnects
            .get_or_create(&Metrics::mailbox(mailbox))
            .inc();
    }

    pub fn chat_error(&self, platform: Platform, kind: ChatErrorKind) {
        self.chat_errors
            .get_or_create(&ChatErrorLabels {
                platform: platform.as_str(),
                kind: match kind {
                    ChatErrorKind::Transient => "transient",
                    ChatErrorKind::Permanent => "permanent",
                },
            })
            .inc();
    }

    /// An email that could not be posted at all.
    pub fn post_failed(&self, platform: Platform) {
        self.posts_failed
            .get_or_create(&Metrics::platform(platform))
            .inc();
    }

    /// An email posted at `rendering`, below the full one.
    pub fn post_degraded(&self, platform: Platform, rendering: Rendering) {
        self.posts_degraded
            .get_or_create(&RenderingLabels {
                platform: platform.as_str(),
                rendering: rendering.as_str(),
            })
            .inc();
    }

    /// A file that could not be uploaded into its thread.
    pub fn file_refused(&self, platform: Platform) {
        self.files_refused
            .get_or_create(&Metrics::platform(platform))
            .inc();
    }

    /// Sets the outbox depth gauges; states missing from `counts` are 0.
    pub fn set_outbox_depth(&self, counts: &[(JobState, u64)]) {
        for state in DEPTH_STATES {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.outbox_jobs
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn set_check_age(&self, mailbox: &MailboxName, age: Duration) {
        self.check_age
            .get_or_create(&Metrics::mailbox(mailbox))
            .set(age.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in
        // the encoder, and a partial page is still better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb() -> MailboxName {
        MailboxName::parse("support").unwrap()
    }

    #[test]
    fn metrics_encode_with_their_names_and_labels() {
        let m = Metrics::new();
        m.email_ingested(&mb(), Duration::from_millis(30));
        m.thread_posted(Platform::Matrix);
        m.posted(Platform::Matrix, Duration::from_millis(200));
        m.reply_sent(&mb(), Duration::from_secs(11));
        m.reply_failed(&mb(), ReplyFailure::Refused);
        m.job_retried("send_reply");
        m.imap_reconnect(&mb());
        m.chat_error(Platform::Slack, ChatErrorKind::Transient);
        m.set_outbox_depth(&[(JobState::Pending, 3), (JobState::Done, 40)]);
        m.set_check_age(&mb(), Duration::from_millis(1500));
        let text = m.encode();
        for line in [
            "mailroom_emails_ingested_total{mailbox=\"support\"} 1",
            "mailroom_threads_posted_total{platform=\"matrix\"} 1",
            "mailroom_replies_sent_total{mailbox=\"support\"} 1",
            "mailroom_replies_failed_total{mailbox=\"support\",reason=\"refused\"} 1",
            "mailroom_job_retries_total{kind=\"send_reply\"} 1",
            "mailroom_imap_reconnects_total{mailbox=\"support\"} 1",
            "mailroom_chat_errors_total{platform=\"slack\",kind=\"transient\"} 1",
            "mailroom_outbox_jobs{state=\"pending\"} 3",
            "mailroom_outbox_jobs{state=\"uncertain\"} 0",
            "mailroom_ingest_latency_seconds_count{mailbox=\"support\"} 1",
            "mailroom_post_latency_seconds_count{platform=\"matrix\"} 1",
            "mailroom_reply_latency_seconds_count{mailbox=\"support\"} 1",
            "mailroom_mailbox_check_age_seconds{mailbox=\"support\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(
            !text.contains("state=\"done\""),
            "done jobs are not depth:\n{text}"
        );
        // The 30 ms sample lands in the 40 ms bucket, not the 20 ms one.
        assert!(
            text.contains(
                "mailroom_ingest_latency_seconds_bucket{le=\"0.04\",mailbox=\"support\"} 1"
            ) && text.contains(
                "mailroom_ingest_latency_seconds_bucket{le=\"0.02\",mailbox=\"support\"} 0"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
