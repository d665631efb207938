//! `mailroom-bench`: figures for mailroom on the local stack (see
//! `scripts/bench`). Prints a table and one `METRIC <name> <value> <unit>`
//! line per figure.
//!
//! Measured: the floors (the mail server's and the chat server's own delays),
//! mailroom's end-to-end latency, backlog throughput against the chat
//! server's own posting rate, mailroom's own ingest cost, and, from a
//! separate `mailroom run` process, startup time and memory (idle, backlog
//! peak, a 25 MB attachment's peak), and the same latency into the fake
//! Slack of the tests, and reply latency (`!reply` queued → sent and filed).

// matrix-sdk's futures are deeply nested types.
#![recursion_limit = "256"]

/// The fake Slack the integration tests use (Slack's documented wire format),
/// here as the chat server for `slack_latency_*`.
#[path = "../../tests/fake_slack/mod.rs"]
mod fake_slack;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use mailroom::bridge::ingest::MailboxIngest;
use mailroom::bridge::{App, connect_chats};
use mailroom::config::{DatabaseUrl, ImapSettings, Secret, Settings, TlsMode};
use mailroom::domain::mailbox::Checkpoint;
use mailroom::mail::imap;
use mailroom::store::sql::SqlStore;
use mailroom::store::{JobSpec, TicketStore};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use tokio_util::sync::CancellationToken;

struct Env {
    repo: std::path::PathBuf,
    stack_dir: std::path::PathBuf,
    imap_port: u16,
    smtp_port: u16,
    synapse: String,
}

fn env() -> anyhow::Result<Env> {
    let repo = std::env::current_dir()?;
    let stack_dir = std::env::var("MAILROOM_STACK_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| repo.join(".stack"));
    let text = std::fs::read_to_string(stack_dir.join("stack.env")).with_context(|| {
        format!(
            "{}: run scripts/stack up",
            stack_dir.join("stack.env").display()
        )
    })?;
    let get = |k: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")).map(str::to_owned))
            .ok_or_else(|| anyhow!("{k} missing from stack.env"))
    };
    Ok(Env {
        imap_port: get("MAILROOM_IMAP_PORT")?.parse()?,
        smtp_port: get("MAILROOM_SMTP_PORT")?.parse()?,
        synapse: get("MAILROOM_SYNAPSE_URL")?,
        repo,
        stack_dir,
    })
}

fn hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs a scripts/stack or synapse.sh helper.
fn sh(env: &Env, script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(&env.repo)
        .env("STATE", &env.stack_dir)
        .env("REPO", &env.repo)
        .env("MAILROOM_STACK_DIR", &env.stack_dir)
        .output()?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn mail_user(env: &Env, prefix: &str) -> anyhow::Result<(String, String)> {
    let address = format!("{prefix}-{}@example.com", hex(5));
    let password = format!("pw-{}", hex(6));
    sh(
        env,
        "scripts/stack add-user \"$0\" \"$1\" >/dev/null 2>&1",
        &[&address, &password],
    )?;
    Ok((address, password))
}

fn matrix_user(env: &Env, prefix: &str) -> anyhow::Result<(String, String)> {
    let name = format!("{prefix}-{}", hex(4));
    let password = format!("{name}-pw");
    sh(
        env,
        "source scripts/lib/synapse.sh && synapse_register \"$0\" \"$1\" >/dev/null",
        &[&name, &password],
    )?;
    Ok((format!("@{name}:localhost"), password))
}

async fn login(env: &Env, user: &(String, String)) -> anyhow::Result<Client> {
    let c = Client::builder()
        .homeserver_url(&env.synapse)
        .build()
        .await?;
    c.matrix_auth()
        .login_username(&user.0, &user.1)
        .send()
        .await?;
    Ok(c)
}

fn imap_settings(env: &Env, user: &(String, String)) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port: env.imap_port,
        tls: TlsMode::None,
        username: user.0.clone(),
        password: Secret::new(user.1.clone()),
        folder: "INBOX".into(),
        ca_file: None,
        idle: true,
        poll_interval: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(600),
    }
}

fn mail(from: &str, to: &str, id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Bench <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nmy order {id} has not arrived yet. Could you check?\r\n\r\n-- \r\nBench\r\n"
    )
    .into_bytes()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// APPEND on one connection → `* EXISTS` on another, in IDLE.
async fn imap_floor(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let user = mail_user(env, "floor")?;
    let settings = imap_settings(env, &user);
    let mut out = Vec::new();
    for i in 0..samples {
        let mut watcher = imap::connect(&settings).await?;
        imap::examine(&mut watcher, "INBOX").await?;
        let mut idle = watcher.idle();
        idle.init().await?;
        let mut writer = imap::connect(&settings).await?;
        let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
        let start = Instant::now();
        let append = async {
            writer
                .append(
                    "INBOX",
                    None,
                    None,
                    mail(&user.0, &user.0, &format!("floor{i}@bench"), "floor"),
                )
                .await
        };
        let (r, a) = tokio::join!(wait, append);
        a?;
        r?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
        imap::logout(writer).await;
    }
    Ok(out)
}

