//! The `scale` stage: many mailboxes with a backlog each, stored by one and
//! then by three `mailroom run` replicas sharing one PostgreSQL database
//! (docs/SCALING.md), to see how far more processes carry ingest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use mailroom::mail::imap;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use sqlx::{Connection, Executor, Row};

use crate::common::{Env, hex, imap_settings, login, mail, mail_user, matrix_user, tempfile_dir};
use crate::cpu::{CpuReading, CpuUse};
use crate::daemon::Daemon;

/// What one run (a number of replicas on a fresh database) measured.
pub struct ScaleRun {
    pub replicas: usize,
    /// Inbound emails stored per second, from the processes' start to the
    /// last email stored.
    pub store_rate: f64,
    /// Seconds from the processes' start to the first email stored.
    pub first_s: f64,
    /// Threads posted to Matrix per second (chat posts Synapse accepted),
    /// from the first to the end of the run's window.
    pub threads_rate: f64,
    /// Threads posted by the end of the window, of `emails`.
    pub threads: i64,
    pub emails: usize,
    /// Where the cores went from the start to the last email stored …
    pub storing_cpu: CpuUse,
    /// … and from then to the end of the window (posting only).
    pub posting_cpu: CpuUse,
}

/// `mailboxes` mailboxes with `per_mailbox` emails each, APPENDed before
/// any replica starts; then, for each count in `replicas`, that many
/// `mailroom run` processes on a fresh PostgreSQL database, all posting into
/// one Matrix room. Storing is measured until every email is stored; threads
/// until every one is posted or `thread_window` after storing ended,
/// whichever is first (posting 50,000 threads one at a time into Synapse
/// would take a quarter of an hour per run).
pub async fn scale(
    env: &Env,
    mailboxes: usize,
    per_mailbox: usize,
    replicas: &[usize],
    thread_window: Duration,
) -> anyhow::Result<Vec<ScaleRun>> {
    let users = add_mailboxes(env, mailboxes, per_mailbox).await?;
    let bot = matrix_user(env, "scale-bot")?;
    let owner = login(env, &matrix_user(env, "scale-owner")?).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![bot.0.parse()?];
    let room = owner.create_room(req).await?;
    let mut runs = Vec::new();
    for &n in replicas {
        let db = FreshPg::create().await?;
        let run = run_replicas(
            env,
            &db.url,
            &users,
            &bot,
            room.room_id().as_str(),
            n,
            per_mailbox,
            thread_window,
        )
        .await;
        db.drop_db().await;
        runs.push(run?);
    }
    Ok(runs)
}

