//! Ingest's look-ups for a whole fetch batch at once
//! ([`IngestBatch::prefetch`](crate::store::IngestBatch::prefetch)), and
//! what the batch wrote since, which decides whether a prefetched answer
//! still holds.
//!
//! Per email, ingest needs the duplicate check, the sender's activity for
//! the loop guard and the threading candidates. Asked one email at a time
//! that is one or two statements each, and each statement is a round trip
//! to SQLite's worker thread or to PostgreSQL (docs/PERFORMANCE.md). Here
//! they are a few statements for up to a batch of emails.
//!
//! Exactness: a prefetched answer is what `look_up` would have read before
//! the batch wrote anything. It is used only if no write of the batch since
//! could have changed it: every row the look-up reads is keyed by the
//! sender (their emails, loops, tickets by subject), by a Message-ID (the
//! duplicate check, references), by a token, or is a candidate ticket's own
//! row and participants, and [`Written`] keeps each of those keys the batch
//! touched. Anything else falls back to the look-up of one email, in the
//! transaction, which sees the batch's own writes.
//!
//! Statements here are not kept prepared (`persistent(false)`): PostgreSQL
//! plans them with the values bound, once per batch. A kept statement gets a
//! generic plan after five runs, and one made while the tables were still
//! empty (a fresh install importing its first backlog) scanned every email
//! of the mailbox for the duplicate check, so each look-up grew slower with
//! the table until statistics were gathered.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::ingest::{candidate_tickets, placeholders, push_unique};
use super::tickets::state_from_row;
use super::{Backend, corrupt};
use crate::domain::email::ContentHash;
use crate::domain::hygiene::LoopFacts;
use crate::domain::ids::{MailboxName, MessageId, TicketId};
use crate::domain::threading::{CandidateTicket, Candidates, subject_key};
use crate::domain::ticket::TicketState;
use crate::store::{LookUpKey, Looked, SenderActivity, StoreResult};

/// Emails per look-up statement: five bound values each, far under
/// SQLite's and PostgreSQL's limits on bound values.
const EMAILS_PER_STATEMENT: usize = 100;
/// Values of one `IN (…)` list.
const IDS_PER_STATEMENT: usize = 500;

/// A batch's prefetched answers and what it wrote since.
#[derive(Default)]
pub(super) struct Prefetched {
    mailbox: Option<MailboxName>,
    answers: HashMap<(MessageId, ContentHash), Looked>,
    /// Customer and subject key of every candidate ticket seen by a
    /// look-up of this batch: a follow-up written to one of them may move
    /// it among its customer's subject candidates.
    known: HashMap<TicketId, (String, String)>,
    /// The state of every candidate ticket, read (and on PostgreSQL
    /// locked until the commit) with the answers; dropped for a ticket the
    /// batch changes other than by a plain follow-up (see
    /// [`Prefetched::standing`]).
    standings: HashMap<TicketId, Standing>,
    written: Written,
}

/// What a follow-up needs of its ticket: its state, and whether it is
/// snoozed (see `record_inbound_on`).
#[derive(Debug, Clone)]
pub(super) struct Standing {
    pub state: TicketState,
    pub snoozed: bool,
}

/// The keys of what a batch wrote (see the module's doc).
#[derive(Default)]
struct Written {
    senders: HashSet<String>,
    message_ids: HashSet<String>,
    tokens: HashSet<String>,
    tickets: HashSet<TicketId>,
    /// (customer, subject key) of tickets created or followed up.
    subjects: HashSet<(String, String)>,
    /// A follow-up to a ticket of unknown customer and subject: no
    /// prefetched answer holds any more.
    unknown: bool,
}

/// What one recorded email wrote, for [`Prefetched::wrote`].
pub(super) struct Wrote<'a> {
    pub sender: &'a str,
    pub message_id: &'a MessageId,
    /// A new ticket's token and subject key; `None` for a follow-up.
    pub new: Option<(&'a str, String)>,
    pub ticket: Option<TicketId>,
}

