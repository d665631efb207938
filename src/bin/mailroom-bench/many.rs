//! The `many` stage: many mailboxes (200 at full size) in one `mailroom
//! run` on SQLite, all posting into one Matrix room. Issue #18 asks what
//! that costs in connections, memory and start-up; its targets are at most
//! 150 MiB resident and ready within 5 s, on a release build.
//!
//! - **Ready**: from the spawn until every IMAP connection of every mailbox
//!   (INBOX, and the Sent watcher's) has IDLE accepted. The daemon says so
//!   once per connection ("IMAP watching", with the mailbox in its span and
//!   the folder as a field); the stage reads its JSON log, so a line is
//!   told apart by data, not by the look of the text.
//! - **Idle**: resident memory a few seconds after ready, the IMAP
//!   connections the process holds (its sockets matched against the TCP
//!   table, see `daemon::resources`), its threads and open descriptors.
//! - **Burst**: one mail APPENDed to every mailbox at once (all writers
//!   logged in first, so the burst is the APPENDs alone), timed until every
//!   one is stored (counted in the database) and until every thread is
//!   posted, with the peak resident memory over that time (the peak is
//!   reset first, so the start's peak does not count).
//! - **Stop**: SIGTERM, which must end the process with status 0 in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use mailroom::mail::imap;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use sqlx::{Connection, Row};

use crate::common::{Env, imap_settings, login, mail, mail_users, matrix_user, tempfile_dir};
use crate::daemon::{Daemon, resources};

/// Targets of issue #18 (release build).
pub const TARGET_RSS_MB: f64 = 150.0;
pub const TARGET_READY_MS: f64 = 5_000.0;

/// What one run measured.
pub struct ManyRun {
    pub mailboxes: usize,
    /// Spawn → every connection's IDLE accepted.
    pub ready_ms: f64,
    /// The same number of logins by the bench alone, all at once (see
    /// `login_floor`).
    pub login_floor_ms: f64,
    /// CPU time (user + system) mailroom spent from the spawn until ready.
    pub start_cpu_ms: f64,
    /// Spawn → "matrix connected" (the mailboxes start after it).
    pub matrix_ms: f64,
    /// Peak resident memory from the start until idle.
    pub rss_start_peak_mb: f64,
    pub rss_idle_mb: f64,
    /// The part of it mailroom allocated (a debug build's executable, mapped
    /// from disk, is most of the rest).
    pub rss_idle_anon_mb: f64,
    pub imap_connections: usize,
    pub threads: usize,
    pub open_fds: usize,
    /// First APPEND of the burst → every mail stored.
    pub burst_stored_ms: f64,
    /// First APPEND → every thread posted; `None` when the posting window
    /// ended first (`posted` says how many).
    pub burst_posted_ms: Option<f64>,
    pub posted: usize,
    /// Peak resident memory from the burst until every thread was posted
    /// (or the window ended).
    pub rss_peak_mb: f64,
    /// SIGTERM → exit.
    pub stop_ms: f64,
}

