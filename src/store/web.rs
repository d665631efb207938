//! The dashboard's sign-in links and sessions. Queries: `sql/web.rs`.

use crate::domain::ids::Agent;
use crate::domain::web::SecretHash;

/// A sign-in link to store (its token's hash) when it is handed out.
#[derive(Debug, Clone)]
pub struct NewWebLink {
    pub token: SecretHash,
    pub agent: Agent,
    pub expires_at_ms: i64,
    /// Where it was asked for (`matrix`, `slack`, `cli`), for the audit line.
    pub via: String,
}

/// The session a good link opens.
#[derive(Debug, Clone)]
pub struct NewWebSession {
    pub id: SecretHash,
    pub expires_at_ms: i64,
}
