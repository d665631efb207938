//! The flows, one file each, and the [`App`] that wires and runs them.
//!
//! - [`ingest`]: a fetched email → parsed → threaded → stored with its ticket,
//!   audit entries, chat jobs and IMAP checkpoint in one transaction.
//! - [`reply`]: a teammate's reply → built, composed, stored and queued.
//! - [`outbox`]: the worker that performs queued jobs (SMTP send, filing in
//!   Sent, chat posts) with retries, exactly once where it matters.
//! - [`routing`]: a new ticket's first mail through the routing rules (and
//!   `mailroom rules test`'s explanation of the same walk).
//! - [`sent`]: a reply written outside mailroom, found in the mailbox's Sent
//!   folder → the ticket's thread, counted as a teammate's reply.
//! - [`oauth`]: OAuth2 mailboxes' access tokens: handed to their
//!   connections, refreshed ahead of expiry, a revoked grant told once.
//! - [`sla`]: SLA timers — a ticket's response clock in business time, a
//!   nudge in the thread and a breach in the room, once each.
//! - [`watchdog`]: tells a mailbox's room when it has not been checked for
//!   too long, and when it recovers.
//! - [`snooze`]: `!snooze` / `!unsnooze` and the wake-up timer; `reminders`:
//!   nudges for unclaimed tickets; [`digest`]: the daily digest. All three
//!   are outbox timers (jobs due later, each in a lane of its own).
//! - [`replica`]: one replica of several on PostgreSQL: heartbeats, and
//!   the mailbox (and Matrix sync) leases it runs under.

pub mod assign;
pub mod board;
pub mod chat;
pub mod digest;
mod hygiene;
pub mod ingest;
pub mod oauth;
pub mod outbox;
mod reminders;
pub mod replica;
pub mod reply;
pub mod routing;
pub mod sent;
pub mod sla;
pub mod snooze;
pub mod spool;
mod stats;
pub mod watchdog;
pub mod web;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::ChatPlatform;
use crate::config::Settings;
use crate::domain::chat::Platform;
use crate::domain::ids::{MailboxName, MessageId};
use crate::domain::time::{Clock, SystemClock};
use crate::mail::auth::LoginSource;
use crate::mail::imap::{self, ImapError};
use crate::mail::settings::{ImapSettings, MailboxSettings};
use crate::mail::smtp::{Mailer, SmtpMailer};
use crate::ops::health::Health;
use crate::ops::http::{OpsHandles, OutboxView, Undelivered, ViewError};
use crate::ops::metrics::Metrics;
use crate::store::TicketStore;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Files a sent reply in the mailbox (APPEND to Sent) and flags the answered
/// original. Both steps are idempotent, so the job may be retried freely.
#[async_trait]
pub trait SentFiler: Send + Sync {
    async fn file(
        &self,
        message_id: &MessageId,
        raw: &[u8],
        answers: Option<&MessageId>,
    ) -> Result<(), ImapError>;
}

/// [`SentFiler`] over the mailbox's own IMAP account, filing in the folder
/// the Sent watcher watches: `imap.sent_folder`, or the one the server
/// marks `\Sent`, or, where it marks none, "Sent".
pub struct ImapSentFiler {
    imap: ImapSettings,
    login: Arc<dyn LoginSource>,
}

impl ImapSentFiler {
    pub fn new(imap: ImapSettings, login: Arc<dyn LoginSource>) -> Self {
        ImapSentFiler { imap, login }
    }
}

#[async_trait]
impl SentFiler for ImapSentFiler {
    async fn file(
        &self,
        message_id: &MessageId,
        raw: &[u8],
        answers: Option<&MessageId>,
    ) -> Result<(), ImapError> {
        let mut session = imap::connect(&self.imap, self.login.as_ref()).await?;
        let result = async {
            let folder = crate::mail::sent::sent_folder(&mut session, &self.imap)
                .await?
                .unwrap_or_else(|| "Sent".to_owned());
            imap::append_once(&mut session, &folder, message_id, raw).await?;
            if let Some(original) = answers {
                imap::flag_answered(&mut session, &self.imap.folder, original).await?;
            }
            Ok(())
        }
        .await;
        imap::logout(session).await;
        result
    }
}

