//! Auto-assignment's vocabulary: an away mark. The pick itself is made in
//! the ingest's transaction from the route's [`AutoAssign`]; queries:
//! `sql/assign.rs`.
//!
//! [`AutoAssign`]: crate::domain::assign::AutoAssign

/// A person's `!away`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwayMark {
    /// The name in `[people]`.
    pub person: String,
    pub since_ms: i64,
    /// `None`: until they say `!back`.
    pub until_ms: Option<i64>,
    /// Who set it (`Actor::to_stored`).
    pub set_by: String,
}