impl Prefetched {
    /// The prefetched answer for this email, if it still holds.
    pub(super) fn take(
        &mut self,
        mailbox: &MailboxName,
        keys: &crate::domain::threading::ThreadKeys,
        message_id: &MessageId,
        hash: &ContentHash,
    ) -> Option<Looked> {
        let looked = self.answers.remove(&(message_id.clone(), hash.clone()))?;
        let w = &self.written;
        let holds = self.mailbox.as_ref() == Some(mailbox)
            && !w.unknown
            && !w.senders.contains(keys.from.as_str())
            && !w.message_ids.contains(message_id.as_str())
            && !keys
                .referenced_ids()
                .iter()
                .any(|id| w.message_ids.contains(id.as_str()))
            && !keys.tokens.iter().any(|t| w.tokens.contains(t.as_str()))
            && !w
                .subjects
                .contains(&(keys.from.as_str().to_owned(), subject_key(&keys.subject)))
            && !candidate_ids(&looked).any(|t| w.tickets.contains(&t));
        holds.then_some(looked)
    }

    /// Keeps the candidates a look-up found, for [`Prefetched::wrote`].
    pub(super) fn learn(&mut self, looked: &Looked) {
        let c = &looked.candidates;
        for t in c
            .by_reference
            .iter()
            .chain(&c.by_token)
            .chain(&c.by_subject)
        {
            self.known.insert(
                t.id,
                (t.customer.as_str().to_owned(), t.subject_key.clone()),
            );
        }
    }

    /// Records the keys of what an email's record wrote.
    pub(super) fn wrote(&mut self, e: Wrote<'_>) {
        let w = &mut self.written;
        w.senders.insert(e.sender.to_owned());
        w.message_ids.insert(e.message_id.as_str().to_owned());
        if let Some(t) = e.ticket {
            w.tickets.insert(t);
        }
        match (e.new, e.ticket) {
            (Some((token, key)), _) => {
                w.tokens.insert(token.to_owned());
                w.subjects.insert((e.sender.to_owned(), key));
            }
            (None, Some(t)) => match self.known.get(&t) {
                Some(subject) => {
                    w.subjects.insert(subject.clone());
                }
                None => w.unknown = true,
            },
            (None, None) => {}
        }
    }

    /// A loop record's writes: the sender's loop row and the ticket's.
    pub(super) fn wrote_loop(&mut self, sender: &str, ticket: TicketId) {
        self.written.senders.insert(sender.to_owned());
        self.written.tickets.insert(ticket);
        self.standings.remove(&ticket);
    }

    /// `ticket`'s state as the batch left it, if read by the prefetch and
    /// since changed only by plain follow-ups (which change nothing of
    /// it): a follow-up then needs no read of its own.
    pub(super) fn standing(&self, ticket: TicketId) -> Option<Standing> {
        self.standings.get(&ticket).cloned()
    }

    /// The batch changed `ticket`'s state (or may have): read it again.
    pub(super) fn changed(&mut self, ticket: TicketId) {
        self.standings.remove(&ticket);
    }