/// The running chat adapters: what the outbox posts through, the events
/// they deliver, and their sync tasks.
pub struct Chats {
    pub platforms: Vec<Arc<dyn ChatPlatform>>,
    pub events: tokio::sync::mpsc::UnboundedReceiver<crate::chat::ChatEvent>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Connects every configured chat platform and starts its event loop.
pub async fn connect_chats(
    settings: &Settings,
    cancel: &CancellationToken,
) -> Result<Chats, crate::chat::ChatError> {
    connect_chats_as(settings, cancel, None).await
}

/// [`connect_chats`] for one replica of several: the Matrix sync runs only
/// on the replica holding the bot account's `matrix-sync` lease (every
/// replica posts); Slack's Socket Mode runs everywhere, since Slack hands
/// each event to one connection and a redelivery is recognised by its id.
pub async fn connect_chats_as(
    settings: &Settings,
    cancel: &CancellationToken,
    cluster: Option<Arc<replica::Cluster>>,
) -> Result<Chats, crate::chat::ChatError> {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut platforms: Vec<Arc<dyn ChatPlatform>> = Vec::new();
    let mut tasks = Vec::new();
    if let Some(m) = &settings.matrix {
        let rooms = settings.matrix_rooms();
        let matrix = Arc::new(crate::chat::matrix::MatrixChat::connect(m, &rooms).await?);
        tracing::info!(user = %matrix.user_id(), rooms = rooms.len(), "matrix connected");
        match cluster {
            None => tasks.push(tokio::spawn(matrix.clone().run(tx.clone(), cancel.clone()))),
            Some(cluster) => {
                // Every replica posts, so every replica learns its rooms,
                // whether or not it ever holds the sync lease.
                let (settling, stop) = (matrix.clone(), cancel.clone());
                tasks.push(tokio::spawn(async move {
                    settling.settle(&stop).await;
                }));
                let resource =
                    crate::domain::cluster::LeaseResource::MatrixSync(matrix.user_id().to_string());
                let (sync, events) = (matrix.clone(), tx.clone());
                tasks.push(tokio::spawn(replica::leased(
                    cluster,
                    resource,
                    move |run| sync.clone().run(events.clone(), run),
                    cancel.clone(),
                )));
            }
        }
        platforms.push(matrix);
    }
    if let Some(s) = &settings.slack {
        let slack =
            crate::chat::slack::SlackChat::connect(s, settings.commands.templates_dir.clone())
                .await?;
        tracing::info!(bot = slack.bot_user(), mode = ?s.mode, "slack connected");
        tasks.push(
            crate::chat::slack::intake::start(slack.clone(), tx.clone(), cancel.clone()).await?,
        );
        platforms.push(slack);
    }
    Ok(Chats {
        platforms,
        events,
        tasks,
    })
}

/// Starts a mailbox's ingest (and Sent watcher, when watched) on `tracker`
/// until `cancel`, writing through `store` (on a replica, fenced by the
/// mailbox's lease).
pub(crate) fn spawn_mailbox(
    app: &Arc<App>,
    name: &MailboxName,
    store: Arc<dyn TicketStore>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let Some(m) = app.mailboxes.get(name) else {
        return;
    };
    let sink = Arc::new(ingest::MailboxIngest::writing_to(
        app.clone(),
        name.clone(),
        store.clone(),
    ));
    let watch = crate::mail::ingest::Watch {
        settings: m.settings.imap.clone(),
        login: m.login.clone(),
        initial: m.settings.initial_sync.clone(),
        check_every: app.settings.ops.check_every(),
        sign_in_retry: app.sign_in_retry,
    };
    if m.settings.imap.watch_sent {
        let sent_watch = crate::mail::ingest::Watch {
            settings: watch.settings.clone(),
            login: watch.login.clone(),
            initial: watch.initial.clone(),
            check_every: watch.check_every,
            sign_in_retry: watch.sign_in_retry,
        };
        let sink = Arc::new(sent::SentIngest::writing_to(
            app.clone(),
            name.clone(),
            store,
        ));
        let span = tracing::info_span!("sent", mailbox = %name);
        tracker.spawn(tracing::Instrument::instrument(
            crate::mail::sent::watch(sent_watch, sink, cancel.clone()),
            span,
        ));
    }
    let span = tracing::info_span!("ingest", mailbox = %name);
    tracker.spawn(tracing::Instrument::instrument(
        crate::mail::ingest::run(watch, sink, cancel.clone()),
        span,
    ));
}

/// The outbox depth `/metrics` reads, counted by the store.
struct StoreOutbox(Arc<dyn TicketStore>);

#[async_trait]
impl OutboxView for StoreOutbox {
    async fn count_jobs(&self) -> Result<Vec<(crate::store::JobState, u64)>, ViewError> {
        Ok(self.0.count_jobs().await?)
    }