/// A plain client posts → another client's sync sees it.
async fn chat_floor(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let a = login(env, &matrix_user(env, "floora")?).await?;
    let b_user = matrix_user(env, "floorb")?;
    let b = login(env, &b_user).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![b_user.0.parse()?];
    let room = a.create_room(req).await?;
    b.sync_once(SyncSettings::default()).await?;
    b.join_room_by_id(room.room_id()).await?;
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let s = seen.clone();
    b.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let s = s.clone();
        async move {
            if let Ok(mut v) = s.lock() {
                v.push((ev.content.body().to_owned(), Instant::now()));
            }
        }
    });
    let bc = b.clone();
    let syncing = tokio::spawn(async move {
        // Long-poll the way mailroom's adapter does. (`Client::sync` showed
        // about a second of extra delay per event here.)
        loop {
            if bc
                .sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Vec::new();
    for i in 0..samples {
        let text = format!("floor {i}");
        let start = Instant::now();
        room.send(RoomMessageEventContent::text_plain(&text))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hit = seen
                .lock()
                .ok()
                .and_then(|v| v.iter().find(|(t, _)| *t == text).map(|(_, at)| *at));
            if let Some(at) = hit {
                out.push(at.duration_since(start).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                bail!("chat floor: message {i} not seen within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    syncing.abort();
    Ok(out)
}

/// A mailbox, a bot account, a room and an observing teammate (alice) whose
/// client long-polls and timestamps every message it sees.
struct Bridge {
    support: (String, String),
    alice: Client,
    settings: Settings,
    /// The same configuration as a file, for a `mailroom run` process.
    config_text: String,
    bot_password: String,
    dir: std::path::PathBuf,
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
    syncing: tokio::task::JoinHandle<()>,
}

async fn bridge(env: &Env) -> anyhow::Result<Bridge> {
    let support = mail_user(env, "support")?;
    let bot = matrix_user(env, "bot")?;
    let alice = login(env, &matrix_user(env, "alice")?).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![bot.0.parse()?];
    let room = alice.create_room(req).await?;
    let dir = tempfile_dir()?;
    let text = format!(
        "[database]\nurl = \"sqlite://{db}\"\n[[mailbox]]\nname = \"support\"\naddress = \"{addr}\"\ndisplay_name = \"Bench\"\ninitial_sync = \"all\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.chat]\nmatrix_room = \"{room}\"\n[commands]\nundo_secs = 0\n[matrix]\nhomeserver = \"{hs}\"\nuser_id = \"{bot}\"\npassword_env = \"BOT\"\nstate_dir = \"{state}\"\n",
        db = dir.join("bench.db").display(),
        addr = support.0,
        imap = env.imap_port,
        smtp = env.smtp_port,
        pw = support.1,
        room = room.room_id(),
        hs = env.synapse,
        bot = bot.0,
        state = dir.join("matrix").display(),
    );
    let bot_pw = bot.1.clone();
    let settings = Settings::parse(&text, &move |k| (k == "BOT").then(|| bot_pw.clone()))
        .map_err(|p| anyhow!("{p:?}"))?;
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let s = seen.clone();
    alice.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let s = s.clone();
        async move {
            if let Ok(mut v) = s.lock() {
                v.push((ev.content.body().to_owned(), Instant::now()));
            }
        }
    });
    let ac = alice.clone();
    let syncing = tokio::spawn(async move {
        // Long-poll the way mailroom's adapter does. (`Client::sync` showed
        // about a second of extra delay per event here.)
        loop {
            if ac
                .sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Ok(Bridge {
        support,
        alice,
        settings,
        config_text: text,
        bot_password: bot.1.clone(),
        dir,
        seen,
        syncing,
    })
}

/// A `mailroom run` process, for figures only a separate process shows
/// (startup, memory).
struct Daemon {
    child: std::process::Child,
    started: Instant,
    log: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Daemon {
    fn rss_kb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field).map(|v| {
                    v.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(f64::NAN)
                })
            })
            .unwrap_or(f64::NAN)
    }

    /// Resident memory by mapping (`/proc/PID/smaps`), largest first, as
    /// lines for the diagnostics `MAILROOM_BENCH_LOG` prints.
    fn rss_by_mapping(&self) -> Vec<String> {
        let smaps =
            std::fs::read_to_string(format!("/proc/{}/smaps", self.child.id())).unwrap_or_default();
        let mut maps: Vec<(u64, String)> = Vec::new();
        let mut current = String::new();
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // "start-end perms offset dev inode [path]"
                let perms = fields.next().unwrap_or_default();
                let path = fields.nth(3).unwrap_or("[anon]");
                current = format!("{perms} {path}");
            } else if first == "Rss:" {
                let kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                maps.push((kb, current.clone()));
            }
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m.0));
        maps.into_iter()
            .take(8)
            .map(|(kb, m)| format!("{:>8.1} MiB  {m}", kb as f64 / 1024.0))
            .collect()
    }

    /// Current resident memory, MiB.
    fn rss_mb(&self) -> f64 {
        self.rss_kb("VmRSS:") / 1024.0
    }

    /// Peak resident memory so far, MiB.
    fn peak_mb(&self) -> f64 {
        self.rss_kb("VmHWM:") / 1024.0
    }

    async fn wait_log(&self, needle: &str, limit: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let hit = self.log.lock().ok().and_then(|v| {
                v.iter()
                    .find(|(l, _)| l.contains(needle))
                    .map(|(_, at)| *at)
            });
            if let Some(at) = hit {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("mailroom run never logged {needle:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, then wait: mailroom stops cleanly. With
    /// `MAILROOM_BENCH_LOG=1` its log is printed, each line with the
    /// milliseconds since start, to see where the time went
    /// (`MAILROOM_BENCH_DAEMON_LOG` sets its filter).
    fn stop(mut self) {
        if std::env::var_os("MAILROOM_BENCH_LOG").is_some()
            && let Ok(lines) = self.log.lock()
        {
            for (line, at) in lines.iter() {
                let ms = at.duration_since(self.started).as_millis();
                eprintln!("{ms:>8} {line}");
            }
        }
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Bridge {
    fn spawn(&self) -> anyhow::Result<Daemon> {
        use std::io::BufRead;
        let config = self.dir.join("mailroom.toml");
        std::fs::write(&config, &self.config_text)?;
        let exe = std::env::current_exe()?.with_file_name("mailroom");
        let started = Instant::now();
        let mut child = std::process::Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("BOT", &self.bot_password)
            .env(
                "MAILROOM_LOG",
                std::env::var("MAILROOM_BENCH_DAEMON_LOG").unwrap_or_else(|_| {
                    "info,sqlx=warn,matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=error"
                        .into()
                }),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("starting {} (build it with --bin mailroom)", exe.display())
            })?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut v) = l.lock() {
                    v.push((line, Instant::now()));
                }
            }
        });
        Ok(Daemon {
            child,
            started,
            log,
        })
    }

    fn roots_seen(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| t.starts_with("📨") && t.contains(prefix))
                    .count()
            })
            .unwrap_or(0)
    }

    fn finish(self) {
        self.syncing.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// APPEND → the ticket's root message seen by another Matrix client.
async fn latency(env: &Env, emails: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    let b = bridge(env).await?;
    let (app, cancel, handles) = start(b.settings.clone()).await?;
    // Warm up: the bot must have joined and posted once.
    let mut writer = imap::connect(&imap_settings(env, &b.support)).await?;
    writer
        .append(
            "INBOX",
            None,
            None,
            mail("c@bench.example", &b.support.0, "warm@bench", "Warm-up"),
        )
        .await?;
    wait_seen(&b.seen, "Warm-up", Duration::from_secs(60)).await?;
    let mut sent = Vec::new();
    for i in 0..emails {
        let subject = format!("Latency {i:04}");
        let raw = mail(
            &format!("c{i}@bench.example"),
            &b.support.0,
            &format!("lat{i}@bench"),
            &subject,
        );
        writer.append("INBOX", None, None, raw).await?;
        sent.push((subject, Instant::now()));
        tokio::time::sleep(pace).await;
    }
    let mut out = Vec::new();
    for (subject, at) in &sent {
        let seen_at = wait_seen(&b.seen, subject, Duration::from_secs(60)).await?;
        out.push(seen_at.duration_since(*at).as_secs_f64() * 1000.0);
    }
    imap::logout(writer).await;
    stop(app, cancel, handles).await;
    b.finish();
    Ok(out)
}

/// When a root message with `subject` first shows in the fake Slack's
/// channel; re-checked on every change there.
async fn seen_in(
    slack: fake_slack::FakeSlack,
    channel: String,
    subject: String,
) -> anyhow::Result<Instant> {
    slack
        .wait_until(&subject, Duration::from_secs(60), |s| {
            s.messages(&channel)
                .iter()
                .any(|m| m.thread_ts.is_none() && m.text.contains(&subject))
        })
        .await?;
    Ok(Instant::now())
}

/// APPEND → the ticket's root message in the fake Slack's channel, over
/// Socket Mode, mails at a steady pace under Slack's one post a second.
async fn slack_latency(env: &Env, emails: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    let slack = fake_slack::FakeSlack::start(fake_slack::FakeSlackOptions::default()).await;
    let channel = slack.add_channel("support", &[slack.bot_user_id()]);
    let support = mail_user(env, "support")?;
    let dir = tempfile_dir()?;
    let text = format!(
        "[database]\nurl = \"sqlite://{db}\"\n[[mailbox]]\nname = \"support\"\naddress = \"{addr}\"\ndisplay_name = \"Bench\"\ninitial_sync = \"all\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.chat]\nslack_channel = \"{channel}\"\n[slack]\nbot_token_env = \"BOT\"\napp_token_env = \"APP\"\napi_url = \"{api}\"\n",
        db = dir.join("bench.db").display(),
        addr = support.0,
        imap = env.imap_port,
        smtp = env.smtp_port,
        pw = support.1,
        api = slack.api_url(),
    );
    let (bot, app) = (slack.bot_token().to_owned(), slack.app_token().to_owned());
    let settings = Settings::parse(&text, &move |k| match k {
        "BOT" => Some(bot.clone()),
        "APP" => Some(app.clone()),
        _ => None,
    })
    .map_err(|p| anyhow!("{p:?}"))?;
    let (app, cancel, handles) = start(settings).await?;
    let mut writer = imap::connect(&imap_settings(env, &support)).await?;
    writer
        .append(
            "INBOX",
            None,
            None,
            mail("c@bench.example", &support.0, "warm@bench", "Warm-up"),
        )
        .await?;
    seen_in(slack.clone(), channel.clone(), "Warm-up".into()).await?;
    let subjects: Vec<String> = (0..emails).map(|i| format!("Slack {i:04}")).collect();
    let watcher = {
        let (subjects, slack, channel) = (subjects.clone(), slack.clone(), channel.clone());
        tokio::spawn(async move {
            let mut at = Vec::new();
            for s in subjects {
                at.push(seen_in(slack.clone(), channel.clone(), s).await?);
            }
            anyhow::Ok(at)
        })
    };
    let mut sent = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let raw = mail(
            &format!("c{i}@bench.example"),
            &support.0,
            &format!("slack{i}@bench"),
            subject,
        );
        writer.append("INBOX", None, None, raw).await?;
        sent.push(Instant::now());
        tokio::time::sleep(pace).await;
    }
    let seen = watcher.await??;
    imap::logout(writer).await;
    stop(app, cancel, handles).await;
    slack.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(sent
        .iter()
        .zip(seen)
        .map(|(s, at)| at.duration_since(*s).as_secs_f64() * 1000.0)
        .collect())
}

