//! [`StoreError`]: what can go wrong in any store method, with the one
//! question callers ask of it — retry or not ([`StoreError::is_transient`]).

/// Errors from the store. Callers branch on [`StoreError::is_transient`], never on text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or was busy; the operation may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A query failed for a reason retrying will not fix.
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode into the domain (manual edits, corruption).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The database could not be opened (bad path, permissions).
    #[error("cannot open the database: {0}")]
    Open(String),
    /// A write under a lease was refused: the lease changed hands (or was
    /// released) since the writer took it, so another replica owns the
    /// resource now and this write must not land (docs/SCALING.md).
    #[error("lease on {resource} lost (token {token} is no longer current); write refused")]
    Fenced { resource: String, token: i64 },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                // SQLite BUSY/LOCKED, PostgreSQL serialization/deadlock/admin shutdown.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                matches!(
                    code.as_str(),
                    "5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                ) || db.message().contains("database is locked")
            }
            _ => false,
        };
        if transient {
            StoreError::Unavailable(e)
        } else {
            StoreError::Query(e)
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
