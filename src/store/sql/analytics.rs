//! The rows figures are computed from (definitions: `docs/ANALYTICS.md`).
//! The database selects and counts, per ticket; medians and shares are
//! taken in `domain::analytics`. Tables: `tickets`, `ticket_tags`,
//! `audit_log` (close and reopen lines), `emails` (sent replies).
//! Indexes: `tickets_by_created`, `audit_by_action`,
//! `audit_by_ticket_action` (migration 0013).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::corrupt;
use super::tickets::state_from_row;
use crate::domain::analytics::{
    ActiveTicket, AgeBucket, PeriodRows, ReceivedTicket, ResolvedTicket, Scope, SlaFacts,
    WaitingCount,
};
use crate::domain::ids::{Agent, MailboxName, Tag};
use crate::domain::routing::Priority;
use crate::domain::ticket::Status;
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

/// Tickets received in `[from, to)` that were not set aside, with their
/// tags (space-separated: a tag has no spaces).
fn received_sql(scope: &Scope, from_ms: i64, to_ms: i64) -> Sql {
    let mut sql = Sql::new(
        "SELECT t.mailbox, t.owner, t.created_at, t.first_response_at, \
         (SELECT string_agg(g.tag, ' ') FROM ticket_tags g WHERE g.ticket_id = t.id) AS tags \
         FROM tickets t",
    );
    sql.push(" WHERE t.created_at >= ")
        .arg(Arg::Int(from_ms))
        .push(" AND t.created_at < ")
        .arg(Arg::Int(to_ms))
        .push(" AND t.status NOT IN ('ignored', 'spam')")
        .scope(scope);
    sql
}

/// The tickets with a close line in `[from, to)`: those that may be
/// resolved in the period.
fn closed_in(sql: &mut Sql, from_ms: i64, to_ms: i64) {
    sql.push("(SELECT b.ticket_id FROM audit_log b WHERE b.action = 'close' AND b.at >= ")
        .arg(Arg::Int(from_ms))
        .push(" AND b.at < ")
        .arg(Arg::Int(to_ms))
        .push(")");
}

/// Tickets closed now whose last close is in `[from, to)`. Per ticket, in
/// one pass over its close and reopen lines: the last close, whether a
/// reopen came after the first close (only a reopen can take a ticket out
/// of Closed, so any reopen line after the first close is one); then the
/// replies sent and the tags.
fn resolved_sql(scope: &Scope, from_ms: i64, to_ms: i64) -> Sql {
    let mut sql = Sql::new(
        "SELECT t.id, t.mailbox, t.owner, t.priority, t.created_at, \
         c.last_close, c.first_close_id, c.last_reopen_id, \
         (SELECT COUNT(*) FROM emails e WHERE e.ticket_id = t.id AND e.direction = 'outbound' AND e.state = 'sent') AS replies, \
         (SELECT string_agg(g.tag, ' ') FROM ticket_tags g WHERE g.ticket_id = t.id) AS tags \
         FROM (SELECT a.ticket_id, \
         MAX(CASE WHEN a.action = 'close' THEN a.at END) AS last_close, \
         MIN(CASE WHEN a.action = 'close' THEN a.id END) AS first_close_id, \
         MAX(CASE WHEN a.action = 'reopen' THEN a.id END) AS last_reopen_id \
         FROM audit_log a WHERE a.action IN ('close', 'reopen') AND a.ticket_id IN ",
    );
    closed_in(&mut sql, from_ms, to_ms);
    sql.push(" GROUP BY a.ticket_id) c JOIN tickets t ON t.id = c.ticket_id WHERE t.status = 'closed' AND c.last_close >= ")
        .arg(Arg::Int(from_ms))
        .push(" AND c.last_close < ")
        .arg(Arg::Int(to_ms))
        .scope(scope);
    sql
}

pub(super) async fn period_rows(
    pool: &AnyPool,
    scope: &Scope,
    from_ms: i64,
    to_ms: i64,
    sla: bool,
) -> StoreResult<PeriodRows> {
    let mut received = Vec::new();
    for row in received_sql(scope, from_ms, to_ms).fetch_all(pool).await? {
        received.push(ReceivedTicket {
            mailbox: mailbox(&row)?,
            owner: owner(&row)?,
            tags: tags(&row)?,
            created_ms: row.try_get("created_at")?,
            first_response_ms: row.try_get("first_response_at")?,
        });
    }
    let mut resolved = Vec::new();
    let mut ids = HashMap::new();
    for row in resolved_sql(scope, from_ms, to_ms).fetch_all(pool).await? {
        let first_close: Option<i64> = row.try_get("first_close_id")?;
        let last_reopen: Option<i64> = row.try_get("last_reopen_id")?;
        let replies: i64 = row.try_get("replies")?;
        let priority: String = row.try_get("priority")?;
        ids.insert(row.try_get::<i64, _>("id")?, resolved.len());
        resolved.push(ResolvedTicket {
            mailbox: mailbox(&row)?,
            owner: owner(&row)?,
            tags: tags(&row)?,
            created_ms: row.try_get("created_at")?,
            last_close_ms: row.try_get("last_close")?,
            replies: u64::try_from(replies).unwrap_or(0),
            reopened: matches!((first_close, last_reopen), (Some(c), Some(r)) if r > c),
            priority: Priority::parse(&priority)
                .ok_or_else(|| corrupt("tickets", format!("unknown priority {priority:?}")))?,
            sla_facts: None,
            sla: None,
        });
    }
    if sla {
        sla_facts(pool, from_ms, to_ms, &ids, &mut resolved).await?;
    }
    Ok(PeriodRows {
        received,
        resolved,
        sla_judged: false,
    })
}

