//! The `stats` stage: a month's figures (`!mailroom stats month`) over a
//! store holding 100,000 tickets with their histories, on SQLite and
//! PostgreSQL.
//!
//! The history is written straight into the tables in large multi-row
//! inserts (the flows would take an hour to make it): four months of
//! tickets, most answered and closed, some reopened, owners and tags
//! spread over a team, each with its audit lines and emails. A generator
//! with a fixed seed makes every run read the same store.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use mailroom::domain::time::Zone;
use mailroom::store::TicketStore;
use mailroom::store::analytics::{self, Period, PeriodKind, Scope, WallClock};
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;
use sqlx::AnyPool;

use crate::common::hex;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Rows per INSERT: under both databases' limits on bound values.
const CHUNK: usize = 400;

/// xorshift64*: a fixed, dependency-free stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A value for a placeholder.
enum V {
    I(i64),
    /// A BIGINT NULL.
    N,
    /// A TEXT NULL (PostgreSQL wants the type of a NULL it is bound).
    NT,
    T(String),
    B(Vec<u8>),
}

/// Rows waiting to be inserted into one table.
struct Rows {
    table: &'static str,
    columns: &'static [&'static str],
    values: Vec<V>,
}

impl Rows {
    fn new(table: &'static str, columns: &'static [&'static str]) -> Rows {
        Rows {
            table,
            columns,
            values: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<V>) {
        self.values.extend(row);
    }

    fn rows(&self) -> usize {
        self.values.len() / self.columns.len()
    }

    /// Inserts everything pushed, `CHUNK` rows a statement.
    async fn flush(&mut self, tx: &mut Tx) -> anyhow::Result<()> {
        while !self.values.is_empty() {
            self.flush_chunk(tx).await?;
        }
        Ok(())
    }

    async fn flush_chunk(&mut self, tx: &mut Tx) -> anyhow::Result<()> {
        let width = self.columns.len();
        let rows = self.rows().min(CHUNK);
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table,
            self.columns.join(", ")
        );
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", r * width + c + 1));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in self.values.drain(..rows * width) {
            q = match v {
                V::I(n) => q.bind(n),
                V::N => q.bind(None::<i64>),
                V::NT => q.bind(None::<String>),
                V::T(s) => q.bind(s),
                V::B(b) => q.bind(b),
            };
        }
        q.execute(&mut **tx)
            .await
            .with_context(|| format!("seeding {}", self.table))?;
        Ok(())
    }
}