/// `!reply` accepted (the reply queued in the outbox) → SMTP accepted and
/// the copy APPENDed to Sent, for replies sent at a steady pace from the
/// tickets' Matrix threads (undo window 0). The times come from the outbox's
/// own rows; the customer's inbox and the Sent folder are then counted to
/// check every reply left once.
async fn reply_latency(env: &Env, replies: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    use matrix_sdk::ruma::events::relation::Thread;
    use matrix_sdk::ruma::events::room::message::Relation;
    let b = bridge(env).await?;
    let customer = mail_user(env, "customer")?;
    let roots: Arc<Mutex<Vec<(String, matrix_sdk::ruma::OwnedEventId)>>> = Arc::default();
    let r = roots.clone();
    b.alice
        .add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let r = r.clone();
            async move {
                let body = ev.content.body();
                if body.starts_with("📨")
                    && let Ok(mut v) = r.lock()
                {
                    v.push((body.to_owned(), ev.event_id.clone()));
                }
            }
        });
    let (app, cancel, handles) = start(b.settings.clone()).await?;
    let mut writer = imap::connect(&imap_settings(env, &b.support)).await?;
    for i in 0..replies {
        let raw = mail(
            &customer.0,
            &b.support.0,
            &format!("rq{i}@bench"),
            &format!("Question {i:04}"),
        );
        writer.append("INBOX", None, None, raw).await?;
    }
    imap::logout(writer).await;
    let deadline = Instant::now() + Duration::from_secs(60 + replies as u64);
    let targets = loop {
        let found: Vec<_> = roots
            .lock()
            .map(|v| {
                (0..replies)
                    .filter_map(|i| {
                        let subject = format!("Question {i:04}");
                        v.iter()
                            .find(|(t, _)| t.contains(&subject))
                            .map(|(_, id)| id.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.len() == replies {
            break found;
        }
        if Instant::now() > deadline {
            bail!(
                "replies: {} of {replies} tickets reached the room",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let room_id: matrix_sdk::ruma::OwnedRoomId = b.settings.mailboxes[0]
        .chat
        .matrix_room
        .as_deref()
        .ok_or_else(|| anyhow!("no room"))?
        .parse()?;
    let room = b
        .alice
        .get_room(&room_id)
        .ok_or_else(|| anyhow!("alice is not in the room"))?;
    for (i, root) in targets.iter().enumerate() {
        let mut content =
            RoomMessageEventContent::text_plain(format!("!reply Hello,\n\nanswer number {i}."));
        content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
        room.send(content).await?;
        tokio::time::sleep(pace).await;
    }
    // Every reply sent and filed: the outbox's rows say when.
    let db = b.dir.join("bench.db");
    let rows = loop {
        let rows = outbox_rows(&db).await?;
        let filed = rows
            .iter()
            .filter(|(spec, state, ..)| matches!(spec, JobSpec::FileSent { .. }) && state == "done")
            .count();
        if filed >= replies {
            break rows;
        }
        if Instant::now() > deadline {
            bail!("replies: {filed} of {replies} filed in Sent after the deadline");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop(app, cancel, handles).await;
    let mut out = Vec::new();
    for (spec, _, created, _) in &rows {
        let JobSpec::SendReply { email_id } = spec else {
            continue;
        };
        let filed = rows.iter().find_map(|(s, state, _, updated)| {
            (matches!(s, JobSpec::FileSent { email_id: e } if e == email_id) && state == "done")
                .then_some(*updated)
        });
        let filed = filed.ok_or_else(|| anyhow!("reply {email_id} was never filed in Sent"))?;
        out.push((filed - created) as f64);
    }
    // From the outside: the customer got each reply once, and Sent holds each.
    let mut inbox = imap::connect(&imap_settings(env, &customer)).await?;
    let got = inbox.select("INBOX").await?.exists as usize;
    imap::logout(inbox).await;
    let mut sent = imap::connect(&imap_settings(env, &b.support)).await?;
    let filed = sent.select("Sent").await?.exists as usize;
    imap::logout(sent).await;
    b.finish();
    if got != replies || filed != replies || out.len() != replies {
        bail!(
            "replies: {replies} asked, {} queued, {got} at the customer, {filed} in Sent",
            out.len()
        );
    }
    Ok(out)
}

async fn outbox_rows(db: &std::path::Path) -> anyhow::Result<Vec<(JobSpec, String, i64, i64)>> {
    use sqlx::{Connection, Row};
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await?;
    let rows = sqlx::query(
        "SELECT payload, state, created_at, updated_at FROM outbox WHERE kind IN ('send_reply', 'file_sent')",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok((
                serde_json::from_str(&payload)?,
                r.try_get("state")?,
                r.try_get("created_at")?,
                r.try_get("updated_at")?,
            ))
        })
        .collect()
}

/// `mailroom run` as a process: time to IMAP IDLE and Matrix connected, idle
/// memory, and the peak while a mail with a 25 MB attachment goes through.
/// Returns startup ms, idle RSS and the anonymous part of it (memory
/// mailroom allocated, as opposed to its executable's pages mapped from
/// disk), and the peak RSS around the large mail, all MiB.
async fn process_figures(env: &Env) -> anyhow::Result<(f64, f64, f64, f64)> {
    let b = bridge(env).await?;
    let d = b.spawn()?;
    let imap = d
        .wait_log("IMAP connected", Duration::from_secs(60))
        .await?;
    let matrix = d
        .wait_log("matrix connected", Duration::from_secs(60))
        .await?;
    let startup = imap.max(matrix).duration_since(d.started).as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = d.rss_mb();
    let idle_anon = d.rss_kb("RssAnon:") / 1024.0;
    if std::env::var_os("MAILROOM_BENCH_LOG").is_some() {
        eprintln!(
            "idle: RssAnon {:.1} MiB, RssFile {:.1} MiB, threads {}",
            d.rss_kb("RssAnon:") / 1024.0,
            d.rss_kb("RssFile:") / 1024.0,
            d.rss_kb("Threads:")
        );
        for line in d.rss_by_mapping() {
            eprintln!("  {line}");
        }
    }
    let big = "A".repeat(25 * 1024 * 1024 / 76 * 76);
    let mut body = String::with_capacity(big.len() + big.len() / 76 * 2 + 1024);
    for chunk in big.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        body.push_str("\r\n");
    }
    let raw = format!(
        "From: Big <big@bench.example>\r\nTo: {to}\r\nSubject: Big attachment\r\nMessage-ID: <big@bench>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b--\r\n",
        to = b.support.0
    );
    let mut writer = imap::connect(&imap_settings(env, &b.support)).await?;
    // With MAILROOM_BENCH_LOG set, the daemon's memory is sampled every
    // 10 ms and printed as lines beside its log, to see which step peaks.
    let sampling = std::env::var_os("MAILROOM_BENCH_LOG").is_some().then(|| {
        let (pid, log, started) = (d.child.id(), d.log.clone(), d.started);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let handle = std::thread::spawn(move || {
            let mut last: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|st| {
                        st.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0.0)
                    / 1024.0;
                if (rss - last).abs() >= 4.0 {
                    last = rss;
                    if let Ok(mut v) = log.lock() {
                        v.push((format!("[rss {rss:.0} MiB]"), Instant::now()));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = started;
        });
        (done, handle)
    });
    writer.append("INBOX", None, None, raw.into_bytes()).await?;
    imap::logout(writer).await;
    wait_seen(&b.seen, "Big attachment", Duration::from_secs(120)).await?;
    // Let the upload of the attachment into the thread finish too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = d.peak_mb();
    if let Some((done, handle)) = sampling {
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = handle.join();
    }
    d.stop();
    b.finish();
    Ok((startup, idle, idle_anon, peak))
}

/// A backlog already in the mailbox when mailroom starts, turned into
/// threads; and, for comparison, the same number of plain posts by a client,
/// one at a time (as mailroom must, to keep a room's order).
///
/// The plain posts are made the way mailroom's are: by a second user, into a
/// room the observer has joined and is syncing (Synapse does push-rule work
/// and notification counting for every other member, which a room of one
/// would skip). Half are made before mailroom's phase and half after, into
/// the same room, so that Synapse slowing down as its database grows over the
/// stage weighs on both sides alike.
async fn backlog(env: &Env, emails: usize) -> anyhow::Result<Backlog> {
    let b = bridge(env).await?;
    let mut writer = imap::connect(&imap_settings(env, &b.support)).await?;
    for i in 0..emails {
        let raw = mail(
            &format!("c{i}@bench.example"),
            &b.support.0,
            &format!("bl{i}@bench"),
            &format!("Backlog {i:05}"),
        );
        writer.append("INBOX", None, None, raw).await?;
    }
    imap::logout(writer).await;

    let poster_user = matrix_user(env, "poster")?;
    let poster = login(env, &poster_user).await?;
    let mut req = CreateRoomRequest::new();
    req.name = Some("raw".into());
    req.invite = vec![poster_user.0.parse()?];
    let raw_room = b.alice.create_room(req).await?;
    let raw_room = poster.join_room_by_id(raw_room.room_id()).await?;
    let first_half = emails / 2;
    // Seconds the plain client takes for these posts.
    let plain = async |range: std::ops::Range<usize>| -> anyhow::Result<f64> {
        let start = Instant::now();
        for i in range {
            raw_room
                .send(RoomMessageEventContent::text_plain(format!("raw {i}")))
                .await?;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let before = plain(0..first_half).await?;

    let d = b.spawn()?;
    let start_app = d.started;
    let deadline = Instant::now() + Duration::from_secs(60 + emails as u64);
    while b.roots_seen("Backlog ") < emails {
        if Instant::now() > deadline {
            bail!(
                "backlog: {} of {emails} threads after the deadline",
                b.roots_seen("Backlog ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = emails as f64 / start_app.elapsed().as_secs_f64();
    if std::env::var_os("MAILROOM_BENCH_LOG").is_some()
        && let Ok(seen) = b.seen.lock()
    {
        for (t, at) in seen.iter().filter(|(t, _)| t.contains("Backlog ")) {
            let ms = at.saturating_duration_since(start_app).as_millis();
            eprintln!("seen {ms:>8} {}", t.lines().next().unwrap_or(""));
        }
    }
    let peak = d.peak_mb();
    d.stop();

    let after = plain(first_half..emails).await?;
    b.finish();
    Ok(Backlog {
        rate,
        raw_rate: emails as f64 / (before + after),
        raw_before: first_half as f64 / before,
        raw_after: (emails - first_half) as f64 / after,
        peak,
    })
}

/// The backlog stage's figures.
struct Backlog {
    /// mailroom: emails turned into threads per second, from process start.
    rate: f64,
    /// The plain client: all its posts over all its time.
    raw_rate: f64,
    /// The plain client's first half, before mailroom's phase.
    raw_before: f64,
    /// Its second half, after.
    raw_after: f64,
    /// mailroom's resident memory peak (MiB).
    peak: f64,
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mailroom-bench-{}", hex(4)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn wait_seen(
    seen: &Mutex<Vec<(String, Instant)>>,
    needle: &str,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let hit = seen.lock().ok().and_then(|v| {
            v.iter()
                .find(|(t, _)| t.starts_with("📨") && t.contains(needle))
                .map(|(_, at)| *at)
        });
        if let Some(at) = hit {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("{needle:?} never reached the room");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

type Handles = (
    tokio::task::JoinHandle<()>,
    Vec<tokio::task::JoinHandle<()>>,
);

async fn start(settings: Settings) -> anyhow::Result<(Arc<App>, CancellationToken, Handles)> {
    let store = Arc::new(SqlStore::connect(&settings.database.url, 4).await?);
    store.migrate().await?;
    let cancel = CancellationToken::new();
    let chats = connect_chats(&settings, &cancel)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let app = Arc::new(App::new(
        settings,
        store as Arc<dyn TicketStore>,
        chats.platforms,
    ));
    let run = tokio::spawn(app.clone().run(cancel.clone(), Some(chats.events)));
    Ok((app, cancel, (run, chats.tasks)))
}

async fn stop(_app: Arc<App>, cancel: CancellationToken, handles: Handles) {
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), handles.0).await;
    for h in handles.1 {
        let _ = tokio::time::timeout(Duration::from_secs(20), h).await;
    }
}

/// mailroom's own cost per email: parse + thread + store (+ the rendering a
/// chat post does), chat posting left out.
async fn ingest(url: &str, emails: usize) -> anyhow::Result<f64> {
    let text = format!(
        "[database]\nurl = \"{url}\"\n[[mailbox]]\nname = \"support\"\naddress = \"support@bench.example\"\ndisplay_name = \"Bench\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n"
    );
    let settings = Settings::parse(&text, &|_| None).map_err(|p| anyhow!("{p:?}"))?;
    let url = DatabaseUrl::parse(url).map_err(|e| anyhow!(e))?;
    let store = Arc::new(SqlStore::connect(&url, 4).await?);
    store.migrate().await?;
    let app = Arc::new(App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        Vec::new(),
    ));
    let sink = MailboxIngest::new(
        app.clone(),
        mailroom::domain::ids::MailboxName::parse("support")?,
    );
    let raws: Vec<Vec<u8>> = (0..emails)
        .map(|i| {
            mail(
                &format!("c{}@bench.example", i % 500),
                "support@bench.example",
                &format!("in{i}@bench"),
                &format!("Order {}", i % 700),
            )
        })
        .collect();
    let start = Instant::now();
    // In batches, one transaction each, as ingest stores what one IMAP FETCH
    // brought.
    let most = mailroom::mail::ingest::BATCH_MESSAGES;
    let mut batch = Vec::with_capacity(most);
    let last = raws.len();
    for (i, raw) in raws.into_iter().enumerate() {
        let view_cost = mailroom::mail::parse::parse_email(&raw).view();
        std::hint::black_box(view_cost);
        let cp = Checkpoint {
            uid_validity: 1,
            last_uid: i as u32 + 1,
        };
        batch.push((raw, Some(cp)));
        if batch.len() == most || i + 1 == last {
            sink.ingest_many(std::mem::take(&mut batch)).await?;
        }
    }
    let rate = emails as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

/// Runs one stage, saying so on stderr, and stops it if it outlives every
/// reasonable duration (the full run's longest stage takes about 10 minutes,
/// a smoke run's a few seconds):
/// the bench always ends by itself.
async fn bounded<T>(
    limit: Duration,
    name: &str,
    stage: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    eprintln!("mailroom-bench: {name}…");
    let started = Instant::now();
    let out = tokio::time::timeout(limit, stage)
        .await
        .map_err(|_| anyhow!("{name}: still running after {} s; stopped", limit.as_secs()))?
        .context(name.to_owned())?;
    eprintln!(
        "mailroom-bench: {name} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

const STAGES: &[&str] = &[
    "floors", "latency", "slack", "backlog", "reply", "process", "ingest",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mailroom::mail::tls::install_crypto_provider();
    let mut only: Option<Vec<String>> = None;
    let (mut smoke, mut quick) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--quick" => quick = true,
            "--only" => {
                let list = args.next().unwrap_or_default();
                let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = names.iter().find(|n| !STAGES.contains(&n.as_str())) {
                    bail!("--only: no stage {bad:?}; stages: {}", STAGES.join(", "));
                }
                only = Some(names);
            }
            _ => bail!(
                "mailroom-bench: unknown argument {a:?} (expected --quick, --smoke or --only STAGE,…)"
            ),
        }
    }
    let run = |stage: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == stage));
    let env = env()?;
    // --smoke: every stage with a handful of emails, to check the bench
    // itself works (scripts/test runs it); its figures mean little.
    let (floor_n, lat_n, ingest_n, backlog_n) = if smoke {
        (3, 5, 50, 20)
    } else if quick {
        (10, 30, 1_000, 1_000)
    } else {
        (30, 200, 5_000, 10_000)
    };
    let limit = Duration::from_secs(if smoke { 180 } else { 1_800 });
    let mut metrics: Vec<(&str, f64, &str)> = Vec::new();

    let mut floors = None;
    if run("floors") {
        let mut f = bounded(limit, "imap floor", imap_floor(&env, floor_n)).await?;
        let imap_p50 = percentile(&mut f, 50.0);
        metrics.push(("imap_floor_p50_ms", imap_p50, "ms"));
        let mut c = bounded(limit, "chat floor", chat_floor(&env, floor_n)).await?;
        let chat_p50 = percentile(&mut c, 50.0);
        metrics.push(("chat_floor_p50_ms", chat_p50, "ms"));
        floors = Some(imap_p50 + chat_p50);
    }

    if run("latency") {
        let mut l = bounded(
            limit,
            "latency",
            latency(&env, lat_n, Duration::from_millis(250)),
        )
        .await?;
        let p50 = percentile(&mut l, 50.0);
        metrics.push(("latency_p50_ms", p50, "ms"));
        metrics.push(("latency_p99_ms", percentile(&mut l, 99.0), "ms"));
        if let Some(floors) = floors {
            metrics.push(("latency_overhead_p50_ms", p50 - floors, "ms"));
        }
    }

    if run("slack") {
        // Slack allows about one post a second per channel: a steady stream
        // just under it.
        let mut sl = bounded(
            limit,
            "slack latency",
            slack_latency(&env, lat_n, Duration::from_millis(1_100)),
        )
        .await?;
        metrics.push(("slack_latency_p50_ms", percentile(&mut sl, 50.0), "ms"));
        metrics.push(("slack_latency_p99_ms", percentile(&mut sl, 99.0), "ms"));
    }

    if run("backlog") {
        let bl = bounded(limit, "backlog", backlog(&env, backlog_n)).await?;
        metrics.push(("backlog_emails_per_s", bl.rate, "emails/s"));
        metrics.push(("synapse_raw_posts_per_s", bl.raw_rate, "posts/s"));
        metrics.push(("synapse_raw_before_posts_per_s", bl.raw_before, "posts/s"));
        metrics.push(("synapse_raw_after_posts_per_s", bl.raw_after, "posts/s"));
        metrics.push(("backlog_vs_raw", bl.rate / bl.raw_rate, "ratio"));
        metrics.push(("rss_backlog_peak_mb", bl.peak, "MiB"));
    }

    if run("reply") {
        let mut r = bounded(
            limit,
            "reply latency",
            reply_latency(&env, lat_n, Duration::from_millis(300)),
        )
        .await?;
        metrics.push(("reply_p50_ms", percentile(&mut r, 50.0), "ms"));
        metrics.push(("reply_p99_ms", percentile(&mut r, 99.0), "ms"));
    }

    if run("process") {
        let (startup, idle, idle_anon, big_peak) =
            bounded(limit, "startup and memory", process_figures(&env)).await?;
        metrics.push(("startup_ms", startup, "ms"));
        metrics.push(("rss_idle_mb", idle, "MiB"));
        metrics.push(("rss_idle_anon_mb", idle_anon, "MiB"));
        metrics.push(("rss_25mb_attachment_peak_mb", big_peak, "MiB"));
    }

    if run("ingest") {
        let dir = tempfile_dir()?;
        let sqlite = format!("sqlite://{}", dir.join("ingest.db").display());
        metrics.push((
            "ingest_emails_per_s_sqlite",
            bounded(limit, "ingest sqlite", ingest(&sqlite, ingest_n)).await?,
            "emails/s",
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let pg_rate = bounded(limit, "ingest postgres", ingest_postgres(ingest_n)).await?;
        metrics.push(("ingest_emails_per_s_postgres", pg_rate, "emails/s"));
    }

    if let Some((name, ..)) = metrics.iter().find(|(_, v, _)| !v.is_finite()) {
        bail!("{name}: no figure (is /proc mounted?)");
    }
    // A ratio with one decimal would print 0.75 as 0.8, the target itself.
    let digits = |unit: &str| if unit == "ratio" { 2 } else { 1 };
    println!("{:<30} {:>12}  unit", "metric", "value");
    for (name, value, unit) in &metrics {
        println!("{name:<30} {value:>12.d$}  {unit}", d = digits(unit));
    }
    for (name, value, unit) in &metrics {
        println!("METRIC {name} {value:.d$} {unit}", d = digits(unit));
    }
    Ok(())
}

/// The ingest figure on a fresh PostgreSQL database (MAILROOM_TEST_PG_URL's
/// server, as the tests use), dropped afterwards.
async fn ingest_postgres(emails: usize) -> anyhow::Result<f64> {
    use sqlx::Connection;
    use sqlx::Executor;
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
    let rate = ingest(&format!("{base}/{pg_db}"), emails).await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"
        )))
        .await;
    rate
}