    /// Reads every email's answer, before the batch writes (see the
    /// module's doc). Answers already taken or not are replaced.
    pub(super) async fn fetch(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        mailbox: &MailboxName,
        emails: &[LookUpKey<'_>],
    ) -> StoreResult<()> {
        self.mailbox = Some(mailbox.clone());
        self.answers.clear();
        self.standings.clear();
        let mut heads: Vec<Option<Head>> = vec![None; emails.len()];
        let mut subjects: Vec<Vec<(i64, i64)>> = vec![Vec::new(); emails.len()];
        for (c, chunk) in emails.chunks(EMAILS_PER_STATEMENT).enumerate() {
            let first = c * EMAILS_PER_STATEMENT;
            read_heads(conn, mailbox, chunk, first, &mut heads, &mut subjects).await?;
        }
        let mut refs: Vec<&str> = Vec::new();
        let mut tokens: Vec<&str> = Vec::new();
        let mut returned: Vec<&str> = Vec::new();
        let referenced: Vec<Vec<MessageId>> =
            emails.iter().map(|e| e.keys.referenced_ids()).collect();
        for (e, ids) in emails.iter().zip(&referenced) {
            refs.extend(ids.iter().map(|m| m.as_str()));
            tokens.extend(e.keys.tokens.iter().map(|t| t.as_str()));
            returned.extend(e.keys.returned.iter().map(|m| m.as_str()));
        }
        let emails_of = "SELECT message_id AS k, ticket_id AS t FROM emails WHERE mailbox = $1";
        let by_message = tickets_by_key(conn, mailbox, emails_of, &refs).await?;
        let by_token = tickets_by_key(
            conn,
            mailbox,
            "SELECT token AS k, id AS t FROM tickets WHERE mailbox = $1",
            &tokens,
        )
        .await?;
        let bounced = tickets_by_key(
            conn,
            mailbox,
            &format!("{emails_of} AND direction = 'outbound'"),
            &returned,
        )
        .await?;

        // Every candidate of every email, read in one query.
        let mut per_email: Vec<(Vec<i64>, Vec<i64>, Vec<i64>)> = Vec::with_capacity(emails.len());
        let mut all: Vec<i64> = Vec::new();
        let mut seen: HashSet<i64> = HashSet::new();
        for (i, e) in emails.iter().enumerate() {
            let mut by_reference = Vec::new();
            for id in &referenced[i] {
                for t in by_message.get(id.as_str()).into_iter().flatten() {
                    push_unique(&mut by_reference, *t);
                }
            }
            let mut by_tok = Vec::new();
            for t in &e.keys.tokens {
                if let Some(id) = by_token.get(t.as_str()).and_then(|ids| ids.first()) {
                    push_unique(&mut by_tok, *id);
                }
            }
            // Newest first, as the query inside the union ordered them (a
            // union's row order is not guaranteed).
            let mut s = std::mem::take(&mut subjects[i]);
            s.sort_by(|x, y| y.1.cmp(&x.1));
            let mut by_subject = Vec::new();
            for (id, _) in s {
                push_unique(&mut by_subject, id);
            }
            for id in by_reference.iter().chain(&by_tok).chain(&by_subject) {
                if seen.insert(*id) {
                    all.push(*id);
                }
            }
            per_email.push((by_reference, by_tok, by_subject));
        }
        let mut tickets: HashMap<i64, CandidateTicket> = HashMap::new();
        for chunk in all.chunks(IDS_PER_STATEMENT) {
            for t in candidate_tickets(conn, chunk).await? {
                tickets.insert(t.id.get(), t);
            }
            read_standings(conn, backend, chunk, &mut self.standings).await?;
        }
        let pick = |ids: &[i64]| -> Vec<CandidateTicket> {
            ids.iter()
                .filter_map(|id| tickets.get(id).cloned())
                .collect()
        };
        for (i, e) in emails.iter().enumerate() {
            let Some(head) = heads[i] else {
                return Err(corrupt("emails", "the batch look-up returned no head row"));
            };
            let (by_reference, by_tok, by_subject) = &per_email[i];
            let looked = Looked {
                candidates: Candidates {
                    by_reference: pick(by_reference),
                    by_token: pick(by_tok),
                    by_subject: pick(by_subject),
                    by_returned: e
                        .keys
                        .returned
                        .as_ref()
                        .and_then(|id| bounced.get(id.as_str()))
                        .and_then(|t| t.first().copied())
                        .map(TicketId::new),
                },
                activity: SenderActivity {
                    facts: LoopFacts {
                        recent: u32::try_from(head.recent).unwrap_or(u32::MAX),
                        last_quiet_ms: head.last_quiet_ms,
                    },
                    latest_ticket: head.latest.map(TicketId::new),
                },
                duplicate: head.duplicate,
            };
            self.learn(&looked);
            self.answers
                .insert((e.message_id.clone(), e.content_hash.clone()), looked);
        }
        Ok(())
    }
}

/// Every ticket a look-up's answer depends on.
fn candidate_ids(looked: &Looked) -> impl Iterator<Item = TicketId> + '_ {
    let c = &looked.candidates;
    c.by_reference
        .iter()
        .chain(&c.by_token)
        .chain(&c.by_subject)
        .map(|t| t.id)
        .chain(c.by_returned)
        .chain(looked.activity.latest_ticket)
}

