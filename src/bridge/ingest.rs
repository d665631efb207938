//! Ingest flow: a raw email from IMAP → a ticket (new or existing).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{App, now_ms};
use crate::domain::hygiene::{LoopVerdict, judge_loop, loop_notice};
use crate::domain::ids::{EmailAddress, MailboxName, MessageId, TicketToken};
use crate::domain::mailbox::Checkpoint;
use crate::domain::routing::Route;
use crate::domain::threading::{ThreadDecision, ThreadKeys, decide};
use crate::mail::ingest::{Fetched, IngestError, IngestSink, SinkError};
use crate::mail::parse::{InboundEmail, parse_email};
use crate::store::{
    Destination, JobSpec, LookUpKey, LoopRecord, NewEmail, NewInbound, Recorded, StoreError,
    TicketStore,
};

/// A fresh random ticket token.
pub fn new_token() -> TicketToken {
    let mut bytes = [0u8; TicketToken::LEN];
    // getrandom only fails when the OS has no entropy source at all; a
    // predictable token would still be unique (the store enforces it), so
    // fall back to the clock rather than refuse the mail.
    if getrandom::fill(&mut bytes).is_err() {
        let t = now_ms().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = t[i % t.len()].wrapping_add(i as u8);
        }
    }
    TicketToken::from_random(bytes)
}

/// An email to store: its bytes, as parsed, and the folder position it
/// advances to (none for mail that did not come from the folder).
pub struct ParsedMail {
    pub raw: Vec<u8>,
    pub checkpoint: Option<Checkpoint>,
    pub parsed: InboundEmail,
}

impl From<Fetched> for ParsedMail {
    fn from(m: Fetched) -> Self {
        ParsedMail {
            raw: m.raw,
            checkpoint: Some(m.checkpoint),
            parsed: m.parsed,
        }
    }
}

/// The ingest flow for one mailbox.
pub struct MailboxIngest {
    app: Arc<App>,
    mailbox: MailboxName,
    /// Where the mail and checkpoints go: the app's store, or, on a
    /// replica, that store fenced by the mailbox's lease.
    store: Arc<dyn TicketStore>,
}

impl MailboxIngest {
    pub fn new(app: Arc<App>, mailbox: MailboxName) -> Self {
        let store = app.store.clone();
        MailboxIngest::writing_to(app, mailbox, store)
    }

    /// Ingest whose writes go through `store` (a lease-fenced one).
    pub fn writing_to(app: Arc<App>, mailbox: MailboxName, store: Arc<dyn TicketStore>) -> Self {
        MailboxIngest {
            app,
            mailbox,
            store,
        }
    }

