//! The rows of an ingest batch's plain mail, written at its commit in a few
//! multi-row statements instead of several statements per email (each a
//! round trip to the database: docs/PERFORMANCE.md, "own ingest").
//!
//! Two kinds of email wait here:
//! - a **plain new ticket** (no routing rule, tag, owner, pool or mark, not
//!   automatic): its ticket, email, "created" audit line, SLA row,
//!   participants and first chat jobs (whose lane needs no look-up: the
//!   ticket is new);
//! - a **plain follow-up** (the customer's own mail to a ticket it does
//!   not reopen, not set aside, not snoozed): its email, "customer-replied"
//!   audit line, SLA row, participants and posts to the ticket's threads
//!   (their lanes looked up for all the batch's follow-ups at once). Its
//!   ticket's `last_customer_at` waits too when the batch's prefetch read
//!   the ticket's state (and, on PostgreSQL, locked it); otherwise it is
//!   written at once, by the update that reads that state.
//!
//! Anything else a batch writes or reads (a routed ticket, a reopening, a
//! loop, a look-up the batch's prefetch cannot answer) flushes the rows
//! first, so reads see them and the audit log and the outbox keep the
//! order of events. A batch dropped drops them with its transaction.
//!
//! Ids are known only once written: a waiting email is reported by
//! [`Deferred::recorded`] after the flush, and tickets and emails are
//! matched to the ids their `INSERT … RETURNING` gave by their unique keys
//! (token; Message-ID and content hash), not by row order, which neither
//! database promises.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::Row;

use super::emails::{first_piece, insert_later_pieces};
use super::outbox::chat_lanes_of;
use super::{AnyTx, Backend, corrupt};
use crate::domain::chat::Platform;
use crate::domain::ids::{Actor, TicketId};
use crate::domain::threading::subject_key;
use crate::store::{JobSpec, NewInbound, Recorded, StoreResult};

/// A waiting row's ticket: one stored already, or one waiting here.
#[derive(Debug, Clone, Copy)]
enum TicketRef {
    Stored(TicketId),
    /// Index into [`Deferred::tickets`].
    Waiting(usize),
}

struct TicketRow {
    mailbox: String,
    token: String,
    subject: String,
    subject_key: String,
    customer: String,
    priority: &'static str,
    at: i64,
}

struct EmailRow {
    ticket: TicketRef,
    mailbox: String,
    message_id: String,
    content_hash: String,
    imap_uid: Option<i64>,
    from_addr: String,
    from_name: Option<String>,
    subject: String,
    sent_at: Option<i64>,
    at: i64,
    raw: Vec<u8>,
}

struct AuditRow {
    ticket: TicketRef,
    at: i64,
    actor: String,
    action: &'static str,
    details: String,
}

/// An email's post on one platform (see [`JobSpec::ChatPost`]): a new
/// ticket's root, or a follow-up to its ticket's thread.
struct JobRow {
    ticket: TicketRef,
    /// Index into [`Deferred::emails`].
    email: usize,
    platform: Platform,
    room: Option<String>,
    at: i64,
}

/// See the module's doc.
pub(super) struct Deferred {
    /// How its statements number their bound values (see [`values`]).
    backend: Backend,
    tickets: Vec<TicketRow>,
    emails: Vec<EmailRow>,
    audit: Vec<AuditRow>,
    /// (ticket, awaiting since): the SLA clock starts, or keeps running.
    sla: Vec<(TicketRef, i64)>,
    participants: Vec<(TicketRef, String)>,
    jobs: Vec<JobRow>,
    /// (ticket, at): a plain follow-up's `last_customer_at`, when its
    /// ticket's state came from the batch's prefetch rather than from that
    /// update.
    touched: Vec<(TicketId, i64)>,
    /// What every email queued so far became, in queue order, for those
    /// flushed already.
    recorded: Vec<Recorded>,
}

/// Rows per statement. The widest row (an email) binds 12 values: 1,200
/// a statement, well under SQLite's (32,766) and PostgreSQL's (65,535)
/// limits on bound values.
const CHUNK: usize = 100;