/// One email's row of scalar look-ups (see `look_up_on` in `ingest.rs`).
#[derive(Debug, Clone, Copy)]
struct Head {
    recent: i64,
    last_quiet_ms: Option<i64>,
    latest: Option<i64>,
    duplicate: bool,
}

/// The heads and subject candidates of `chunk` (emails `first..` of the
/// batch) in one statement: per email, the scalar row of `look_up_on` and
/// its subject candidates, tagged with the email's index. The emails are a
/// `VALUES` list the look-ups refer to, so the statement's plan has the
/// same size however many emails it asks for (a union of one look-up per
/// email took PostgreSQL about 2 ms an email to plan).
async fn read_heads(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    chunk: &[LookUpKey<'_>],
    first: usize,
    heads: &mut [Option<Head>],
    subjects: &mut [Vec<(i64, i64)>],
) -> StoreResult<()> {
    let sql = heads_sql(first, chunk.len());
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(mailbox.as_str());
    for e in chunk {
        q = q
            .bind(e.keys.from.as_str())
            .bind(e.since_ms)
            .bind(e.message_id.as_str())
            .bind(e.content_hash.as_str())
            .bind(subject_key(&e.keys.subject));
    }
    for r in q.fetch_all(&mut *conn).await? {
        let i = usize::try_from(r.try_get::<i64, _>("n")?).map_err(|e| corrupt("emails", e))?;
        let a: Option<i64> = r.try_get("a")?;
        let b: Option<i64> = r.try_get("b")?;
        match r.try_get::<i64, _>("kind")? {
            0 => {
                let slot = heads
                    .get_mut(i)
                    .ok_or_else(|| corrupt("emails", "a look-up row for no email"))?;
                *slot = Some(Head {
                    recent: a.unwrap_or(0),
                    last_quiet_ms: b,
                    latest: r.try_get("c")?,
                    duplicate: r.try_get::<Option<i64>, _>("d")?.unwrap_or(0) != 0,
                });
            }
            _ => {
                if let (Some(id), Some(list)) = (a, subjects.get_mut(i)) {
                    list.push((id, b.unwrap_or(0)));
                }
            }
        }
    }
    Ok(())
}

/// [`read_heads`]' statement for `count` emails numbered from `first`: `$1`
/// the mailbox, then five values an email. The subject look-up is a
/// `CROSS JOIN`, which SQLite takes as "the emails outside, the tickets
/// inside": SQLite 3.50 otherwise walked every ticket of the mailbox
/// (`tickets_by_subject` on the mailbox alone) once per batch and compared
/// each with every email, ~20 ms a batch at 3,500 tickets and growing with
/// the mailbox. PostgreSQL plans a cross join with a condition as any join.
fn heads_sql(first: usize, count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|j| {
            let b = 2 + j * 5;
            format!(
                "({}, ${b}, ${}, ${}, ${}, ${})",
                first + j,
                b + 1,
                b + 2,
                b + 3,
                b + 4
            )
        })
        .collect();
    format!(
        "WITH k (n, addr, since, mid, hash, skey) AS (VALUES {}) \
         SELECT CAST(k.n AS BIGINT) AS n, CAST(0 AS BIGINT) AS kind, \
         CAST((SELECT COUNT(*) FROM emails e WHERE e.mailbox = $1 AND e.from_addr = k.addr AND e.direction = 'inbound' AND e.stored_at >= k.since) AS BIGINT) AS a, \
         CAST((SELECT MAX(l.last_at) FROM mail_loops l WHERE l.mailbox = $1 AND l.sender = k.addr) AS BIGINT) AS b, \
         CAST((SELECT e.ticket_id FROM emails e WHERE e.mailbox = $1 AND e.from_addr = k.addr AND e.direction = 'inbound' ORDER BY e.id DESC LIMIT 1) AS BIGINT) AS c, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM emails e WHERE e.mailbox = $1 AND e.message_id = k.mid AND e.content_hash = k.hash) THEN 1 ELSE 0 END AS BIGINT) AS d \
         FROM k \
         UNION ALL SELECT s.n, CAST(1 AS BIGINT), s.id, s.at, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) FROM \
         (SELECT CAST(k.n AS BIGINT) AS n, t.id AS id, t.last_customer_at AS at, \
          ROW_NUMBER() OVER (PARTITION BY k.n ORDER BY t.last_customer_at DESC) AS r \
          FROM k CROSS JOIN tickets t \
          WHERE k.skey <> '' AND t.mailbox = $1 AND t.customer = k.addr AND t.subject_key = k.skey) AS s \
         WHERE s.r <= 5",
        rows.join(", ")
    )
}

