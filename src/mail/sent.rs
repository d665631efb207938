//! The mailbox's Sent folder: which folder it is, and watching it for
//! replies written outside mailroom (Outlook, Gmail).
//!
//! - Which folder: `imap.sent_folder` when given; otherwise the folder the
//!   server marks `\Sent` (RFC 6154 SPECIAL-USE), asked with
//!   `LIST "" "*" RETURN (SPECIAL-USE)` where the server announces
//!   SPECIAL-USE and a plain `LIST "" "*"` elsewhere (servers that mark
//!   folders without the capability, such as Gmail, mark them there).
//!   Filing mailroom's own replies and watching use the same answer.
//! - Watching: a second connection per mailbox running the ingest loop of
//!   [`crate::mail::ingest`] on the Sent folder (IDLE, checkpoints,
//!   reconnects with backoff), always from what arrives after the first
//!   start: the folder's history is the team's past, not news.

use std::sync::Arc;
use std::time::Duration;

use async_imap::types::NameAttribute;
use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::mail::imap::{self, COMMAND_TIMEOUT, ImapError, Session, timed};
use crate::mail::ingest::{self, IngestSink, Watch};
use crate::mail::settings::{ImapSettings, InitialSync};

/// A folder as LIST reports it, reduced to what choosing the Sent folder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFolder {
    pub name: String,
    /// Marked `\Sent`.
    pub sent: bool,
    /// Neither `\Noselect` nor `\NonExistent`.
    pub selectable: bool,
}

impl ListedFolder {
    pub fn new(name: &str, attributes: &[NameAttribute<'_>]) -> ListedFolder {
        let flag = |f: &str| {
            attributes
                .iter()
                .any(|a| matches!(a, NameAttribute::Extension(e) if e.eq_ignore_ascii_case(f)))
        };
        ListedFolder {
            name: name.to_owned(),
            sent: attributes.contains(&NameAttribute::Sent),
            selectable: !attributes.contains(&NameAttribute::NoSelect) && !flag("\\NonExistent"),
        }
    }
}

/// The Sent folder among those listed: the first selectable one marked
/// `\Sent`.
pub fn pick_sent(folders: &[ListedFolder]) -> Option<&str> {
    folders
        .iter()
        .find(|f| f.sent && f.selectable)
        .map(|f| f.name.as_str())
}

/// Asks the server which folder is marked `\Sent`.
pub async fn detect_sent(session: &mut Session) -> Result<Option<String>, ImapError> {
    let caps = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
    // async-imap sends the pattern as given, so the RFC 5258 return option
    // can ride along with it.
    let pattern = if caps.has_str("SPECIAL-USE") {
        "\"*\" RETURN (SPECIAL-USE)"
    } else {
        "\"*\""
    };
    let folders: Vec<ListedFolder> = timed("LIST", COMMAND_TIMEOUT, async {
        let names = session.list(Some(""), Some(pattern)).await?;
        let names: Vec<_> = names.try_collect().await?;
        Ok::<_, async_imap::error::Error>(
            names
                .iter()
                .map(|n| ListedFolder::new(n.name(), n.attributes()))
                .collect(),
        )
    })
    .await?;
    Ok(pick_sent(&folders).map(str::to_owned))
}

/// The Sent folder of a mailbox: `imap.sent_folder`, or the one the server
/// marks `\Sent`; `None` when neither names one.
pub async fn sent_folder(
    session: &mut Session,
    settings: &ImapSettings,
) -> Result<Option<String>, ImapError> {
    match &settings.sent_folder {
        Some(name) => Ok(Some(name.clone())),
        None => detect_sent(session).await,
    }
}

/// Watches the mailbox's Sent folder until `cancel` fires, handing each new
/// message to `sink`. `watch` is the mailbox's ingest (its folder and
/// initial sync are replaced). A mailbox without a Sent folder is told once
/// in the log and left alone: its INBOX works as ever.
pub async fn watch(watch: Watch, sink: Arc<dyn IngestSink>, cancel: CancellationToken) {
    let settings = &watch.settings;
    let mut delay = Duration::from_millis(500);
    // The connection the folder is looked up on is the one that watches
    // it: a second login per mailbox at every start would only add to the
    // server's work (see `ingest::run_on`).
    let (folder, open) = loop {
        let found = async {
            let mut session = imap::connect(settings, watch.login.as_ref()).await?;
            match sent_folder(&mut session, settings).await {
                Ok(Some(folder)) => Ok(Some((folder, session))),
                other => {
                    imap::logout(session).await;
                    other.map(|_| None)
                }
            }
        }
        .await;
        match found {
            Ok(Some(found)) => break found,
            Ok(None) => {
                tracing::warn!(
                    "the server marks no folder \\Sent: replies written outside mailroom are not seen \
                     (set imap.sent_folder to the Sent folder's name, or imap.watch_sent = false)"
                );
                return;
            }
            Err(e) => {
                // Only the operator can help a refused sign-in: ask the
                // login source no more often than the ingest loop does.
                let wait = if e.needs_sign_in() {
                    watch.sign_in_retry
                } else {
                    delay
                };
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot look up the Sent folder; retrying");
                sink.reconnecting(&e.into());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
    };
    tracing::info!(%folder, "watching the Sent folder for replies written outside mailroom");
    let watch = Watch {
        settings: ImapSettings {
            folder,
            ..watch.settings
        },
        initial: InitialSync::NewOnly,
        ..watch
    };
    ingest::run_on(watch, Some(open), sink, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::imap_proto::{MailboxDatum, Response};

    /// A LIST response line as a server writes it, read by the protocol
    /// parser mailroom's IMAP client uses.
    fn listed(line: &str) -> ListedFolder {
        match Response::parse(line.as_bytes()) {
            Ok((_, Response::MailboxData(MailboxDatum::List(l)))) => {
                ListedFolder::new(&l.name, &l.name_attributes)
            }
            other => panic!("not a LIST response: {other:?}"),
        }
    }

    #[test]
    fn the_folder_marked_sent_is_picked_whatever_its_name() {
        let folders = [
            listed("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
            listed("* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n"),
            listed("* LIST (\\HasNoChildren) \"/\" Sent\r\n"),
            listed("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"),
            listed("* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"),
        ];
        assert_eq!(pick_sent(&folders), Some("Sent Items"));
    }

    #[test]
    fn gmail_style_names_and_unselectable_folders() {
        let folders = [
            listed("* LIST (\\HasChildren \\Noselect) \"/\" \"[Gmail]\"\r\n"),
            listed("* LIST (\\HasNoChildren \\Sent) \"/\" \"[Gmail]/Sent Mail\"\r\n"),
        ];
        assert_eq!(pick_sent(&folders), Some("[Gmail]/Sent Mail"));
        let unusable = [
            listed("* LIST (\\NonExistent \\Sent) \"/\" Gone\r\n"),
            listed("* LIST (\\Noselect \\Sent) \"/\" Parent\r\n"),
        ];
        assert_eq!(pick_sent(&unusable), None);
        assert_eq!(pick_sent(&[listed("* LIST () \"/\" INBOX\r\n")]), None);
    }
}
