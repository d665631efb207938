//! The outbox: queueing jobs ([`insert_job`], also used by every
//! transaction that queues work), taking the head of a due lane, ending a
//! job, requeueing a failed one, recovery after a crash. Table: `outbox`.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::audit::insert_audit;
use super::chat::link_thread;
use super::ingest::placeholders;
use super::{AnyTx, Backend, ReplicaRole, corrupt};
use crate::domain::chat::Platform;
use crate::domain::cluster::ReplicaId;
use crate::domain::ids::{Actor, TicketId};
use crate::store::{
    Job, JobOutcome, JobSpec, JobState, Requeued, Settlement, StoreResult, chat_lane,
    legacy_chat_lane,
};

pub(super) async fn enqueue(
    pool: &AnyPool,
    ticket: Option<TicketId>,
    spec: &JobSpec,
    not_before_ms: i64,
    now_ms: i64,
) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    let id = insert_job(&mut tx, ticket, spec, not_before_ms, now_ms).await?;
    tx.commit().await?;
    Ok(id)
}

pub(super) async fn next_job(
    pool: &AnyPool,
    backend: Backend,
    taker: Option<&ReplicaId>,
    now_ms: i64,
) -> StoreResult<Option<Job>> {
    // The head of each lane that is due: no earlier job of its lane
    // pending or in flight, and none in flight at all (asked as one set of
    // lanes for the whole query, not per job: with a long queue in one
    // room whose head is in flight, each of its jobs is passed over by a
    // hash look-up). Both hold across
    // replicas: a job another replica is taking is pending or in flight in
    // any snapshot, so the next job of its lane is never a head meanwhile.
    macro_rules! due {
        () => {
            "SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.lane = o.lane AND p.id < o.id AND p.state IN ('pending', 'in_flight')) \
             AND o.lane NOT IN (SELECT f.lane FROM outbox f WHERE f.state = 'in_flight') \
             ORDER BY o.not_before, o.id LIMIT 1"
        };
    }
    // On PostgreSQL, replicas taking at once pass over a row another is
    // taking (SKIP LOCKED) rather than queue behind it for the same job.
    let take = match backend {
        Backend::Postgres => concat!(
            "UPDATE outbox SET state = 'in_flight', attempts = attempts + 1, updated_at = $1, taken_by = $2 WHERE id = (",
            due!(),
            " FOR UPDATE SKIP LOCKED) AND state = 'pending' RETURNING *"
        ),
        Backend::Sqlite => concat!(
            "UPDATE outbox SET state = 'in_flight', attempts = attempts + 1, updated_at = $1, taken_by = $2 WHERE id = (",
            due!(),
            ") AND state = 'pending' RETURNING *"
        ),
    };
    // Not kept prepared on PostgreSQL: a kept statement gets a generic
    // plan after five runs, and one made while the outbox was nearly empty
    // found a lane's earlier jobs by scanning every pending job (16.7 ms a
    // take over 20,000 pending, against 0.4 ms planned with its values,
    // planning included). SQLite plans without statistics; it keeps its.
    let keep = backend != Backend::Postgres;
    loop {
        // Chosen and taken in one statement (one round trip per job).
        // The `state` condition is checked again on the row itself, so
        // of two workers choosing the same job only one takes it.
        let taken = sqlx::query(take)
            .persistent(keep)
            .bind(now_ms)
            .bind(taker.map(|t| t.as_str().to_owned()))
            .fetch_optional(pool)
            .await?;
        if let Some(row) = taken {
            return Ok(Some(job_from_row(&row)?));
        }
        // Nothing taken. On SQLite that means nothing is due: the choice
        // and the take are one write statement, which holds the database's
        // one write lock from its start, so no other worker or process
        // takes the chosen job in between. Asking again would pass over
        // every waiting job a second time, on the process's one connection,
        // which the worker that is posting waits for (a look in vain over
        // a 10,000-post backlog in one room).
        if backend == Backend::Sqlite {
            return Ok(None);
        }
        // On PostgreSQL nothing is due, or another replica or worker took
        // the chosen job first (or holds its row) and another may be due.
        let due = sqlx::query(due!())
            .persistent(keep)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?;
        if due.is_none() {
            return Ok(None);
        }
    }
}