/// Writes `tickets` tickets created between 1 January and 1 May 2026 UTC.
async fn seed(pool: &AnyPool, tickets: usize) -> anyhow::Result<()> {
    // One transaction: a commit per statement would cost a sync each.
    let mut tx = pool.begin().await?;
    const AGENTS: [&str; 8] = [
        "@ana:bench",
        "@ben:bench",
        "@cai:bench",
        "@dee:bench",
        "@eli:bench",
        "@fay:bench",
        "@gus:bench",
        "@hal:bench",
    ];
    const TAGS: [&str; 5] = ["billing", "bug", "vip", "refund", "shipping"];
    let start = "2026-01-01T00:00:00Z"
        .parse::<jiff::Timestamp>()?
        .as_millisecond();
    let span = 120 * DAY;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut t_rows = Rows::new(
        "tickets",
        &[
            "id",
            "mailbox",
            "token",
            "subject",
            "subject_key",
            "customer",
            "status",
            "owner",
            "created_at",
            "updated_at",
            "last_customer_at",
            "first_response_at",
        ],
    );
    let mut tag_rows = Rows::new("ticket_tags", &["ticket_id", "tag"]);
    let mut audit_rows = Rows::new(
        "audit_log",
        &["ticket_id", "at", "actor", "action", "details"],
    );
    let mut email_rows = Rows::new(
        "emails",
        &[
            "mailbox",
            "ticket_id",
            "direction",
            "message_id",
            "content_hash",
            "from_addr",
            "subject",
            "stored_at",
            "author",
            "state",
            "raw",
        ],
    );
    let now = start + span;
    for i in 0..tickets {
        let id = i as i64 + 1;
        let created = start + (span * i as i64) / tickets as i64 + rng.below(HOUR as u64) as i64;
        let owner = AGENTS[rng.below(AGENTS.len() as u64) as usize];
        let mailbox = if rng.chance(70) { "support" } else { "sales" };
        let customer = format!("c{}@customer.example", rng.below(20_000));
        let audit = |at: i64, actor: &str, action: &str| {
            vec![
                V::I(id),
                V::I(at),
                V::T(actor.to_owned()),
                V::T(action.to_owned()),
                V::T(String::new()),
            ]
        };
        audit_rows.push(audit(created, &format!("customer:{customer}"), "created"));
        email_rows.push(email(
            mailbox,
            vec![
                V::I(id),
                V::T(format!("in{id}@customer.example")),
                V::T(customer.clone()),
                V::T("inbound".into()),
                V::I(created),
                V::NT,
                V::T("received".into()),
            ],
        ));
        let mut status = "open";
        let mut who: Option<&str> = None;
        let mut first_response = None;
        let mut last = created;
        if rng.chance(90) {
            // Claimed within minutes to hours, answered soon after.
            let claim = created + 5 * MIN + rng.below(6 * HOUR as u64) as i64;
            let answer = claim + 10 * MIN + rng.below(2 * DAY as u64) as i64;
            if answer < now {
                who = Some(owner);
                audit_rows.push(audit(claim, owner, "claim"));
                first_response = Some(answer);
                for r in 0..1 + rng.below(3) as i64 {
                    let at = answer + r * (3 * HOUR + rng.below(DAY as u64) as i64);
                    email_rows.push(email(
                        mailbox,
                        vec![
                            V::I(id),
                            V::T(format!("out{id}.{r}@support.example")),
                            V::T("support@support.example".into()),
                            V::T("outbound".into()),
                            V::I(at),
                            V::T(owner.into()),
                            V::T("sent".into()),
                        ],
                    ));
                    audit_rows.push(audit(at, "system", "reply-sent"));
                    last = at;
                }
                // Answered: waiting on the customer, or still being worked on.
                status = if rng.chance(50) { "pending" } else { "claimed" };
            }
        }
        if first_response.is_some() && rng.chance(85) {
            let close = last + HOUR + rng.below(5 * DAY as u64) as i64;
            if close < now {
                audit_rows.push(audit(close, owner, "close"));
                status = "closed";
                if rng.chance(10) {
                    let reopen = close + HOUR + rng.below(3 * DAY as u64) as i64;
                    let again = reopen + HOUR + rng.below(2 * DAY as u64) as i64;
                    if again < now {
                        audit_rows.push(audit(reopen, owner, "reopen"));
                        audit_rows.push(audit(again, owner, "close"));
                    }
                }
            }
        }
        if rng.chance(35) {
            let tag = TAGS[rng.below(TAGS.len() as u64) as usize];
            tag_rows.push(vec![V::I(id), V::T(tag.into())]);
        }
        t_rows.push(vec![
            V::I(id),
            V::T(mailbox.into()),
            V::T(format!("tok{id:08}")),
            V::T(format!("Order {}", i % 700)),
            V::T(format!("order {}", i % 700)),
            V::T(customer),
            V::T(status.into()),
            who.map_or(V::NT, |w| V::T(w.into())),
            V::I(created),
            V::I(last),
            V::I(created),
            first_response.map_or(V::N, V::I),
        ]);
        // Tickets first: the other tables reference them.
        if t_rows.rows() >= CHUNK {
            t_rows.flush(&mut tx).await?;
            tag_rows.flush(&mut tx).await?;
            audit_rows.flush(&mut tx).await?;
            email_rows.flush(&mut tx).await?;
        }
    }
    t_rows.flush(&mut tx).await?;
    tag_rows.flush(&mut tx).await?;
    audit_rows.flush(&mut tx).await?;
    email_rows.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// An email row from its varying part: ticket, message id, from,
/// direction, time, author, state.
fn email(mailbox: &str, v: Vec<V>) -> Vec<V> {
    let mut v = v.into_iter();
    let mut next = || v.next().unwrap_or(V::N);
    let (ticket, message_id, from, direction, at, author, state) =
        (next(), next(), next(), next(), next(), next(), next());
    let hash = match &message_id {
        V::T(m) => V::T(m.clone()),
        _ => V::N,
    };
    vec![
        V::T(mailbox.into()),
        ticket,
        direction,
        message_id,
        hash,
        from,
        V::T("Order".into()),
        at,
        author,
        state,
        V::B(b"x".to_vec()),
    ]
}

/// Milliseconds to compute March 2026 (Berlin) over `tickets` tickets: the
/// median of three runs, after the seeding (SQLite's pages are then warm,
/// as they are in a running daemon).
pub async fn stats_month(url: &str, tickets: usize) -> anyhow::Result<f64> {
    let url = DatabaseUrl::parse(url).map_err(|e| anyhow::anyhow!(e))?;
    let store = Arc::new(SqlStore::connect(&url, 4).await?);
    store.migrate().await?;
    let seeding = Instant::now();
    seed(store.pool(), tickets).await?;
    eprintln!(
        "mailroom-bench: seeded {tickets} tickets in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let berlin = Zone::parse("Europe/Berlin").map_err(|e| anyhow::anyhow!(e))?;
    let month = Period::containing(PeriodKind::Month, "2026-03-15T12:00:00Z".parse()?, &berlin)?;
    let store_dyn: &dyn TicketStore = store.as_ref();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let f = analytics::figures(store_dyn, &Scope::default(), &month, &WallClock).await?;
        let (b, w) = analytics::waiting(store_dyn, &Scope::default(), month.end_ms).await?;
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            tickets < 1000 || (f.received > 0 && f.resolved > 0),
            "a month of the seeded history has no figures: {f:?}"
        );
        std::hint::black_box((b, w));
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    store.close().await;
    Ok(runs[1])
}

/// The same on a fresh PostgreSQL database (MAILROOM_TEST_PG_URL's server),
/// dropped afterwards.
pub async fn stats_month_postgres(tickets: usize) -> anyhow::Result<f64> {
    use sqlx::{Connection, Executor};
    let pg_admin = std::env::var("MAILROOM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_db = format!("mailroom_bench_{}", hex(4));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_admin)
        .await
        .context("PostgreSQL")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {pg_db}")))
        .await?;
    let base = pg_admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(pg_admin.clone());
    let ms = stats_month(&format!("{base}/{pg_db}"), tickets).await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"
        )))
        .await;
    ms
}