    /// Stores one raw email; `checkpoint` is advanced in the same transaction.
    pub async fn ingest(
        &self,
        raw: Vec<u8>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Recorded, StoreError> {
        let mut recorded = self.ingest_many(vec![(raw, checkpoint)]).await?;
        recorded
            .pop()
            .ok_or_else(|| StoreError::Open("ingest recorded nothing".into()))
    }

    /// Stores raw emails, each with the checkpoint (folder position) it
    /// advances to, in order and in one transaction: all of them or none.
    pub async fn ingest_many(
        &self,
        mails: Vec<(Vec<u8>, Option<Checkpoint>)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let mails = mails
            .into_iter()
            .map(|(raw, checkpoint)| ParsedMail {
                parsed: parse_email(&raw),
                raw,
                checkpoint,
            })
            .collect();
        self.ingest_parsed(mails).await
    }

    /// [`Self::ingest_many`] for emails already parsed (the IMAP side parses
    /// a batch while the one before it is stored).
    pub async fn ingest_parsed(&self, mails: Vec<ParsedMail>) -> Result<Vec<Recorded>, StoreError> {
        let Some(mailbox) = self.app.mailbox(&self.mailbox) else {
            return Err(StoreError::Open(format!(
                "mailbox {} is not configured",
                self.mailbox
            )));
        };
        let shared = &mailbox.settings.address;
        let window = mailbox.settings.subject_window.as_secs() as i64;
        let limit = mailbox.settings.loop_guard.limit();
        let mut loops: Vec<LoopVerdict> = Vec::new();
        let count = mails.len();
        // Before the transaction: a network call never holds the database.
        let unavailable = self.app.unavailable_people().await;
        // Keyed all first: the batch's look-ups are read at once.
        let mails: Vec<Parsed> = mails
            .into_iter()
            .map(|m| {
                let now = self.app.now_ms();
                let keys = thread_keys(&m.parsed, shared, now);
                Parsed {
                    raw: m.raw,
                    checkpoint: m.checkpoint,
                    parsed: m.parsed,
                    now,
                    keys,
                }
            })
            .collect();
        let mut batch = self.store.begin_ingest().await?;
        if count > 1 {
            let wanted: Vec<LookUpKey<'_>> = mails
                .iter()
                .map(|m| LookUpKey {
                    keys: &m.keys,
                    message_id: &m.parsed.message_id,
                    content_hash: &m.parsed.content_hash,
                    since_ms: m.now - limit.window_ms(),
                })
                .collect();
            batch.prefetch(&self.mailbox, &wanted).await?;
        }
        let mut message_ids: Vec<MessageId> = Vec::with_capacity(count);
        for (n, mail) in mails.into_iter().enumerate() {
            let Parsed {
                raw,
                checkpoint,
                parsed,
                now,
                keys,
            } = mail;
            // The threading candidates, the sender's activity for the loop
            // guard and the duplicate check (answered from the prefetch
            // when nothing written since changes them).
            let looked = batch
                .look_up(
                    &self.mailbox,
                    &keys,
                    (&parsed.message_id, &parsed.content_hash),
                    now - limit.window_ms(),
                )
                .await?;
            let found = looked.candidates;
            let (mut destination, refused) = match decide(&keys, &found, window) {
                ThreadDecision::FollowUp { ticket, by } => (
                    Destination::FollowUp {
                        ticket,
                        matched_by: by.as_str(),
                    },
                    Vec::new(),
                ),
                ThreadDecision::NewTicket { refused } => {
                    (Destination::New { token: new_token() }, refused)
                }
            };
            let mut participants: Vec<EmailAddress> = Vec::new();
            for p in std::iter::once(&parsed.from)
                .chain(parsed.reply_to.iter())
                .chain(parsed.to.iter())
                .chain(parsed.cc.iter())
            {
                if !shared.is_same_mailbox(&p.address) && !participants.contains(&p.address) {
                    participants.push(p.address.clone());
                }
            }
            // The loop guard: past the limit, the sender's mail is stored
            // quietly in their latest ticket (never a new ticket each), and
            // the room hears of the loop once.
            let activity = looked.activity;
            let verdict = judge_loop(activity.facts, limit, now);
            let mut automatic = parsed.auto.map(|a| a.as_str());
            if verdict.is_loop() {
                if let (Destination::New { .. }, Some(ticket)) =
                    (&destination, activity.latest_ticket)
                {
                    destination = Destination::FollowUp {
                        ticket,
                        matched_by: "mail loop",
                    };
                }
                automatic = Some(automatic.unwrap_or("mail-loop"));
            }
            // Only a new ticket is routed; a follow-up goes where its ticket is.
            let (route, mut post_to) = match destination {
                Destination::New { .. } => {
                    self.app
                        .route_new(&self.mailbox, shared, &parsed, &unavailable)
                }
                Destination::FollowUp { .. } => {
                    (Route::default(), self.app.platforms_for(&self.mailbox))
                }
            };
            if verdict.is_loop() {
                post_to.clear();
            }
            let new = NewInbound {
                mailbox: self.mailbox.clone(),
                // Written once, with the last email: they come in UID order.
                checkpoint: checkpoint.filter(|_| n + 1 == count),
                imap_uid: checkpoint.map(|c| c.last_uid),
                email: NewEmail {
                    message_id: parsed.message_id.clone(),
                    content_hash: parsed.content_hash.clone(),
                    from: parsed.from.clone(),
                    subject: parsed.subject.clone(),
                    sent_at: parsed.date,
                    raw,
                    participants,
                },
                destination,
                automatic,
                refused_merges: refused,
                rooms: self.app.rooms_for(&self.mailbox, &route, &post_to),
                post_to,
                route,
                now_ms: now,
            };
            // A loop's mail is never left waiting for the commit: its
            // ticket is known here.
            let recorded = batch.record_inbound(new).await?;
            if verdict.is_loop()
                && let Some(ticket) = recorded.and_then(|r| r.ticket())
            {
                let sender = &parsed.from.address;
                let count = activity.facts.recent.saturating_add(1);
                let text = loop_notice(sender, count, limit, ticket);
                let notices = self
                    .app
                    .platforms_for(&self.mailbox)
                    .into_iter()
                    .filter_map(|platform| {
                        let room = self.app.chat_room(&self.mailbox, platform)?;
                        Some(JobSpec::ChatRoomNotice {
                            platform,
                            room,
                            text: text.clone(),
                        })
                    })
                    .collect();
                batch
                    .record_loop(LoopRecord {
                        mailbox: self.mailbox.clone(),
                        sender: sender.clone(),
                        ticket,
                        verdict,
                        details: format!(
                            "{count} messages from {sender} within {} minutes; their mail is filed here without chat posts until the rate drops",
                            limit.window.as_secs() / 60
                        ),
                        notices,
                        now_ms: now,
                    })
                    .await?;
                loops.push(verdict);
            }
            message_ids.push(parsed.message_id);
        }
        let done: Vec<(Recorded, MessageId)> =
            batch.commit().await?.into_iter().zip(message_ids).collect();
        for verdict in &loops {
            let started = *verdict == LoopVerdict::Started;
            self.app.metrics.mail_loop(&self.mailbox, started);
            if started {
                tracing::warn!(mailbox = %self.mailbox, "mail loop detected; its mail is filed without chat posts");
            }
        }
        let mut posted = !loops.is_empty();
        for (recorded, message_id) in &done {
            match recorded {
                Recorded::Duplicate => {
                    tracing::debug!(%message_id, "already stored; skipped")
                }
                Recorded::NewTicket { ticket, .. } => {
                    tracing::info!(%ticket, %message_id, "new ticket");
                    posted = true;
                }
                Recorded::FollowUp {
                    ticket, reopened, ..
                } => {
                    tracing::info!(%ticket, reopened, %message_id, "follow-up");
                    posted = true;
                }
            }
        }
        if posted {
            self.app.outbox_wakeup.notify_one();
        }
        // A new ticket or a customer's mail may start an SLA clock.
        for (recorded, _) in &done {
            if let Recorded::NewTicket { ticket, .. } | Recorded::FollowUp { ticket, .. } = recorded
            {
                crate::bridge::sla::recheck(&self.app, *ticket).await;
            }
        }
        Ok(done.into_iter().map(|(r, _)| r).collect())
    }
}

/// One email of a batch, parsed, with its arrival time and threading keys.
struct Parsed {
    raw: Vec<u8>,
    checkpoint: Option<Checkpoint>,
    parsed: InboundEmail,
    now: i64,
    keys: ThreadKeys,
}

/// The threading facts of a parsed email.
pub fn thread_keys(parsed: &InboundEmail, shared: &EmailAddress, now_ms: i64) -> ThreadKeys {
    let tokens = parsed
        .to
        .iter()
        .chain(parsed.cc.iter())
        .filter_map(|p| shared.plus_tag_of(&p.address))
        .filter_map(|t| TicketToken::parse(t).ok())
        .collect();
    ThreadKeys {
        from: parsed.from.address.clone(),
        in_reply_to: parsed.in_reply_to.clone(),
        references: parsed.references.clone(),
        tokens,
        subject: parsed.subject.clone(),
        at: now_ms / 1000,
        returned: parsed.returned_id.clone(),
    }
}

/// The store's failures as the IMAP side sees them: transient or not.
impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        SinkError::new(e.is_transient(), e)
    }
}

#[async_trait]
impl IngestSink for MailboxIngest {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError> {
        Ok(self.store.checkpoint(&self.mailbox).await?)
    }

    async fn save_checkpoint(&self, cp: Checkpoint) -> Result<(), SinkError> {
        Ok(self
            .store
            .save_checkpoint(&self.mailbox, cp, self.app.now_ms())
            .await?)
    }

    async fn accept(&self, mails: Vec<Fetched>, fetched: Instant) -> Result<(), SinkError> {
        let mails = mails.into_iter().map(ParsedMail::from).collect();
        let recorded = self.ingest_parsed(mails).await?;
        for r in &recorded {
            if !matches!(r, Recorded::Duplicate) {
                self.app
                    .metrics
                    .email_ingested(&self.mailbox, fetched.elapsed());
            }
        }
        // A stored message proves the mailbox is being read, even in the
        // middle of a long backlog that delays the end of the pass.
        self.app.health.checked(&self.mailbox);
        Ok(())
    }

    fn synced(&self) {
        self.app.health.checked(&self.mailbox);
    }

    fn reconnecting(&self, error: &IngestError) {
        self.app.metrics.imap_reconnect(&self.mailbox);
        self.app.health.failed(&self.mailbox, error.to_string());
    }
}