    async fn undelivered(&self) -> Result<Vec<Undelivered>, ViewError> {
        let failed = self.0.jobs(&[crate::store::JobState::Failed]).await?;
        Ok(failed
            .into_iter()
            .filter_map(|job| match job.spec {
                crate::store::JobSpec::ChatPost { platform, .. }
                | crate::store::JobSpec::ChatSentReply { platform, .. } => Some(Undelivered {
                    job: job.id,
                    ticket: job.ticket.map(|t| t.get()),
                    platform: platform.as_str(),
                    error: job.last_error.unwrap_or_default(),
                }),
                _ => None,
            })
            .collect())
    }
}

/// One shared mailbox with its mail connections.
pub struct MailboxRuntime {
    pub settings: MailboxSettings,
    /// How ingest and the Sent filer log in to IMAP (the mailer holds its
    /// own, for SMTP).
    pub login: Arc<dyn LoginSource>,
    pub mailer: Arc<dyn Mailer>,
    pub filer: Arc<dyn SentFiler>,
}

/// How a mailbox's connections log in.
pub struct MailLogins {
    pub imap: Arc<dyn LoginSource>,
    /// None: SMTP without AUTH.
    pub smtp: Option<Arc<dyn LoginSource>>,
}

/// A mailbox's logins from its config: `imap.username`/`imap.password`,
/// and `smtp.username`/`smtp.password` when both are set.
pub fn mail_logins(m: &MailboxSettings) -> MailLogins {
    MailLogins {
        imap: Arc::new(imap::password_login(&m.imap)),
        smtp: crate::mail::smtp::password_login(&m.smtp)
            .map(|l| Arc::new(l) as Arc<dyn LoginSource>),
    }
}

/// Everything the flows share.
pub struct App {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn TicketStore>,
    pub mailboxes: BTreeMap<MailboxName, MailboxRuntime>,
    pub chats: BTreeMap<Platform, Arc<dyn ChatPlatform>>,
    /// Wakes the outbox worker when a job is queued.
    pub outbox_wakeup: Notify,
    /// Whether a worker that takes a job wakes an idle one to look at the
    /// other lanes (see [`outbox::IdleLooks`]).
    pub outbox_looks: outbox::IdleLooks,
    /// What `/metrics` shows; the flows count into it.
    pub metrics: Arc<Metrics>,
    /// When each mailbox was last checked (`/healthz`, the watchdog).
    pub health: Arc<Health>,
    /// The token sources of `auth = "oauth2"` mailboxes, kept fresh while running.
    pub oauth: BTreeMap<MailboxName, Arc<oauth::OAuthLogin>>,
    /// How long a mailbox waits before logging in again when the operator
    /// must sign in ([`crate::mail::ingest::SIGN_IN_RETRY`]; tests shorten it).
    pub sign_in_retry: std::time::Duration,
    /// Where the flows read "now" (tests put a [`ManualClock`] here to move
    /// SLA timers, snoozes and digests without sleeping).
    ///
    /// [`ManualClock`]: crate::domain::time::ManualClock
    pub clock: Arc<dyn Clock>,
    /// What chat platforms said lately about people's availability
    /// (auto-assignment skips those away).
    pub presence: Arc<assign::PresenceCache>,
    /// Tells the board tasks that tickets moved or a teammate opened their
    /// board ([`board`]).
    pub board: board::BoardHub,
    /// Set when this process is one replica of several (PostgreSQL): the
    /// mailboxes then run under leases ([`replica`]); unset, every mailbox
    /// runs here. `store` must then be the same database as this replica
    /// (`SqlStore::as_replica`), so its outbox records the jobs it takes.
    pub cluster: Option<Arc<replica::Cluster>>,
    /// Chat platforms failing now, for the "posting resumed" notice.
    pub chat_outages: outbox::ChatOutages,
}

impl App {
    /// Wires the real SMTP and IMAP clients for every configured mailbox.
    pub fn new(
        settings: Settings,
        store: Arc<dyn TicketStore>,
        chats: Vec<Arc<dyn ChatPlatform>>,
    ) -> App {
        let metrics = Arc::new(Metrics::new());
        let platforms: Vec<Platform> = chats.iter().map(|c| c.platform()).collect();
        let oauth = oauth::oauth_logins(&settings, &store, &metrics, &platforms);
        let mailboxes = settings
            .mailboxes
            .iter()
            .map(|m| {
                // An OAuth2 mailbox's IMAP and SMTP share its token source.
                let logins = match oauth.get(&m.name) {
                    Some(o) => MailLogins {
                        imap: o.clone(),
                        smtp: Some(o.clone()),
                    },
                    None => mail_logins(m),
                };
                let rt = MailboxRuntime {
                    settings: m.clone(),
                    mailer: Arc::new(SmtpMailer::new(m.smtp.clone(), logins.smtp)),
                    filer: Arc::new(ImapSentFiler::new(m.imap.clone(), logins.imap.clone())),
                    login: logins.imap,
                };
                (m.name.clone(), rt)
            })
            .collect();
        App {
            metrics,
            oauth,
            ..App::with_parts(settings, store, mailboxes, chats)
        }
    }