impl Deferred {
    pub(super) fn new(backend: Backend) -> Deferred {
        Deferred {
            backend,
            tickets: Vec::new(),
            emails: Vec::new(),
            audit: Vec::new(),
            sla: Vec::new(),
            participants: Vec::new(),
            jobs: Vec::new(),
            touched: Vec::new(),
            recorded: Vec::new(),
        }
    }

    /// Whether a new ticket's rows may wait: a plain new ticket, not
    /// automatic, that no routing rule touched.
    pub(super) fn can_take_new(new: &NewInbound) -> bool {
        let r = &new.route;
        matches!(new.destination, crate::store::Destination::New { .. })
            && new.automatic.is_none()
            && r.rules.is_empty()
            && r.tags.is_empty()
            && r.owner.is_none()
            && r.auto.is_none()
            && r.mark.is_none()
    }

    /// The number of emails queued so far, flushed or not: the next one
    /// queued is reported at this index of [`Deferred::recorded`].
    pub(super) fn queued(&self) -> usize {
        self.recorded.len() + self.emails.len()
    }

    /// What the email queued at `index` became, once flushed.
    pub(super) fn recorded(&self, index: usize) -> Option<Recorded> {
        self.recorded.get(index).copied()
    }

    fn is_empty(&self) -> bool {
        self.tickets.is_empty()
            && self.emails.is_empty()
            && self.audit.is_empty()
            && self.sla.is_empty()
            && self.participants.is_empty()
            && self.jobs.is_empty()
            && self.touched.is_empty()
    }

    /// Queues a plain new ticket (see [`Deferred::can_take_new`]) with its
    /// email, audit line, SLA row, participants and root posts.
    pub(super) fn new_ticket(&mut self, new: &NewInbound, token: &str, raw: Vec<u8>) {
        let ticket = TicketRef::Waiting(self.tickets.len());
        let email = &new.email;
        self.tickets.push(TicketRow {
            mailbox: new.mailbox.as_str().to_owned(),
            token: token.to_owned(),
            subject: email.subject.clone(),
            subject_key: subject_key(&email.subject),
            customer: email.from.address.as_str().to_owned(),
            priority: new.route.priority.as_str(),
            at: new.now_ms,
        });
        let mut details = format!("from {}: {}", email.from, email.subject);
        if !new.refused_merges.is_empty() {
            let list: Vec<String> = new.refused_merges.iter().map(|t| t.to_string()).collect();
            details.push_str(&format!(
                " (not merged into {}: different customer)",
                list.join(", ")
            ));
        }
        self.audit.push(AuditRow {
            ticket,
            at: new.now_ms,
            actor: Actor::Customer(email.from.address.clone()).to_stored(),
            action: "created",
            details,
        });
        // A new ticket's first mail always waits for an answer (an
        // automatic one is never queued here).
        self.sla.push((ticket, new.now_ms));
        let index = self.push_email(new, ticket, raw);
        for platform in &new.post_to {
            // Where a rule said, else the mailbox's room.
            let rule = new.route.rooms.get(platform);
            let room = rule.or_else(|| new.rooms.get(platform)).cloned();
            self.jobs.push(JobRow {
                ticket,
                email: index,
                platform: *platform,
                room,
                at: new.now_ms,
            });
        }
    }

    /// Queues a plain follow-up of `ticket` (see the module's doc; the
    /// caller checked it is one and wrote `last_customer_at`).
    /// `touch`: its `last_customer_at` is still to be written.
    pub(super) fn follow_up(
        &mut self,
        new: &NewInbound,
        ticket: TicketId,
        matched_by: &str,
        touch: bool,
        raw: Vec<u8>,
    ) {
        if touch {
            self.touched.push((ticket, new.now_ms));
        }
        let ticket = TicketRef::Stored(ticket);
        self.audit.push(AuditRow {
            ticket,
            at: new.now_ms,
            actor: Actor::Customer(new.email.from.address.clone()).to_stored(),
            action: "customer-replied",
            details: format!("matched by {matched_by}: {}", new.email.subject),
        });
        self.sla.push((ticket, new.now_ms));
        let index = self.push_email(new, ticket, raw);
        for platform in &new.post_to {
            // To the thread the ticket has: no room of its own.
            self.jobs.push(JobRow {
                ticket,
                email: index,
                platform: *platform,
                room: None,
                at: new.now_ms,
            });
        }
    }