/// Mail users (through the stack's users file, `scripts/stack add-user`)
/// with their backlog, APPENDed by a few connections at once.
async fn add_mailboxes(
    env: &Env,
    mailboxes: usize,
    per_mailbox: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut users = Vec::with_capacity(mailboxes);
    for i in 0..mailboxes {
        users.push(mail_user(env, &format!("scale{i:02}"))?);
    }
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (m, user) in users.iter().enumerate() {
        let settings = imap_settings(env, user);
        let to = user.0.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await?;
            let mut writer = imap::connect_password(&settings).await?;
            for i in 0..per_mailbox {
                // Every mail a new ticket, so that posts are threads.
                let raw = mail(
                    &format!("c{}@scale.example", i % 200),
                    &to,
                    &format!("s{m}-{i}@bench"),
                    &format!("Scale {m}-{i}"),
                );
                writer.append("INBOX", None, None, raw).await?;
            }
            imap::logout(writer).await;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    eprintln!(
        "mailroom-bench: scale: {} emails in {mailboxes} mailboxes APPENDed in {:.1} s",
        mailboxes * per_mailbox,
        started.elapsed().as_secs_f64()
    );
    Ok(users)
}

#[allow(clippy::too_many_arguments)]
async fn run_replicas(
    env: &Env,
    url: &str,
    users: &[(String, String)],
    bot: &(String, String),
    room: &str,
    replicas: usize,
    per_mailbox: usize,
    thread_window: Duration,
) -> anyhow::Result<ScaleRun> {
    let emails = users.len() * per_mailbox;
    // Migrated once here, not raced by the replicas' starts.
    let dburl = mailroom::store::settings::DatabaseUrl::parse(url).map_err(|e| anyhow!(e))?;
    let store = mailroom::store::sql::SqlStore::connect(&dburl, 2).await?;
    mailroom::store::TicketStore::migrate(&store).await?;
    let pool = store.pool().clone();
    let dir = tempfile_dir()?;
    let mut daemons = Vec::with_capacity(replicas);
    for r in 0..replicas {
        let config = dir.join(format!("replica{r}.toml"));
        std::fs::write(
            &config,
            config_text(env, url, users, bot, room, &dir.join(format!("matrix{r}"))),
        )?;
        daemons.push(Daemon::spawn(&config, &[("BOT", bot.1.as_str())])?);
    }
    let started = Instant::now();
    let cpu_start = CpuReading::now();
    let mut cpu_stored: Option<CpuReading> = None;
    let pids: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
    let count = async |sql: &str| -> anyhow::Result<i64> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await?
            .try_get::<i64, _>(0)?)
    };
    let stored_sql = "SELECT COUNT(*) FROM emails WHERE direction = 'inbound'";
    let posted_sql = "SELECT COUNT(*) FROM outbox WHERE kind = 'chat_post' AND state = 'done'";
    let deadline = started + Duration::from_secs(120 + emails as u64 / 50);
    let (mut first_stored, mut all_stored, mut first_posted) = (None, None, None);
    let mut posted = 0;
    let outcome = loop {
        let now = Instant::now();
        if now > deadline {
            break Err(anyhow!(
                "scale: {replicas} replicas: {} of {emails} emails stored after {} s",
                count(stored_sql).await.unwrap_or(-1),
                started.elapsed().as_secs()
            ));
        }
        if let Some(d) = daemons.iter_mut().find_map(|d| d.exited()) {
            break Err(anyhow!("scale: a mailroom run process exited: {d}"));
        }
        if all_stored.is_none() {
            let stored = count(stored_sql).await?;
            if stored > 0 && first_stored.is_none() {
                first_stored = Some(now);
            }
            if stored as usize >= emails {
                all_stored = Some(now);
                cpu_stored = Some(CpuReading::now());
            }
        }
        posted = count(posted_sql).await?;
        if posted > 0 && first_posted.is_none() {
            first_posted = Some(now);
        }
        if let Some(done) = all_stored
            && (posted as usize >= emails || now >= done + thread_window)
        {
            break Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu_end = CpuReading::now();
    for d in daemons {
        d.stop();
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let end = outcome?;
    let (Some(first), Some(last)) = (first_stored, all_stored) else {
        bail!("scale: nothing stored");
    };
    let posting = first_posted.map(|f| end.duration_since(f).as_secs_f64());
    let cpu_stored = cpu_stored.unwrap_or_else(|| cpu_end.clone());
    let storing_cpu = cpu_start.until(
        &cpu_stored,
        &pids,
        last.duration_since(started).as_secs_f64(),
    );
    let posting_cpu = cpu_stored.until(&cpu_end, &pids, end.duration_since(last).as_secs_f64());
    Ok(ScaleRun {
        replicas,
        // From the processes' start, not from the first email stored: a
        // replica's start (connecting, taking its leases) is part of what
        // it costs, and a small run's first-to-last span says nothing.
        store_rate: emails as f64 / last.duration_since(started).as_secs_f64().max(1e-3),
        first_s: first.duration_since(started).as_secs_f64(),
        threads_rate: posting.map_or(0.0, |s| posted as f64 / s.max(1e-3)),
        threads: posted,
        emails,
        storing_cpu,
        posting_cpu,
    })
}

/// One replica's configuration: every mailbox, the shared database, its own
/// Matrix state directory (matrix-sdk's store is one process's).
fn config_text(
    env: &Env,
    url: &str,
    users: &[(String, String)],
    bot: &(String, String),
    room: &str,
    state_dir: &std::path::Path,
) -> String {
    let mut text = format!(
        "[database]\nurl = \"{url}\"\n[matrix]\nhomeserver = \"{hs}\"\nuser_id = \"{bot}\"\npassword_env = \"BOT\"\nstate_dir = \"{state}\"\n",
        hs = env.synapse,
        bot = bot.0,
        state = state_dir.display(),
    );
    for (i, (addr, pw)) in users.iter().enumerate() {
        text.push_str(&format!(
            "[[mailbox]]\nname = \"scale{i:02}\"\naddress = \"{addr}\"\ndisplay_name = \"Scale {i}\"\ninitial_sync = \"all\"\n\
             loop_guard = {{ max_messages = 1000000 }}\n\
             [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
             [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
             [mailbox.chat]\nmatrix_room = \"{room}\"\n",
            imap = env.imap_port,
            smtp = env.smtp_port,
        ));
    }
    text
}

/// A fresh database on MAILROOM_TEST_PG_URL's server (as the tests use),
/// dropped by [`FreshPg::drop_db`].
struct FreshPg {
    admin: sqlx::AnyConnection,
    name: String,
    url: String,
}

impl FreshPg {
    async fn create() -> anyhow::Result<FreshPg> {
        let admin_url = std::env::var("MAILROOM_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .context("PostgreSQL (MAILROOM_TEST_PG_URL)")?;
        let name = format!("mailroom_scale_{}", hex(4));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Ok(FreshPg { admin, name, url })
    }

    async fn drop_db(mut self) {
        let _ = self
            .admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await;
    }
}