    /// Wires given parts (tests replace the mailer or filer).
    pub fn with_parts(
        settings: Settings,
        store: Arc<dyn TicketStore>,
        mailboxes: BTreeMap<MailboxName, MailboxRuntime>,
        chats: Vec<Arc<dyn ChatPlatform>>,
    ) -> App {
        let health = Health::new(mailboxes.keys().cloned(), settings.ops.stale_after);
        App {
            settings: Arc::new(settings),
            store,
            mailboxes,
            chats: chats.into_iter().map(|c| (c.platform(), c)).collect(),
            outbox_wakeup: Notify::new(),
            outbox_looks: outbox::IdleLooks::default(),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(health),
            oauth: BTreeMap::new(),
            sign_in_retry: crate::mail::ingest::SIGN_IN_RETRY,
            clock: Arc::new(SystemClock),
            presence: Arc::new(assign::PresenceCache::default()),
            board: board::BoardHub::default(),
            cluster: None,
            chat_outages: outbox::ChatOutages::default(),
        }
    }

    /// [`App::clock`]'s now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// What `/metrics` and `/healthz` read: the registry, the mailboxes'
    /// health and the outbox as the store counts it.
    pub fn ops_handles(&self) -> OpsHandles {
        OpsHandles {
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            outbox: Arc::new(StoreOutbox(self.store.clone())),
        }
    }

    pub fn mailbox(&self, name: &MailboxName) -> Option<&MailboxRuntime> {
        self.mailboxes.get(name)
    }

    /// The Slack workspace's address (`auth.test`'s `url`), which links to
    /// Slack threads are built on; `None` without Slack.
    pub fn slack_workspace(&self) -> Option<String> {
        self.chats
            .get(&Platform::Slack)
            .and_then(|c| c.workspace_url())
    }

    /// Chat platforms a mailbox's tickets are posted to (configured and running).
    /// Where a new ticket of `mailbox` is posted on each of `post_to`: the
    /// room a rule chose, else the mailbox's.
    pub fn rooms_for(
        &self,
        mailbox: &MailboxName,
        route: &crate::domain::routing::Route,
        post_to: &[Platform],
    ) -> std::collections::BTreeMap<Platform, String> {
        post_to
            .iter()
            .filter_map(|p| {
                let room = route.rooms.get(p).cloned();
                Some((*p, room.or_else(|| self.chat_room(mailbox, *p))?))
            })
            .collect()
    }

    pub fn platforms_for(&self, mailbox: &MailboxName) -> Vec<Platform> {
        let Some(m) = self.mailboxes.get(mailbox) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if m.settings.chat.matrix_room.is_some() && self.chats.contains_key(&Platform::Matrix) {
            out.push(Platform::Matrix);
        }
        if m.settings.chat.slack_channel.is_some() && self.chats.contains_key(&Platform::Slack) {
            out.push(Platform::Slack);
        }
        out
    }

