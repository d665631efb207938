//! The rows figures are computed from (definitions: `docs/ANALYTICS.md`).
//! The database selects and counts, per ticket; medians and shares are
//! taken in `domain::analytics`. Tables: `tickets`, `ticket_tags`,
//! `audit_log` (close and reopen lines), `emails` (sent replies).
//! Indexes: `tickets_by_created`, `audit_by_action` (migration 0013).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::corrupt;
use super::tickets::state_from_row;
use crate::domain::analytics::{ActiveTicket, PeriodRows, ReceivedTicket, ResolvedTicket, Scope};
use crate::domain::ids::{Agent, MailboxName, Tag};
use crate::store::StoreResult;

/// A value bound to a `$n` placeholder.
enum Arg {
    Int(i64),
    Text(String),
}

/// A query's text and its arguments, kept in step: each [`Sql::arg`]
/// writes the next `$n` and remembers the value for it.
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, fragment: &str) -> &mut Sql {
        self.text.push_str(fragment);
        self
    }

    fn arg(&mut self, value: Arg) -> &mut Sql {
        self.args.push(value);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// The scope's conditions on the tickets aliased `t`.
    fn scope(&mut self, scope: &Scope) -> &mut Sql {
        if !scope.mailboxes.is_empty() {
            self.push(" AND t.mailbox IN (");
            for (i, m) in scope.mailboxes.iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                self.arg(Arg::Text(m.as_str().to_owned()));
            }
            self.push(")");
        }
        if let Some(p) = &scope.person {
            self.push(" AND t.owner = ")
                .arg(Arg::Text(p.as_str().to_owned()));
        }
        if let Some(tag) = &scope.tag {
            self.push(
                " AND EXISTS (SELECT 1 FROM ticket_tags g WHERE g.ticket_id = t.id AND g.tag = ",
            )
            .arg(Arg::Text(tag.as_str().to_owned()))
            .push(")");
        }
        self
    }

    async fn fetch_all(&self, pool: &AnyPool) -> StoreResult<Vec<AnyRow>> {
        // Only fixed fragments and `$n` placeholders are concatenated;
        // every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for a in &self.args {
            q = match a {
                Arg::Int(n) => q.bind(*n),
                Arg::Text(s) => q.bind(s.clone()),
            };
        }
        Ok(q.fetch_all(pool).await?)
    }
}

/// Tickets received in `[from, to)` that were not set aside.
fn received_cohort(scope: &Scope, from_ms: i64, to_ms: i64, select: &str) -> Sql {
    let mut sql = Sql::new(select);
    sql.push(" WHERE t.created_at >= ")
        .arg(Arg::Int(from_ms))
        .push(" AND t.created_at < ")
        .arg(Arg::Int(to_ms))
        .push(" AND t.status NOT IN ('ignored', 'spam')")
        .scope(scope);
    sql
}

/// Tickets closed now with a close line in `[from, to)`. Whether their
/// *last* close is in the period is checked on the rows (a ticket closed
/// in the period, reopened and closed again after it is not resolved in it).
fn resolved_candidates(scope: &Scope, from_ms: i64, to_ms: i64, select: &str) -> Sql {
    let mut sql = Sql::new(select);
    sql.push(
        " WHERE t.status = 'closed' AND t.id IN \
         (SELECT a.ticket_id FROM audit_log a WHERE a.action = 'close' AND a.at >= ",
    )
    .arg(Arg::Int(from_ms))
    .push(" AND a.at < ")
    .arg(Arg::Int(to_ms))
    .push(")")
    .scope(scope);
    sql
}

