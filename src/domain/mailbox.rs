//! Where ingest stands in a mailbox folder: written by the store, read and
//! advanced by the IMAP side.

/// Where ingest stands in a mailbox folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// Which of a mailbox's folders a checkpoint follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FolderRole {
    /// The folder customers' mail arrives in (`imap.folder`, INBOX by default).
    Inbox,
    /// The Sent folder, watched for replies written outside mailroom.
    Sent,
}

impl FolderRole {
    /// Stable text form used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Inbox => "inbox",
            FolderRole::Sent => "sent",
        }
    }
}
