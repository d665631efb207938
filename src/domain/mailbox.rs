//! Where ingest stands in a mailbox folder: written by the store, read and
//! advanced by the IMAP side.

/// Where ingest stands in a mailbox folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uid_validity: u32,
    pub last_uid: u32,
}