/// What the resolved tickets' SLA clocks are replayed from (`ids`: their
/// index in `resolved` by ticket id): customer mails and answers from the
/// audit log, pending times from `sla_pauses`. A customer mail that came
/// with an `automatic-mail` line at the same instant was an automatic one:
/// it started no clock.
async fn sla_facts(
    pool: &AnyPool,
    from_ms: i64,
    to_ms: i64,
    ids: &HashMap<i64, usize>,
    resolved: &mut [ResolvedTicket],
) -> StoreResult<()> {
    let mut facts: Vec<SlaFacts> = vec![SlaFacts::default(); resolved.len()];
    let mut automatic: Vec<Vec<i64>> = vec![Vec::new(); resolved.len()];
    let mut lines = Sql::new(
        "SELECT a.ticket_id, a.action, a.at FROM audit_log a WHERE a.action IN \
         ('customer-replied', 'automatic-mail', 'reply-sent', 'replied-outside-mailroom') \
         AND a.ticket_id IN ",
    );
    closed_in(&mut lines, from_ms, to_ms);
    for row in lines.fetch_all(pool).await? {
        let Some(&i) = ids.get(&row.try_get::<i64, _>("ticket_id")?) else {
            continue;
        };
        let at: i64 = row.try_get("at")?;
        let action: String = row.try_get("action")?;
        match action.as_str() {
            "customer-replied" => facts[i].customer_mails_ms.push(at),
            "automatic-mail" => automatic[i].push(at),
            _ => facts[i].answers_ms.push(at),
        }
    }
    let mut pauses = Sql::new(
        "SELECT p.ticket_id, p.started_at, p.ended_at FROM sla_pauses p WHERE p.ticket_id IN ",
    );
    closed_in(&mut pauses, from_ms, to_ms);
    for row in pauses.fetch_all(pool).await? {
        let Some(&i) = ids.get(&row.try_get::<i64, _>("ticket_id")?) else {
            continue;
        };
        facts[i]
            .pauses
            .push((row.try_get("started_at")?, row.try_get("ended_at")?));
    }
    for ((t, mut f), automatic) in resolved.iter_mut().zip(facts).zip(automatic) {
        f.customer_mails_ms.retain(|at| !automatic.contains(at));
        t.sla_facts = Some(f);
    }
    Ok(())
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

/// Waiting tickets counted by owner, status and age bucket (the buckets'
/// cuts come from [`AgeBucket::created_after`]): a few dozen rows however
/// large the backlog.
pub(super) async fn waiting_counts(
    pool: &AnyPool,
    scope: &Scope,
    as_of_ms: i64,
) -> StoreResult<Vec<WaitingCount>> {
    let [day, three_days, week] = AgeBucket::created_after(as_of_ms);
    let mut sql = Sql::new("SELECT t.owner, t.status, CASE WHEN t.created_at > ");
    sql.arg(Arg::Int(day))
        .push(" THEN 0 WHEN t.created_at > ")
        .arg(Arg::Int(three_days))
        .push(" THEN 1 WHEN t.created_at > ")
        .arg(Arg::Int(week))
        .push(
            " THEN 2 ELSE 3 END AS age, COUNT(*) AS n FROM tickets t \
             WHERE t.status IN ('open', 'claimed', 'pending')",
        )
        .scope(scope)
        .push(" GROUP BY t.owner, t.status, age");
    sql.fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            let status = Status::parse(&status)
                .ok_or_else(|| corrupt("tickets", format!("unknown status {status:?}")))?;
            let age: i64 = row.try_get("age")?;
            let n: i64 = row.try_get("n")?;
            Ok(WaitingCount {
                owner: owner(row)?,
                status,
                age: usize::try_from(age)
                    .ok()
                    .and_then(|i| AgeBucket::ALL.get(i).copied())
                    .ok_or_else(|| corrupt("tickets", format!("age bucket {age}")))?,
                count: u64::try_from(n).unwrap_or(0),
            })
        })
        .collect()
}

/// The row's `tags`: space-separated, in name order.
fn tags(row: &AnyRow) -> StoreResult<Vec<Tag>> {
    let joined: Option<String> = row.try_get("tags")?;
    let mut tags = joined
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(|t| Tag::parse(t).map_err(|e| corrupt("ticket_tags", e)))
        .collect::<StoreResult<Vec<Tag>>>()?;
    tags.sort();
    Ok(tags)
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