pub(super) async fn next_due_at(pool: &AnyPool) -> StoreResult<Option<i64>> {
    // Only lane heads: a job behind a retrying or running one is not due
    // before it, and counting it would wake the workers in a busy loop
    // until the head is done. A lane's head is its lowest job pending or in
    // flight (jobs are taken in order, so a job in flight is its lane's
    // lowest); the lane is due when that head is pending. Found by one
    // grouped pass over the waiting jobs: the anti-joins of `next_job`,
    // asked of every waiting job, took 551 ms over 20,000 of them in one
    // lane (6 ms this way), and idle workers ask after every job taken.
    // The heads are a set the statement reads once (`IN`): written as a
    // join, SQLite ran the grouped pass again for every waiting job, and
    // over 10,000 of them the look ran for minutes.
    let row = sqlx::query(
        "SELECT MIN(o.not_before) AS due FROM outbox o WHERE o.state = 'pending' \
         AND o.id IN (SELECT MIN(id) FROM outbox WHERE state IN ('pending', 'in_flight') GROUP BY lane)",
    )
    // Planned with the table as it is (see `next_job`).
    .persistent(false)
    .fetch_one(pool)
    .await?;
    Ok(row.try_get("due")?)
}

pub(super) async fn finish_job(
    pool: &AnyPool,
    taker: Option<&ReplicaId>,
    job: &Job,
    outcome: &JobOutcome,
    now_ms: i64,
) -> StoreResult<()> {
    let (state, not_before, error) = match outcome {
        JobOutcome::Done => ("done", None, None),
        JobOutcome::Retry { at_ms, error } => ("pending", Some(*at_ms), Some(error.clone())),
        JobOutcome::Failed { error } => ("failed", None, Some(error.clone())),
    };
    let sql = format!(
        "UPDATE outbox SET state = $1, not_before = COALESCE($2, not_before), last_error = $3, updated_at = $4 \
         WHERE id = $5{}",
        only_mine(taker)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(state)
        .bind(not_before)
        .bind(error)
        .bind(now_ms)
        .bind(job.id);
    if let Some(t) = taker {
        q = q.bind(t.as_str().to_owned());
    }
    q.execute(pool).await?;
    Ok(())
}

/// A replica ends only a job it still holds: one whose heartbeat stopped
/// long enough for another to recover the job has lost it (the condition
/// binds the taker as `$6`).
fn only_mine(taker: Option<&ReplicaId>) -> &'static str {
    if taker.is_some() {
        " AND taken_by = $6"
    } else {
        ""
    }
}