    fn push_email(&mut self, new: &NewInbound, ticket: TicketRef, raw: Vec<u8>) -> usize {
        let email = &new.email;
        for p in &email.participants {
            // A ticket's customer is a participant by definition (threading
            // adds `tickets.customer`): a new ticket's sender needs no row.
            if matches!(ticket, TicketRef::Waiting(_)) && *p == email.from.address {
                continue;
            }
            self.participants.push((ticket, p.as_str().to_owned()));
        }
        self.emails.push(EmailRow {
            ticket,
            mailbox: new.mailbox.as_str().to_owned(),
            message_id: email.message_id.as_str().to_owned(),
            content_hash: email.content_hash.as_str().to_owned(),
            imap_uid: new.imap_uid.map(i64::from),
            from_addr: email.from.address.as_str().to_owned(),
            from_name: email.from.name.clone(),
            subject: email.subject.clone(),
            sent_at: email.sent_at,
            at: new.now_ms,
            raw,
        });
        self.emails.len() - 1
    }

    /// Writes every waiting row, tickets first, and records what each
    /// waiting email became.
    pub(super) async fn flush(&mut self, tx: &mut AnyTx) -> StoreResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.write_touched(tx).await?;
        let tickets = self.write_tickets(tx).await?;
        let id_of = |t: TicketRef| -> StoreResult<TicketId> {
            match t {
                TicketRef::Stored(id) => Ok(id),
                TicketRef::Waiting(i) => tickets
                    .get(i)
                    .copied()
                    .ok_or_else(|| corrupt("tickets", format!("waiting ticket {i} not written"))),
            }
        };
        let emails = self.write_emails(tx, &id_of).await?;
        self.write_audit(tx, &id_of).await?;
        self.write_sla(tx, &id_of).await?;
        self.write_participants(tx, &id_of).await?;
        self.write_jobs(tx, &id_of, &emails).await?;
        for (row, email_id) in self.emails.iter().zip(&emails) {
            let ticket = id_of(row.ticket)?;
            let email_id = *email_id;
            self.recorded.push(match row.ticket {
                TicketRef::Waiting(_) => Recorded::NewTicket { ticket, email_id },
                TicketRef::Stored(_) => Recorded::FollowUp {
                    ticket,
                    email_id,
                    reopened: false,
                },
            });
        }
        self.tickets.clear();
        self.emails.clear();
        self.audit.clear();
        self.sla.clear();
        self.participants.clear();
        self.jobs.clear();
        self.touched.clear();
        Ok(())
    }

    /// Plain follow-ups' `last_customer_at`, the latest per ticket.
    async fn write_touched(&self, tx: &mut AnyTx) -> StoreResult<()> {
        let mut by_ticket: BTreeMap<TicketId, i64> = BTreeMap::new();
        for (t, at) in &self.touched {
            let latest = by_ticket.entry(*t).or_insert(*at);
            *latest = (*latest).max(*at);
        }
        let latest: Vec<(TicketId, i64)> = by_ticket.into_iter().collect();
        for chunk in latest.chunks(CHUNK) {
            let param = |n: usize| placeholder(self.backend, n);
            let cases: Vec<String> = (0..chunk.len())
                .map(|i| format!("WHEN {} THEN {}", param(i * 2 + 1), param(i * 2 + 2)))
                .collect();
            let ids: Vec<String> = (0..chunk.len())
                .map(|i| param(chunk.len() * 2 + i + 1))
                .collect();
            let sql = format!(
                "UPDATE tickets SET last_customer_at = CASE id {} END WHERE id IN ({})",
                cases.join(" "),
                ids.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, at) in chunk {
                q = q.bind(id.get()).bind(*at);
            }
            for (id, _) in chunk {
                q = q.bind(id.get());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The waiting tickets' ids, by index.
    async fn write_tickets(&self, tx: &mut AnyTx) -> StoreResult<Vec<TicketId>> {
        let mut by_token: HashMap<String, i64> = HashMap::with_capacity(self.tickets.len());
        for chunk in self.tickets.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO tickets (mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at, priority) VALUES {} RETURNING id, token",
                values(self.backend, chunk.len(), 9, |p| format!(
                    "({}, {}, {}, {}, {}, 'open', NULL, 0, {}, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in chunk {
                q = q
                    .bind(t.mailbox.as_str())
                    .bind(t.token.as_str())
                    .bind(t.subject.as_str())
                    .bind(t.subject_key.as_str())
                    .bind(t.customer.as_str())
                    .bind(t.at)
                    .bind(t.at)
                    .bind(t.at)
                    .bind(t.priority);
            }
            for row in q.fetch_all(&mut **tx).await? {
                by_token.insert(row.try_get("token")?, row.try_get("id")?);
            }
        }
        self.tickets
            .iter()
            .map(|t| {
                by_token
                    .get(&t.token)
                    .map(|id| TicketId::new(*id))
                    .ok_or_else(|| {
                        corrupt("tickets", format!("no id returned for token {}", t.token))
                    })
            })
            .collect()
    }

    /// The waiting emails' ids, by index.
    async fn write_emails(
        &self,
        tx: &mut AnyTx,
        id_of: &impl Fn(TicketRef) -> StoreResult<TicketId>,
    ) -> StoreResult<Vec<i64>> {
        let mut by_key: HashMap<(String, String), i64> = HashMap::with_capacity(self.emails.len());
        for chunk in self.emails.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO emails (mailbox, ticket_id, direction, message_id, content_hash, imap_uid, from_addr, from_name, subject, sent_at, stored_at, author, state, raw, raw_size) VALUES {} RETURNING id, message_id, content_hash",
                values(self.backend, chunk.len(), 12, |p| format!(
                    "({}, {}, 'inbound', {}, {}, {}, {}, {}, {}, {}, {}, NULL, 'received', {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.mailbox.as_str())
                    .bind(id_of(e.ticket)?.get())
                    .bind(e.message_id.as_str())
                    .bind(e.content_hash.as_str())
                    .bind(e.imap_uid)
                    .bind(e.from_addr.as_str())
                    .bind(e.from_name.clone())
                    .bind(e.subject.as_str())
                    .bind(e.sent_at)
                    .bind(e.at)
                    .bind(first_piece(&e.raw))
                    .bind(e.raw.len() as i64);
            }
            for row in q.fetch_all(&mut **tx).await? {
                let key = (row.try_get("message_id")?, row.try_get("content_hash")?);
                if by_key.insert(key, row.try_get("id")?).is_some() {
                    return Err(corrupt("emails", "one email queued twice in a batch"));
                }
            }
        }
        let mut ids = Vec::with_capacity(self.emails.len());
        for e in &self.emails {
            let id = by_key
                .get(&(e.message_id.clone(), e.content_hash.clone()))
                .copied()
                .ok_or_else(|| {
                    corrupt("emails", format!("no id returned for <{}>", e.message_id))
                })?;
            insert_later_pieces(tx, id, &e.raw).await?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn write_audit(
        &self,
        tx: &mut AnyTx,
        id_of: &impl Fn(TicketRef) -> StoreResult<TicketId>,
    ) -> StoreResult<()> {
        for chunk in self.audit.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO audit_log (ticket_id, at, actor, action, details) VALUES {}",
                values(self.backend, chunk.len(), 5, |p| format!(
                    "({}, {}, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in chunk {
                q = q
                    .bind(id_of(a.ticket)?.get())
                    .bind(a.at)
                    .bind(a.actor.as_str())
                    .bind(a.action)
                    .bind(a.details.as_str());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// One row per ticket, the earliest time kept: as the single-email
    /// `customer_wrote` does, a clock already running keeps its start.
    async fn write_sla(
        &self,
        tx: &mut AnyTx,
        id_of: &impl Fn(TicketRef) -> StoreResult<TicketId>,
    ) -> StoreResult<()> {
        let mut seen = BTreeSet::new();
        let mut rows = Vec::with_capacity(self.sla.len());
        for (t, at) in &self.sla {
            let id = id_of(*t)?;
            if seen.insert(id) {
                rows.push((id, *at));
            }
        }
        for chunk in rows.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO sla_tickets (ticket_id, awaiting_since) VALUES {} \
                 ON CONFLICT (ticket_id) DO UPDATE SET awaiting_since = COALESCE(sla_tickets.awaiting_since, excluded.awaiting_since)",
                values(self.backend, chunk.len(), 2, |p| format!(
                    "({}, {})",
                    p[0], p[1]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, at) in chunk {
                q = q.bind(id.get()).bind(*at);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn write_participants(
        &self,
        tx: &mut AnyTx,
        id_of: &impl Fn(TicketRef) -> StoreResult<TicketId>,
    ) -> StoreResult<()> {
        let mut rows = BTreeSet::new();
        for (t, address) in &self.participants {
            rows.insert((id_of(*t)?, address.as_str()));
        }
        let rows: Vec<_> = rows.into_iter().collect();
        for chunk in rows.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO participants (ticket_id, address) VALUES {} ON CONFLICT (ticket_id, address) DO NOTHING",
                values(self.backend, chunk.len(), 2, |p| format!(
                    "({}, {})",
                    p[0], p[1]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, address) in chunk {
                q = q.bind(id.get()).bind(*address);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The posts, in the order queued (lane order). A new ticket has no
    /// job waiting and no thread, so its post's lane is the spec's own (as
    /// `insert_first_job`); a follow-up's goes where its ticket's chat jobs
    /// are (as `insert_job`), looked up for all of them at once.
    async fn write_jobs(
        &self,
        tx: &mut AnyTx,
        id_of: &impl Fn(TicketRef) -> StoreResult<TicketId>,
        emails: &[i64],
    ) -> StoreResult<()> {
        let mut lanes: HashMap<(Platform, TicketId), String> = HashMap::new();
        for platform in [Platform::Matrix, Platform::Slack] {
            let mut tickets: Vec<TicketId> = Vec::new();
            for j in &self.jobs {
                if let (TicketRef::Stored(t), true) = (j.ticket, j.platform == platform)
                    && !tickets.contains(&t)
                {
                    tickets.push(t);
                }
            }
            for chunk in tickets.chunks(CHUNK) {
                for (t, lane) in chat_lanes_of(tx, platform, chunk).await? {
                    lanes.insert((platform, t), lane);
                }
            }
        }
        for chunk in self.jobs.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO outbox (lane, kind, ticket_id, payload, state, attempts, not_before, created_at, updated_at) VALUES {}",
                values(self.backend, chunk.len(), 7, |p| format!(
                    "({}, {}, {}, {}, 'pending', 0, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for j in chunk {
                let ticket = id_of(j.ticket)?;
                let email_id = emails
                    .get(j.email)
                    .copied()
                    .ok_or_else(|| corrupt("outbox", "a post's email not written"))?;
                let spec = JobSpec::ChatPost {
                    platform: j.platform,
                    email_id,
                    room: j.room.clone(),
                };
                let lane = lanes
                    .get(&(j.platform, ticket))
                    .cloned()
                    .unwrap_or_else(|| spec.lane(Some(ticket)));
                let payload = serde_json::to_string(&spec).map_err(|e| corrupt("outbox", e))?;
                q = q
                    .bind(lane)
                    .bind(spec.kind())
                    .bind(ticket.get())
                    .bind(payload)
                    .bind(j.at)
                    .bind(j.at)
                    .bind(j.at);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// `rows` parenthesised rows of `width` placeholders each, made by `row`
/// from one row's placeholders, each used once and in order. On SQLite
/// they are anonymous (`?`): sqlx looks up every numbered one's name, and
/// SQLite finds a name by walking the statement's list of them, so a
/// statement of 1,000 numbered values spent more time binding than
/// running (perf, docs/PERFORMANCE.md). On PostgreSQL `$1`, `$2`, ….
fn values(
    backend: Backend,
    rows: usize,
    width: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    let mut out = String::with_capacity(rows * width * 6);
    let mut p: Vec<String> = Vec::with_capacity(width);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        p.clear();
        p.extend((1..=width).map(|i| placeholder(backend, r * width + i)));
        out.push_str(&row(&p));
    }
    out
}

/// The `n`th bound value of a statement: `$n` on PostgreSQL, `?` on SQLite
/// (see [`values`]; the values must then be bound in the order written).
fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}