pub async fn many(env: &Env, mailboxes: usize) -> anyhow::Result<ManyRun> {
    let started = Instant::now();
    // Scripts and /proc reads block: off the runtime's worker threads.
    let users = tokio::task::block_in_place(|| mail_users(env, "many", mailboxes))?;
    let (bot, owner) = tokio::task::block_in_place(|| {
        anyhow::Ok((
            matrix_user(env, "many-bot")?,
            matrix_user(env, "many-owner")?,
        ))
    })?;
    let owner = login(env, &owner).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![bot.0.parse()?];
    let room = owner.create_room(req).await?;
    eprintln!(
        "mailroom-bench: many: {mailboxes} mail users and a room in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let floor = login_floor(env, &users).await?;
    let dir = tempfile_dir()?;
    let out = measure(env, &dir, &users, &bot, room.room_id().as_str()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut run = out?;
    run.login_floor_ms = ms(floor);
    Ok(run)
}

/// The mail server's own share of the start: the bench opens what the
/// daemon will open (two connections a mailbox, all at once), each logged
/// in with INBOX EXAMINEd, and times it until the last is. On this stack
/// every login costs Dovecot a process; on two shared cores that, not
/// mailroom, may be what `ready_ms` waits for.
async fn login_floor(env: &Env, users: &[(String, String)]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for user in users.iter().chain(users) {
        let settings = imap_settings(env, user);
        tasks.spawn(async move {
            let mut session = imap::connect_password(&settings).await?;
            imap::examine(&mut session, "INBOX").await?;
            anyhow::Ok(session)
        });
    }
    let mut sessions = Vec::with_capacity(2 * users.len());
    while let Some(done) = tasks.join_next().await {
        sessions.push(done??);
    }
    let took = start.elapsed();
    let mut logouts = tokio::task::JoinSet::new();
    for session in sessions {
        logouts.spawn(imap::logout(session));
    }
    while logouts.join_next().await.is_some() {}
    eprintln!(
        "mailroom-bench: many: login floor: {} IMAP logins at once, each with an EXAMINE, in {} ms",
        2 * users.len(),
        took.as_millis()
    );
    Ok(took)
}

async fn measure(
    env: &Env,
    dir: &std::path::Path,
    users: &[(String, String)],
    bot: &(String, String),
    room: &str,
) -> anyhow::Result<ManyRun> {
    let db = dir.join("many.db");
    let config = dir.join("many.toml");
    std::fs::write(&config, config_text(env, &db, users, bot, room, dir))?;
    let mut d = Daemon::spawn(
        &config,
        &[("BOT", bot.1.as_str()), ("MAILROOM_LOG_FORMAT", "json")],
    )?;
    // Whatever happened, the daemon is stopped before the stage returns.
    let observed = observe(env, &mut d, users, &db).await;
    let stopped = d.stop_within(Duration::from_secs(30)).await;
    let mut run = observed?;
    let (status, stop) = stopped?;
    if !status.success() {
        bail!("mailroom run ended with {status} after SIGTERM (expected 0)");
    }
    run.stop_ms = ms(stop);
    Ok(run)
}

/// Everything but the stop, on the running daemon.
async fn observe(
    env: &Env,
    d: &mut Daemon,
    users: &[(String, String)],
    db: &std::path::Path,
) -> anyhow::Result<ManyRun> {
    let n = users.len();
    let pid = d.child.id();
    // Ready: INBOX and Sent of every mailbox.
    let ready_limit = Duration::from_secs(60) + Duration::from_millis(200 * n as u64);
    let watching = wait_ready(d, 2 * n, ready_limit).await?;
    let ready = watching
        .values()
        .max()
        .copied()
        .ok_or_else(|| anyhow!("no connection watching"))?;
    let ready_ms = ms(ready.duration_since(d.started));
    let start_cpu_ms = tokio::task::spawn_blocking(move || resources::cpu_ms(pid)).await??;
    say_spread(d, &watching);
    let matrix_ms = first_message(d, "matrix connected")
        .map_or(f64::NAN, |at| ms(at.duration_since(d.started)));
    // Idle: what is left once the start's allocations settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let imap_port = env.imap_port;
    let (imap_connections, threads, open_fds) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((
            resources::tcp_connections_to(pid, imap_port)?,
            resources::threads(pid)?,
            resources::open_fds(pid)?,
        ))
    })
    .await??;
    let rss_idle_mb = d.rss_mb();
    let rss_idle_anon_mb = d.rss_kb("RssAnon:") / 1024.0;
    let rss_start_peak_mb = d.peak_mb();
    if imap_connections != 2 * n {
        eprintln!(
            "mailroom-bench: many: {imap_connections} IMAP connections for {n} mailboxes (expected {}: INBOX and Sent each)",
            2 * n
        );
    }
    let (burst_stored, burst_posted, posted, rss_peak_mb) = burst(env, d, users, db).await?;
    Ok(ManyRun {
        mailboxes: n,
        ready_ms,
        login_floor_ms: f64::NAN,
        start_cpu_ms,
        matrix_ms,
        rss_start_peak_mb,
        rss_idle_mb,
        rss_idle_anon_mb,
        imap_connections,
        threads,
        open_fds,
        burst_stored_ms: ms(burst_stored),
        burst_posted_ms: burst_posted.map(ms),
        posted,
        rss_peak_mb,
        stop_ms: f64::NAN,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints when the connections of each folder were watching (first,
/// median, last, ms since the spawn): where the start's time went.
fn say_spread(d: &Daemon, watching: &HashMap<(String, String), Instant>) {
    let mut by_folder: HashMap<&str, Vec<f64>> = HashMap::new();
    for ((_, folder), at) in watching {
        by_folder
            .entry(folder.as_str())
            .or_default()
            .push(ms(at.duration_since(d.started)));
    }
    let mut folders: Vec<_> = by_folder.into_iter().collect();
    folders.sort_by(|a, b| a.0.cmp(b.0));
    for (folder, mut times) in folders {
        times.sort_by(f64::total_cmp);
        eprintln!(
            "mailroom-bench: many: {} {folder} connections watching from {:.0} ms, half by {:.0} ms, all by {:.0} ms",
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
        );
    }
}

/// Waits until `expected` distinct (mailbox, folder) connections said
/// "IMAP watching"; when each first did. A connection lost and made again
/// says it again: counted once. On a timeout, says how far it got and
/// what the daemon warned of.
async fn wait_ready(
    d: &mut Daemon,
    expected: usize,
    limit: Duration,
) -> anyhow::Result<HashMap<(String, String), Instant>> {
    let deadline = Instant::now() + limit;
    let mut watching: HashMap<(String, String), Instant> = HashMap::new();
    let mut seen = 0;
    loop {
        let lines: Vec<(String, Instant)> = d
            .log
            .lock()
            .map(|v| v.iter().skip(seen).cloned().collect())
            .unwrap_or_default();
        seen += lines.len();
        for (line, at) in &lines {
            if !line.contains("IMAP watching") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["fields"]["message"] != "IMAP watching" {
                continue;
            }
            let mailbox = v["span"]["mailbox"].as_str().unwrap_or_default();
            let folder = v["fields"]["folder"].as_str().unwrap_or_default();
            watching
                .entry((mailbox.to_owned(), folder.to_owned()))
                .or_insert(*at);
        }
        if watching.len() >= expected {
            return Ok(watching);
        }
        if let Some(ended) = d.exited() {
            bail!("mailroom run exited before every mailbox was watched: {ended}");
        }
        if Instant::now() > deadline {
            let problems = d
                .log
                .lock()
                .map(|v| {
                    v.iter()
                        .filter(|(l, _)| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                        .take(5)
                        .map(|(l, _)| l.clone())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            bail!(
                "{} of {expected} IMAP connections watching after {} s; first warnings:\n{problems}",
                watching.len(),
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// When the daemon first logged `message`.
fn first_message(d: &Daemon, message: &str) -> Option<Instant> {
    let needle = format!("\"message\":\"{message}\"");
    d.log
        .lock()
        .ok()?
        .iter()
        .find(|(l, _)| l.contains(&needle))
        .map(|(_, at)| *at)
}

/// One mail APPENDed to every mailbox at once; until every one is stored,
/// until every thread is posted (or a window ends), and the peak resident
/// memory over both.
async fn burst(
    env: &Env,
    d: &Daemon,
    users: &[(String, String)],
    db: &std::path::Path,
) -> anyhow::Result<(Duration, Option<Duration>, usize, f64)> {
    let n = users.len();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .with_context(|| format!("opening {} to count", db.display()))?;
    // Logged in first, a few at a time, so the burst is the APPENDs alone.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut logins = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let settings = imap_settings(env, user);
        let gate = gate.clone();
        logins.spawn(async move {
            let _slot = gate.acquire_owned().await?;
            anyhow::Ok((i, imap::connect_password(&settings).await?))
        });
    }
    let mut writers = Vec::with_capacity(n);
    while let Some(done) = logins.join_next().await {
        writers.push(done??);
    }
    let pid = d.child.id();
    tokio::task::spawn_blocking(move || resources::reset_peak(pid)).await??;
    let start = Instant::now();
    let mut appends = tokio::task::JoinSet::new();
    for (i, mut writer) in writers {
        let to = users[i].0.clone();
        appends.spawn(async move {
            let raw = mail(
                "burst@customer.example",
                &to,
                &format!("many-{i}@bench"),
                &format!("Many {i}"),
            );
            writer.append("INBOX", None, None, raw).await?;
            imap::logout(writer).await;
            anyhow::Ok(())
        });
    }
    while let Some(done) = appends.join_next().await {
        done??;
    }
    let appended = start.elapsed();
    let count = async |conn: &mut sqlx::AnyConnection, sql: &str| -> anyhow::Result<usize> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(conn)
            .await?;
        Ok(usize::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
    };
    let stored_sql = "SELECT COUNT(*) FROM emails WHERE direction = 'inbound'";
    let posted_sql = "SELECT COUNT(*) FROM outbox WHERE kind = 'chat_post' AND state = 'done'";
    let store_deadline = start + Duration::from_secs(60) + Duration::from_millis(100 * n as u64);
    let stored = loop {
        if count(&mut conn, stored_sql).await? >= n {
            break start.elapsed();
        }
        if let Some(ended) = exited(d) {
            bail!("mailroom run exited during the burst: {ended}");
        }
        if Instant::now() > store_deadline {
            bail!(
                "{} of {n} burst mails stored after {} s",
                count(&mut conn, stored_sql).await?,
                start.elapsed().as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stored_peak = d.peak_mb();
    // Posting one room's threads goes one at a time (one lane per room):
    // waited for within a window, not without bound.
    let post_deadline =
        Instant::now() + Duration::from_secs(30) + Duration::from_millis(500 * n as u64);
    let (posted, all_posted) = loop {
        let posted = count(&mut conn, posted_sql).await?;
        if posted >= n {
            break (posted, Some(start.elapsed()));
        }
        if Instant::now() > post_deadline || exited(d).is_some() {
            break (posted, None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peak = d.peak_mb();
    let _ = conn.close().await;
    eprintln!(
        "mailroom-bench: many: burst of {n}: APPENDs done in {} ms, all stored in {} ms (peak {stored_peak:.1} MiB by then), {posted} of {n} threads posted{}",
        appended.as_millis(),
        stored.as_millis(),
        all_posted.map_or(" when the window ended".to_owned(), |p| format!(
            " in {} ms",
            p.as_millis()
        )),
    );
    Ok((stored, all_posted, posted, peak))
}

/// [`Daemon::exited`] without `&mut`: the burst only reads the log and
/// `/proc`, and a process that is gone has no `/proc/PID`.
fn exited(d: &Daemon) -> Option<String> {
    let pid = d.child.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    // "PID (comm) STATE …": a zombie has exited and awaits its wait().
    let gone = match stat {
        None => true,
        Some(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    };
    gone.then(|| format!("process {pid} is gone"))
}

/// The daemon's configuration: the SQLite database in the stage's
/// directory, the Matrix bot, and one `[[mailbox]]` a user, every one
/// posting into `room`.
fn config_text(
    env: &Env,
    db: &std::path::Path,
    users: &[(String, String)],
    bot: &(String, String),
    room: &str,
    dir: &std::path::Path,
) -> String {
    let mut text = format!(
        "[database]\nurl = \"sqlite://{db}\"\n[matrix]\nhomeserver = \"{hs}\"\nuser_id = \"{bot}\"\npassword_env = \"BOT\"\nstate_dir = \"{state}\"\n",
        db = db.display(),
        hs = env.synapse,
        bot = bot.0,
        state = dir.join("matrix").display(),
    );
    for (i, (addr, pw)) in users.iter().enumerate() {
        text.push_str(&format!(
            "[[mailbox]]\nname = \"many{i:03}\"\naddress = \"{addr}\"\ndisplay_name = \"Many {i}\"\n\
             [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
             [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
             [mailbox.chat]\nmatrix_room = \"{room}\"\n",
            imap = env.imap_port,
            smtp = env.smtp_port,
        ));
    }
    text
}
