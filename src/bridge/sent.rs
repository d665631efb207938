//! Replies written outside mailroom: each message found in a mailbox's Sent
//! folder that answers a ticket's conversation becomes the ticket's
//! outbound email, posted in its thread as "Replied from the mailbox by …"
//! and counted as a teammate's reply (pending, first response, audit).
//!
//! Mailroom's own replies are in Sent too (it files them there): their
//! Message-IDs are stored, so they are recognised and skipped, as is any
//! message seen before a restart or a rescan. A message answering nothing
//! mailroom knows is passed over: Sent never opens a ticket.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::App;
use super::ingest::thread_keys;
use crate::domain::ids::{EmailAddress, MailboxName};
use crate::domain::mailbox::{Checkpoint, FolderRole};
use crate::mail::ingest::{Fetched, IngestError, IngestSink, SinkError};
use crate::mail::parse::InboundEmail;
use crate::store::{SentBatch, SentMail, SentRecorded, StoreError, TicketStore};

/// The Sent watcher's sink for one mailbox.
pub struct SentIngest {
    app: Arc<App>,
    mailbox: MailboxName,
    /// The app's store, or on a replica that store fenced by the
    /// mailbox's lease.
    store: Arc<dyn TicketStore>,
}

impl SentIngest {
    pub fn new(app: Arc<App>, mailbox: MailboxName) -> Self {
        let store = app.store.clone();
        SentIngest::writing_to(app, mailbox, store)
    }

    /// A Sent watcher whose writes go through `store` (a lease-fenced one).
    pub fn writing_to(app: Arc<App>, mailbox: MailboxName, store: Arc<dyn TicketStore>) -> Self {
        SentIngest {
            app,
            mailbox,
            store,
        }
    }

    /// Stores raw Sent messages (in UID order) with the checkpoint of the
    /// last, in one transaction.
    pub async fn record(
        &self,
        raws: Vec<(Vec<u8>, InboundEmail)>,
        checkpoint: Checkpoint,
    ) -> Result<Vec<SentRecorded>, StoreError> {
        let Some(mailbox) = self.app.mailbox(&self.mailbox) else {
            return Err(StoreError::Open(format!(
                "mailbox {} is not configured",
                self.mailbox
            )));
        };
        let shared = &mailbox.settings.address;
        let now = self.app.now_ms();
        let mails: Vec<SentMail> = raws
            .into_iter()
            .map(|(raw, parsed)| sent_mail(raw, parsed, shared, now))
            .collect();
        let ids: Vec<String> = mails.iter().map(|m| m.message_id.to_string()).collect();
        let batch = SentBatch {
            mailbox: self.mailbox.clone(),
            mails,
            checkpoint,
            post_to: self.app.platforms_for(&self.mailbox),
            now_ms: now,
        };
        let recorded = self.store.record_sent(batch).await?;
        let mut posted = false;
        for (r, message_id) in recorded.iter().zip(&ids) {
            match r {
                SentRecorded::Known => {
                    tracing::debug!(%message_id, "sent message already stored; skipped")
                }
                SentRecorded::Unthreaded => {
                    tracing::debug!(%message_id, "sent message answers no ticket; passed over")
                }
                SentRecorded::Reply {
                    ticket,
                    now_pending,
                    ..
                } => {
                    tracing::info!(%ticket, %message_id, now_pending, "reply written outside mailroom");
                    posted = true;
                }
            }
        }
        if posted {
            self.app.outbox_wakeup.notify_one();
        }
        Ok(recorded)
    }
}

/// A raw Sent message as the store takes it.
fn sent_mail(raw: Vec<u8>, parsed: InboundEmail, shared: &EmailAddress, now_ms: i64) -> SentMail {
    let referenced = thread_keys(&parsed, shared, now_ms).referenced_ids();
    let mut recipients: Vec<EmailAddress> = Vec::new();
    for p in parsed.to.iter().chain(parsed.cc.iter()) {
        if !shared.is_same_mailbox(&p.address) && !recipients.contains(&p.address) {
            recipients.push(p.address.clone());
        }
    }
    SentMail {
        written_by: parsed.sender.clone().unwrap_or_else(|| parsed.from.clone()),
        message_id: parsed.message_id,
        content_hash: parsed.content_hash,
        from: parsed.from,
        subject: parsed.subject,
        sent_at: parsed.date,
        referenced,
        recipients,
        raw,
    }
}

#[async_trait]
impl IngestSink for SentIngest {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError> {
        Ok(self
            .store
            .folder_checkpoint(&self.mailbox, FolderRole::Sent)
            .await?)
    }

    async fn save_checkpoint(&self, cp: Checkpoint) -> Result<(), SinkError> {
        Ok(self
            .store
            .save_folder_checkpoint(&self.mailbox, FolderRole::Sent, cp, self.app.now_ms())
            .await?)
    }

    async fn accept(&self, mails: Vec<Fetched>, _fetched: Instant) -> Result<(), SinkError> {
        let Some(last) = mails.last().map(|m| m.checkpoint) else {
            return Ok(());
        };
        let raws = mails.into_iter().map(|m| (m.raw, m.parsed)).collect();
        self.record(raws, last).await?;
        Ok(())
    }

    // Mailbox health stays INBOX's: a Sent watcher that works says nothing
    // about whether customers' mail is read.

    fn reconnecting(&self, _error: &IngestError) {
        self.app.metrics.imap_reconnect(&self.mailbox);
    }
}