    /// Runs ingest for every mailbox, the outbox worker and the watchdog
    /// until `cancel` fires, then waits for them to finish their current
    /// step. `chat_events` carries what the chat adapters saw teammates do.
    pub async fn run(
        self: Arc<Self>,
        cancel: CancellationToken,
        chat_events: Option<tokio::sync::mpsc::UnboundedReceiver<crate::chat::ChatEvent>>,
    ) {
        self.run_with_ops(cancel, chat_events, None).await
    }

    /// [`App::run`], also serving `/metrics` and `/healthz` on `ops` (bound
    /// by the caller, so a taken address is a startup error naming
    /// `ops.listen`).
    pub async fn run_with_ops(
        self: Arc<Self>,
        cancel: CancellationToken,
        chat_events: Option<tokio::sync::mpsc::UnboundedReceiver<crate::chat::ChatEvent>>,
        ops: Option<tokio::net::TcpListener>,
    ) {
        self.run_with_listeners(cancel, chat_events, ops, None)
            .await
    }

    /// [`App::run_with_ops`], also serving the dashboard on `web` (bound by
    /// the caller, like `ops`, so a taken address names `web.listen`).
    pub async fn run_with_listeners(
        self: Arc<Self>,
        cancel: CancellationToken,
        chat_events: Option<tokio::sync::mpsc::UnboundedReceiver<crate::chat::ChatEvent>>,
        ops: Option<tokio::net::TcpListener>,
        web: Option<tokio::net::TcpListener>,
    ) {
        let tracker = TaskTracker::new();
        match &self.cluster {
            None => {
                // Nothing may take a job before the crash rules ran on the
                // ones left in flight: a database that is unavailable now is
                // waited for (a reply skipped here would stay in flight,
                // neither sent nor reported, until the next start).
                let mut delay = std::time::Duration::from_millis(500);
                let recovered = loop {
                    match self.store.recover_in_flight(self.now_ms()).await {
                        Ok(jobs) => break jobs,
                        Err(e) if e.is_transient() => {
                            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database unavailable at start; waiting to recover the outbox");
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = cancel.cancelled() => return,
                            }
                            delay = (delay * 2).min(std::time::Duration::from_secs(30));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not inspect the outbox after start");
                            break Vec::new();
                        }
                    }
                };
                outbox::report_recovered(&self, recovered).await;
                for name in self.mailboxes.keys() {
                    spawn_mailbox(&self, name, self.store.clone(), &tracker, &cancel);
                }
            }
            Some(cluster) => {
                // Registered before the outbox worker takes a job, so the
                // others never see a job of a replica they think is dead.
                if let Err(e) = cluster.register().await {
                    tracing::error!(error = %e, "could not register this replica; retrying on the next heartbeat");
                }
                tracing::info!(replica = %cluster.id, "running as one replica of several; mailboxes by lease");
                tracker.spawn(replica::run(self.clone(), cancel.clone()));
            }
        }
        // Timers of every replica land in the one outbox, made once each
        // by their own marks, so every replica may schedule them.
        if let Err(e) = digest::ensure_timers(&self).await {
            tracing::error!(error = %e, "could not schedule the digests");
        }
        sla::check_all(&self).await;
        for login in self.oauth.values() {
            let span = tracing::info_span!("oauth", mailbox = %login.mailbox());
            tracker.spawn(tracing::Instrument::instrument(
                oauth::keep_fresh(login.clone(), cancel.clone()),
                span,
            ));
        }
        for _ in 0..self.settings.outbox.workers {
            tracker.spawn(outbox::run(self.clone(), cancel.clone()));
        }
        tracker.spawn(watchdog::run(self.clone(), cancel.clone()));
        if self.settings.board.enabled {
            for platform in self.chats.keys() {
                tracker.spawn(board::run(self.clone(), *platform, cancel.clone()));
            }
        }
        if let Some(listener) = ops {
            tracker.spawn(crate::ops::http::serve(
                self.ops_handles(),
                listener,
                cancel.clone(),
            ));
        }
        if let Some(listener) = web {
            tracker.spawn(crate::web::serve(
                self.web_handles(),
                listener,
                cancel.clone(),
            ));
        }
        if let Some(events) = chat_events {
            tracker.spawn(chat::run(self.clone(), events, cancel.clone()));
        }
        tracker.close();
        cancel.cancelled().await;
        tracing::info!("shutting down: finishing in-flight work");
        tracker.wait().await;
    }
}