pub(super) async fn settle_job(
    pool: &AnyPool,
    taker: Option<&ReplicaId>,
    job: &Job,
    settlement: &Settlement,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let (state, not_before, error) = match &settlement.outcome {
        JobOutcome::Done => ("done", None, None),
        JobOutcome::Retry { at_ms, error } => ("pending", Some(*at_ms), Some(error.clone())),
        JobOutcome::Failed { error } => ("failed", None, Some(error.clone())),
    };
    // Only while in flight: a retry of this write after a lost answer
    // must not queue the follow-on jobs twice.
    let sql = format!(
        "UPDATE outbox SET state = $1, not_before = COALESCE($2, not_before), last_error = $3, updated_at = $4 \
         WHERE id = $5 AND state = 'in_flight'{}",
        only_mine(taker)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(state)
        .bind(not_before)
        .bind(error)
        .bind(now_ms)
        .bind(job.id);
    if let Some(t) = taker {
        q = q.bind(t.as_str().to_owned());
    }
    let taken = q.execute(&mut *tx).await?;
    if taken.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(());
    }
    if let (Some(ticket), Some(thread)) = (job.ticket, &settlement.thread) {
        link_thread(&mut *tx, ticket, thread).await?;
    }
    for (spec, due_ms) in &settlement.timers {
        // A timer's lane names what it is for (a ticket's nudge round, a
        // digest's time): one already waiting is that timer, so two runs of
        // a job never start two chains.
        let waiting = sqlx::query(
            "SELECT 1 AS one FROM outbox WHERE lane = $1 AND state IN ('pending', 'in_flight') AND id <> $2",
        )
        .bind(spec.lane(job.ticket))
        .bind(job.id)
        .fetch_optional(&mut *tx)
        .await?;
        if waiting.is_none() {
            insert_job(&mut tx, job.ticket, spec, *due_ms, now_ms).await?;
        }
    }
    let first_time =
        match &settlement.once {
            None => true,
            Some(mark) => sqlx::query(
                "INSERT INTO timer_marks (mark, at) VALUES ($1, $2) ON CONFLICT (mark) DO NOTHING",
            )
            .bind(mark.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1,
        };
    if first_time {
        for spec in &settlement.follow_ons {
            insert_job(&mut tx, job.ticket, spec, now_ms, now_ms).await?;
        }
        if let Some((action, details)) = &settlement.audit {
            insert_audit(&mut tx, job.ticket, &Actor::System, action, details, now_ms).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn requeue_job(
    pool: &AnyPool,
    id: i64,
    actor: &Actor,
    now_ms: i64,
) -> StoreResult<Requeued> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query("SELECT * FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(Requeued::NoSuchJob);
    };
    let job = job_from_row(&row)?;
    if job.state != JobState::Failed {
        return Ok(Requeued::NotFailed(job.state));
    }
    if matches!(job.spec, JobSpec::SendReply { .. }) {
        return Ok(Requeued::Reply);
    }
    let taken = sqlx::query(
        "UPDATE outbox SET state = 'pending', attempts = 0, not_before = $1, updated_at = $1 \
         WHERE id = $2 AND state = 'failed'",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() == 0 {
        // Another retry got there first.
        return Ok(Requeued::NotFailed(JobState::Pending));
    }
    let details = format!(
        "outbox job {id} ({}) queued again; it had failed: {}",
        job.spec.kind(),
        job.last_error.as_deref().unwrap_or("no error recorded")
    );
    insert_audit(&mut tx, job.ticket, actor, "job-retried", &details, now_ms).await?;
    tx.commit().await?;
    Ok(Requeued::Queued(Job {
        state: JobState::Pending,
        attempts: 0,
        not_before_ms: now_ms,
        ..job
    }))
}

pub(super) async fn recover_in_flight(
    pool: &AnyPool,
    backend: Backend,
    replica: Option<&ReplicaRole>,
    now_ms: i64,
) -> StoreResult<Vec<Job>> {
    let rows = match replica {
        // Alone on the database: everything in flight was left by a crash.
        None => {
            sqlx::query("SELECT * FROM outbox WHERE state = 'in_flight' ORDER BY id")
                .fetch_all(pool)
                .await?
        }
        // One of several: only jobs of replicas silent past the lease TTL
        // (or of none recorded) were interrupted. Adopting them is one
        // conditional update, so of two live replicas recovering at once
        // each job goes to one, and is reported once.
        Some(me) => {
            let sql = format!(
                "UPDATE outbox SET taken_by = $1 WHERE state = 'in_flight' AND (taken_by IS NULL OR taken_by NOT IN \
                 (SELECT id FROM replicas WHERE heartbeat_at > {} - $2)) RETURNING *",
                backend.now_ms_sql()
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(me.id.as_str())
                .bind(me.ttl_ms)
                .fetch_all(pool)
                .await?
        }
    };
    let mut out = Vec::new();
    for row in rows {
        let job = job_from_row(&row)?;
        if !job.spec.at_most_once() {
            sqlx::query("UPDATE outbox SET state = 'pending', taken_by = NULL, maybe_done = 1, updated_at = $1 WHERE id = $2 AND state = 'in_flight'")
                .bind(now_ms)
                .bind(job.id)
                .execute(pool)
                .await?;
        }
        out.push(job);
    }
    out.sort_by_key(|j| j.id);
    Ok(out)
}

pub(super) async fn jobs(pool: &AnyPool, states: &[JobState]) -> StoreResult<Vec<Job>> {
    // Filtered in the database (the `outbox_due` index leads with the
    // state): `/healthz` asks for the failed ones on every call, among
    // however many done jobs the table holds.
    let rows = if states.is_empty() {
        sqlx::query("SELECT * FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await?
    } else {
        let marks: Vec<String> = (1..=states.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM outbox WHERE state IN ({}) ORDER BY id",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in states {
            q = q.bind(s.as_str());
        }
        q.fetch_all(pool).await?
    };
    rows.iter().map(job_from_row).collect()
}

pub(super) async fn count_jobs(pool: &AnyPool) -> StoreResult<Vec<(JobState, u64)>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        .fetch_all(pool)
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let state: String = row.try_get("state")?;
        let n: i64 = row.try_get("n")?;
        let state =
            JobState::parse(&state).ok_or_else(|| corrupt("outbox", format!("state {state:?}")))?;
        out.push((state, n.max(0) as u64));
    }
    Ok(out)
}

fn job_from_row(row: &AnyRow) -> StoreResult<Job> {
    let payload: String = row.try_get("payload")?;
    let state: String = row.try_get("state")?;
    let ticket: Option<i64> = row.try_get("ticket_id")?;
    Ok(Job {
        id: row.try_get("id")?,
        ticket: ticket.map(TicketId::new),
        spec: serde_json::from_str(&payload).map_err(|e| corrupt("outbox", e))?,
        state: JobState::parse(&state)
            .ok_or_else(|| corrupt("outbox", format!("state {state:?}")))?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        last_error: row.try_get("last_error")?,
        not_before_ms: row.try_get("not_before")?,
        created_at_ms: row.try_get("created_at")?,
        maybe_done: row.try_get::<i64, _>("maybe_done")? != 0,
    })
}

pub(super) async fn insert_job(
    tx: &mut AnyTx,
    ticket: Option<TicketId>,
    spec: &JobSpec,
    not_before_ms: i64,
    now_ms: i64,
) -> StoreResult<i64> {
    let lane = lane_of(tx, ticket, spec).await?;
    insert_job_in(tx, &lane, ticket, spec, not_before_ms, now_ms).await
}

/// [`insert_job`] for the first chat job on a platform of a ticket
/// created in this same transaction: it has no job waiting and no thread
/// yet, so its lane is [`JobSpec::lane`], without `lane_of`'s two look-ups
/// (two round trips per new ticket and platform at ingest).
pub(super) async fn insert_first_job(
    tx: &mut AnyTx,
    ticket: TicketId,
    spec: &JobSpec,
    now_ms: i64,
) -> StoreResult<i64> {
    let lane = spec.lane(Some(ticket));
    insert_job_in(tx, &lane, Some(ticket), spec, now_ms, now_ms).await
}

async fn insert_job_in(
    tx: &mut AnyTx,
    lane: &str,
    ticket: Option<TicketId>,
    spec: &JobSpec,
    not_before_ms: i64,
    now_ms: i64,
) -> StoreResult<i64> {
    let payload = serde_json::to_string(spec).map_err(|e| corrupt("outbox", e))?;
    let row = sqlx::query(
        "INSERT INTO outbox (lane, kind, ticket_id, payload, state, attempts, not_before, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6) RETURNING id",
    )
    .bind(lane)
    .bind(spec.kind())
    .bind(ticket.map(|t| t.get()))
    .bind(payload)
    .bind(not_before_ms)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

/// [`lane_of`] for chat jobs of many tickets on one platform at once: for
/// each ticket with a chat job waiting on `platform`, the lane of its
/// latest one, else the lane of its thread's room; a ticket with neither
/// is left out (its job takes [`JobSpec::lane`]). Two statements for all
/// of them instead of two per job; not kept prepared (each list differs).
pub(super) async fn chat_lanes_of(
    tx: &mut AnyTx,
    platform: Platform,
    tickets: &[TicketId],
) -> StoreResult<HashMap<TicketId, String>> {
    let mut lanes = HashMap::new();
    if tickets.is_empty() {
        return Ok(lanes);
    }
    let shared = legacy_chat_lane(platform);
    let list = |from: usize| placeholders(from, tickets.len());
    let sql = format!(
        "SELECT room, ticket_id FROM chat_threads WHERE platform = $1 AND ticket_id IN ({})",
        list(2)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(platform.as_str());
    for t in tickets {
        q = q.bind(t.get());
    }
    for row in q.fetch_all(&mut **tx).await? {
        let room: String = row.try_get("room")?;
        lanes.insert(
            TicketId::new(row.try_get("ticket_id")?),
            chat_lane(platform, &room),
        );
    }
    // A job waiting wins over the thread's room: read second, in id order,
    // so each ticket's latest one is the one kept.
    let sql = format!(
        "SELECT lane, ticket_id FROM outbox WHERE state IN ('pending', 'in_flight')          AND (lane = $1 OR lane LIKE $2) AND ticket_id IN ({}) ORDER BY id",
        list(3)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .bind(shared.as_str())
        .bind(format!("{shared}:%"));
    for t in tickets {
        q = q.bind(t.get());
    }
    for row in q.fetch_all(&mut **tx).await? {
        lanes.insert(
            TicketId::new(row.try_get("ticket_id")?),
            row.try_get("lane")?,
        );
    }
    Ok(lanes)
}

/// The lane a job is queued in: [`JobSpec::lane`], except for a chat job
/// about a ticket's thread, which goes where the ticket's chat jobs on its
/// platform wait (so they stay in order, whatever lane they started in:
/// one queued by an older version in the platform's shared lane, a root's
/// room before its thread exists), else to the lane of the thread's room.
async fn lane_of(tx: &mut AnyTx, ticket: Option<TicketId>, spec: &JobSpec) -> StoreResult<String> {
    let (Some(ticket), Some(platform)) = (ticket, spec.ticket_chat()) else {
        return Ok(spec.lane(ticket));
    };
    let shared = legacy_chat_lane(platform);
    // `outbox_ticket` (migration 0018) makes this an index lookup among
    // the ticket's few jobs, however many the table holds.
    let waiting = sqlx::query(
        "SELECT lane FROM outbox WHERE ticket_id = $1 AND state IN ('pending', 'in_flight') \
         AND (lane = $2 OR lane LIKE $3) ORDER BY id DESC LIMIT 1",
    )
    .bind(ticket.get())
    .bind(shared.as_str())
    .bind(format!("{shared}:%"))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = waiting {
        return Ok(row.try_get("lane")?);
    }
    let thread =
        sqlx::query("SELECT room FROM chat_threads WHERE ticket_id = $1 AND platform = $2")
            .bind(ticket.get())
            .bind(platform.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match thread {
        Some(row) => chat_lane(platform, &row.try_get::<String, _>("room")?),
        None => spec.lane(Some(ticket)),
    })
}