/// The state of each of `ids` into `out`. On PostgreSQL the rows are
/// locked until the batch commits (`FOR UPDATE`): what a follow-up then
/// decides from them (reopen or not) holds at the commit, as it would had
/// it read them by its own update. SQLite needs no lock: a write of
/// another connection since this read makes the batch's first write fail
/// (its snapshot is stale), and the batch is stored again.
async fn read_standings(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[i64],
    out: &mut HashMap<TicketId, Standing>,
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, status, owner, snoozed_until FROM tickets WHERE id IN ({}){lock}",
        placeholders(1, ids.len())
    )))
    .persistent(false);
    for id in ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&mut *conn).await? {
        out.insert(
            TicketId::new(row.try_get("id")?),
            Standing {
                state: state_from_row(&row)?,
                snoozed: row.try_get::<Option<i64>, _>("snoozed_until")?.is_some(),
            },
        );
    }
    Ok(())
}

/// Ticket ids per key, for the rows of `from` (a table and its column
/// `k` of keys and `t` of ticket ids, `$1` the mailbox) whose key is one
/// of `keys`, each list in the order found.
async fn tickets_by_key(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    from: &str,
    keys: &[&str],
) -> StoreResult<HashMap<String, Vec<i64>>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    let mut unique: Vec<&str> = keys.to_vec();
    unique.sort_unstable();
    unique.dedup();
    for chunk in unique.chunks(IDS_PER_STATEMENT) {
        let list = placeholders(2, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT k, t FROM ({from}) AS f WHERE k IN ({list})"
        )))
        .persistent(false)
        .bind(mailbox.as_str());
        for k in chunk {
            q = q.bind(*k);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let t: i64 = r.try_get("t")?;
            let list = out.entry(r.try_get("k")?).or_default();
            if !list.contains(&t) {
                list.push(t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TicketStore;
    use crate::store::settings::DatabaseUrl;
    use crate::store::sql::SqlStore;

    /// The batch look-up's plan on SQLite: every part a search by index
    /// from the batch's emails, none a walk over the mailbox's tickets or
    /// emails (SQLite keeps no statistics here, so the plan is the same on
    /// an empty database as on a full one).
    #[tokio::test]
    async fn the_batch_look_up_searches_from_the_emails_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let url = DatabaseUrl::parse(&url).expect("url");
        let store = SqlStore::connect(&url, 1).await.expect("open");
        store.migrate().await.expect("migrate");
        let sql = format!("EXPLAIN QUERY PLAN {}", heads_sql(0, EMAILS_PER_STATEMENT));
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .expect("plan")
            .iter()
            .map(|r| r.try_get::<String, _>("detail").expect("detail"))
            .collect();
        let shown = plan.join("\n");
        let subject = plan
            .iter()
            .position(|d| d.starts_with("SEARCH t "))
            .unwrap_or_else(|| panic!("no search of tickets:\n{shown}"));
        assert!(
            plan[subject].contains("(mailbox=? AND customer=? AND subject_key=?)"),
            "tickets searched by mailbox, customer and subject:\n{shown}"
        );
        assert!(
            subject > 0 && plan[subject - 1] == "SCAN k",
            "the batch's emails outside, tickets inside:\n{shown}"
        );
        for d in &plan {
            assert!(
                !d.starts_with("SCAN t") && !d.starts_with("SCAN e") && !d.starts_with("SCAN l"),
                "a table walked: {d}\n{shown}"
            );
        }
        store.close().await;
    }
}