pub(super) async fn period_rows(
    pool: &AnyPool,
    scope: &Scope,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<PeriodRows> {
    let received_sql = received_cohort(
        scope,
        from_ms,
        to_ms,
        "SELECT t.id, t.mailbox, t.owner, t.created_at, t.first_response_at FROM tickets t",
    );
    let received_tags = received_cohort(
        scope,
        from_ms,
        to_ms,
        "SELECT g.ticket_id, g.tag FROM ticket_tags g JOIN tickets t ON t.id = g.ticket_id",
    );
    // The last close, whether a reopen came after the first close (only a
    // reopen can take a ticket out of Closed, so any reopen line after the
    // first close is one), and the replies sent: per ticket, each through
    // the per-ticket indexes.
    let resolved_sql = resolved_candidates(
        scope,
        from_ms,
        to_ms,
        "SELECT t.id, t.mailbox, t.owner, t.created_at, \
         (SELECT MAX(c.at) FROM audit_log c WHERE c.ticket_id = t.id AND c.action = 'close') AS last_close, \
         (SELECT MIN(c.id) FROM audit_log c WHERE c.ticket_id = t.id AND c.action = 'close') AS first_close_id, \
         (SELECT MAX(r.id) FROM audit_log r WHERE r.ticket_id = t.id AND r.action = 'reopen') AS last_reopen_id, \
         (SELECT COUNT(*) FROM emails e WHERE e.ticket_id = t.id AND e.direction = 'outbound' AND e.state = 'sent') AS replies \
         FROM tickets t",
    );
    let resolved_tags = resolved_candidates(
        scope,
        from_ms,
        to_ms,
        "SELECT g.ticket_id, g.tag FROM ticket_tags g JOIN tickets t ON t.id = g.ticket_id",
    );

    let mut tags = tags_by_ticket(&received_tags.fetch_all(pool).await?)?;
    let mut received = Vec::new();
    for row in received_sql.fetch_all(pool).await? {
        let id: i64 = row.try_get("id")?;
        received.push(ReceivedTicket {
            mailbox: mailbox(&row)?,
            owner: owner(&row)?,
            tags: tags.remove(&id).unwrap_or_default(),
            created_ms: row.try_get("created_at")?,
            first_response_ms: row.try_get("first_response_at")?,
        });
    }

    let mut tags = tags_by_ticket(&resolved_tags.fetch_all(pool).await?)?;
    let mut resolved = Vec::new();
    for row in resolved_sql.fetch_all(pool).await? {
        let id: i64 = row.try_get("id")?;
        let last_close: Option<i64> = row.try_get("last_close")?;
        let Some(last_close_ms) = last_close.filter(|c| (from_ms..to_ms).contains(c)) else {
            continue;
        };
        let first_close: Option<i64> = row.try_get("first_close_id")?;
        let last_reopen: Option<i64> = row.try_get("last_reopen_id")?;
        let replies: i64 = row.try_get("replies")?;
        resolved.push(ResolvedTicket {
            mailbox: mailbox(&row)?,
            owner: owner(&row)?,
            tags: tags.remove(&id).unwrap_or_default(),
            created_ms: row.try_get("created_at")?,
            last_close_ms,
            replies: u64::try_from(replies).unwrap_or(0),
            reopened: matches!((first_close, last_reopen), (Some(c), Some(r)) if r > c),
        });
    }
    Ok(PeriodRows { received, resolved })
}

pub(super) async fn active_tickets(
    pool: &AnyPool,
    scope: &Scope,
) -> StoreResult<Vec<ActiveTicket>> {
    let mut sql = Sql::new(
        "SELECT t.mailbox, t.status, t.owner, t.created_at FROM tickets t \
         WHERE t.status IN ('open', 'claimed', 'pending')",
    );
    sql.scope(scope);
    sql.fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            let state = state_from_row(row)?;
            Ok(ActiveTicket {
                mailbox: mailbox(row)?,
                status: state.status(),
                owner: state.owner().cloned(),
                created_ms: row.try_get("created_at")?,
            })
        })
        .collect()
}

fn tags_by_ticket(rows: &[AnyRow]) -> StoreResult<HashMap<i64, Vec<Tag>>> {
    let mut out: HashMap<i64, Vec<Tag>> = HashMap::new();
    for row in rows {
        let tag: String = row.try_get("tag")?;
        let tag = Tag::parse(&tag).map_err(|e| corrupt("ticket_tags", e))?;
        out.entry(row.try_get("ticket_id")?).or_default().push(tag);
    }
    for tags in out.values_mut() {
        tags.sort();
    }
    Ok(out)
}

fn mailbox(row: &AnyRow) -> StoreResult<MailboxName> {
    let m: String = row.try_get("mailbox")?;
    MailboxName::parse(&m).map_err(|e| corrupt("tickets", e))
}

fn owner(row: &AnyRow) -> StoreResult<Option<Agent>> {
    let o: Option<String> = row.try_get("owner")?;
    o.map(|o| Agent::parse(&o))
        .transpose()
        .map_err(|e| corrupt("tickets", e))
}
