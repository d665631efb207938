//! Operations against the real stack: `/metrics` and `/healthz` while mail
//! flows into a Matrix room, the mailbox watchdog when IMAP goes away and
//! comes back, and the real `mailroom` binary: SIGTERM, JSON logs, secrets
//! kept out of even trace logs, owner-only files.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailroom::config::Settings;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::common::{
    MailboxToml, Stack, Writer, fetch_all, matrix_toml, random_hex, run_ok, start_connected,
    support_mailbox, wait_for,
};
use crate::cuttable::Cuttable;
use crate::matrix::{Synapse, World, body, sender, wait_event};

const WAIT: Duration = Duration::from_secs(60);

/// An HTTP client for the ops endpoints (never through a proxy from the
/// environment: they are on loopback).
pub(crate) struct Ops {
    base: String,
    http: reqwest::Client,
}

impl Ops {
    pub(crate) fn new(addr: std::net::SocketAddr) -> Ops {
        Ops {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    pub(crate) async fn healthz(&self) -> Option<(u16, Value)> {
        let (status, text) = self.get("/healthz").await?;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {text}"));
        Some((status, json))
    }

    /// The value of the sample `series` (`name{labels}` exactly as exposed).
    pub(crate) async fn metric(&self, series: &str) -> Option<f64> {
        let (status, text) = self.get("/metrics").await?;
        assert_eq!(status, 200, "{text}");
        sample(&text, series)
    }

    /// Waits until `series` reaches at least `min`.
    async fn wait_metric(&self, series: &str, min: f64) -> f64 {
        wait_for(&format!("{series} >= {min}"), WAIT, || async {
            self.metric(series).await.filter(|v| *v >= min)
        })
        .await
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// mailroom in-process with its chats and the ops endpoints on a free port.
struct Running {
    ops: Ops,
    app: crate::common::Running,
}

impl Running {
    async fn start(w: &World, settings: Settings) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ops = Ops::new(listener.local_addr().expect("address"));
        let app = start_connected(settings, &w.db, Some(listener)).await;
        Running { ops, app }
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

#[tokio::test]
async fn metrics_count_an_email_from_imap_to_its_matrix_thread() {
    let w = World::new().await;
    let run = Running::start(&w, w.parse(&w.settings_text(0, ""))).await;
    let (status, health) = run.ops.healthz().await.expect("/healthz answers");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        run.ops
            .metric("mailroom_emails_ingested_total{mailbox=\"support\"}")
            .await,
        None,
        "nothing counted before any mail"
    );

    w.email("ops1@example.net", "Counting works", "Hello metrics.")
        .await;
    let ops = &run.ops;
    assert_eq!(
        ops.wait_metric("mailroom_emails_ingested_total{mailbox=\"support\"}", 1.0)
            .await,
        1.0
    );
    assert_eq!(
        ops.wait_metric("mailroom_threads_posted_total{platform=\"matrix\"}", 1.0)
            .await,
        1.0
    );
    ops.wait_metric(
        "mailroom_ingest_latency_seconds_count{mailbox=\"support\"}",
        1.0,
    )
    .await;
    ops.wait_metric(
        "mailroom_post_latency_seconds_count{platform=\"matrix\"}",
        1.0,
    )
    .await;
    let post_sum = ops
        .metric("mailroom_post_latency_seconds_sum{platform=\"matrix\"}")
        .await
        .expect("a latency sum");
    assert!(
        post_sum > 0.0 && post_sum < WAIT.as_secs_f64(),
        "a plausible stored→posted latency: {post_sum}"
    );
    let (_, text) = ops.get("/metrics").await.expect("/metrics");
    for series in [
        "mailroom_outbox_jobs{state=\"pending\"}",
        "mailroom_outbox_jobs{state=\"failed\"}",
        "mailroom_mailbox_check_age_seconds{mailbox=\"support\"}",
    ] {
        assert!(sample(&text, series).is_some(), "{series} missing:\n{text}");
    }
    let (status, health) = ops.healthz().await.expect("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mailboxes"][0]["name"], "support");
    assert_eq!(health["mailboxes"][0]["state"], "ok");
    assert!(health["mailboxes"][0]["last_check_age_secs"].is_number());
    run.stop().await;
}

fn is_stale_notice(ev: &Value, bot: &str) -> bool {
    sender(ev) == bot && body(ev).contains("cannot check the mailbox support")
}

fn is_recovery_notice(ev: &Value, bot: &str) -> bool {
    sender(ev) == bot
        && body(ev).contains("can check the mailbox support (")
        && body(ev).contains("again")
}

#[tokio::test]
async fn an_unreachable_mailbox_turns_healthz_503_and_the_room_is_told_once_until_it_recovers() {
    let w = World::new().await;
    let proxy = Cuttable::start(w.stack.imap_port).await;
    let text = w.settings_text(0, "[ops]\nstale_after_secs = 2\n").replace(
        &format!("port = {}\n", w.stack.imap_port),
        &format!("port = {}\n", proxy.port),
    );
    let run = Running::start(&w, w.parse(&text)).await;
    let ops = &run.ops;
    let bot = w.bot.0.as_str();

    // Healthy, and fresh at every look for longer than stale_after with no
    // mail coming: the IDLE loop re-checks the quiet mailbox on its own.
    w.email("wd1@example.net", "Before the outage", "Hello.")
        .await;
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        let (status, health) = ops.healthz().await.expect("/healthz");
        assert_eq!(
            status, 200,
            "a quiet but working mailbox stays fresh: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    proxy.cut();
    let health = wait_for("/healthz to say 503", WAIT, || async {
        ops.healthz()
            .await
            .filter(|(s, _)| *s == 503)
            .map(|(_, h)| h)
    })
    .await;
    assert_eq!(health["status"], "stale");
    assert_eq!(health["stale"], serde_json::json!(["support"]));
    assert_eq!(health["mailboxes"][0]["state"], "stale");
    assert!(
        health["mailboxes"][0]["last_error"].is_string(),
        "the reason is shown: {health}"
    );
    let notice = wait_event(&w.alice, &w.room, "the stale notice", |e| {
        is_stale_notice(e, bot)
    })
    .await;
    assert!(
        body(&notice).contains(&w.support.address),
        "the notice names the address: {}",
        body(&notice)
    );
    ops.wait_metric("mailroom_imap_reconnects_total{mailbox=\"support\"}", 1.0)
        .await;

    // Mail arriving meanwhile is imported after the recovery.
    Writer::new(w.stack, &w.support, &w.customer.address)
        .writes("wd2@example.net", "During the outage", "Anyone?")
        .await;
    proxy.restore().await;
    wait_for("/healthz to say 200 again", WAIT, || async {
        ops.healthz().await.filter(|(s, _)| *s == 200)
    })
    .await;
    wait_event(&w.alice, &w.room, "the recovery notice", |e| {
        is_recovery_notice(e, bot)
    })
    .await;
    wait_event(&w.alice, &w.room, "the mail from the outage", |e| {
        sender(e) == bot && body(e).contains("During the outage")
    })
    .await;
    let events = w.alice.events(&w.room).await;
    let stale = events.iter().filter(|e| is_stale_notice(e, bot)).count();
    let recovered = events.iter().filter(|e| is_recovery_notice(e, bot)).count();
    assert_eq!(
        (stale, recovered),
        (1, 1),
        "one notice per change, however long the outage"
    );
    run.stop().await;
}

// The real binary.

fn mailroom() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.env_remove("MAILROOM_CONFIG")
        .env_remove("MAILROOM_LOG")
        .env_remove("MAILROOM_LOG_FORMAT");
    c
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A `mailroom run` child whose stderr is collected line by line.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailroom");
        let stderr = child.stderr.take().expect("stderr");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        // A thread, not a task: reading a pipe blocks.
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                l.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
    }

    /// Waits (bounded) for the exit; the exit code and every stderr line.
    async fn wait_exit(mut self, limit: Duration) -> (Option<i32>, Duration, Vec<String>) {
        let start = Instant::now();
        let status = wait_for("mailroom to exit", limit, || {
            let s = self.child.try_wait().expect("try_wait");
            async move { s }
        })
        .await;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        (status.code(), start.elapsed(), lines)
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn sigterm_while_idle_exits_0_within_seconds_and_every_json_log_line_parses() {
    let (stack, support) = support_mailbox();
    let db = crate::common::TestDb::sqlite();
    let listen = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[ops]\nlisten = \"{listen}\"\n",
            crate::common::mailbox_toml(stack, &support, &db, "").replace("  [mailbox.chat]\n", "")
        ),
    )
    .unwrap();
    let mut cmd = mailroom();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--log-format", "json", "run"])
        .current_dir(dir.path());
    let daemon = Daemon::spawn(cmd);
    let ops = Ops::new(listen);
    // Idle: connected, synced, sitting in IDLE.
    wait_for("the mailbox checked", WAIT, || async {
        ops.healthz()
            .await
            .filter(|(_, h)| h["mailboxes"][0]["state"] == "ok")
    })
    .await;
    // Checked comes after the first pass, just before IDLE is issued:
    // "IMAP watching" says IDLE was accepted, once per connection (INBOX
    // and the Sent watcher's).
    wait_for("IDLE accepted on INBOX and Sent", WAIT, || {
        let log = daemon.log();
        async move { (log.matches("\"IMAP watching\"").count() >= 2).then_some(()) }
    })
    .await;
    daemon.sigterm();
    let (code, took, lines) = daemon.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    assert!(lines.len() >= 3, "{lines:#?}");
    let mut messages = Vec::new();
    let mut watching = Vec::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_owned());
        if v["fields"]["message"] == "IMAP watching" {
            // Which mailbox and folder: what a reader of the log (the
            // bench's `many` stage) tells the connections apart by.
            watching.push((
                v["span"]["mailbox"].as_str().unwrap_or("").to_owned(),
                v["fields"]["folder"].as_str().unwrap_or("").to_owned(),
                v["fields"]["idle"].clone(),
            ));
        }
    }
    watching.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        watching,
        [
            ("support".to_owned(), "INBOX".to_owned(), Value::Bool(true)),
            ("support".to_owned(), "Sent".to_owned(), Value::Bool(true)),
        ],
        "{lines:#?}"
    );
    for expected in [
        "IMAP connected",
        "shutting down: finishing in-flight work",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected:?} not logged: {messages:#?}"
        );
    }
    assert!(
        ops.get("/healthz").await.is_none(),
        "the endpoints are gone after the stop"
    );
}

/// Base64 (standard alphabet, padded), for credentials as SASL PLAIN or
/// HTTP Basic would carry them.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_trace_and_state_files_are_owner_only() {
    use crate::fake_slack::{FakeSlack, FakeSlackOptions};
    crate::common::init_logs();
    let stack = Stack::get();
    let mail_secret = format!("mail-S3CRET-{}", random_hex(8));
    let support = stack.user_with_password("support", "example.com", &mail_secret);
    let customer = stack.user("customer", "example.net");
    let syn = Synapse::get();
    let matrix_secret = format!("matrix-S3CRET-{}", random_hex(8));
    let bot = syn.register_with_password("mailroom", &matrix_secret);
    let (alice, room) = syn.room_for(&bot.0).await;
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let channel = slack.support_channel();

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    let listen = free_addr();
    let chat =
        format!("  [mailbox.chat]\n  matrix_room = \"{room}\"\n  slack_channel = \"{channel}\"");
    let mailbox = MailboxToml {
        db_url: "sqlite://state/mailroom.db",
        address: &support.address,
        imap_port: stack.imap_port,
        imap_keys: "password_env = \"T_IMAP_PASSWORD\"",
        smtp_port: stack.smtp_port,
        smtp_keys: "password_env = \"T_SMTP_PASSWORD\"",
        tail: &chat,
    }
    .render();
    let matrix = matrix_toml(
        &syn.url,
        &bot.0,
        "password_env = \"T_MATRIX_PASSWORD\"",
        std::path::Path::new("state/matrix"),
    );
    let slack_toml = format!(
        "[slack]\nmode = \"socket\"\nbot_token_env = \"T_SLACK_BOT\"\n\
         app_token_env = \"T_SLACK_APP\"\napi_url = \"{}\"\n\
         posts_per_second = 50\npost_burst = 50\n",
        slack.api_url()
    );
    std::fs::write(
        &cfg,
        format!(
            "{mailbox}\n{matrix}\n{slack_toml}\n[commands]\nundo_secs = 0\n\n[ops]\nlisten = \"{listen}\"\n"
        ),
    )
    .unwrap();
    let secrets: Vec<(&str, String)> = vec![
        ("mail password", mail_secret.clone()),
        ("matrix password", matrix_secret.clone()),
        ("slack bot token", slack.bot_token().to_owned()),
        ("slack app token", slack.app_token().to_owned()),
    ];
    let mut cmd = mailroom();
    cmd.arg("--config")
        .arg(&cfg)
        .arg("run")
        .current_dir(dir.path())
        .env("MAILROOM_LOG", "trace")
        .env("T_IMAP_PASSWORD", &mail_secret)
        .env("T_SMTP_PASSWORD", &mail_secret)
        .env("T_MATRIX_PASSWORD", &matrix_secret)
        .env("T_SLACK_BOT", slack.bot_token())
        .env("T_SLACK_APP", slack.app_token());
    let daemon = Daemon::spawn(cmd);
    let ops = Ops::new(listen);
    wait_for("mailroom up", WAIT, || async {
        ops.healthz()
            .await
            .filter(|(_, h)| h["mailboxes"][0]["state"] == "ok")
    })
    .await;

    // Activity: an email becomes a thread in both chats, a reply goes out
    // over SMTP with the password.
    Writer::new(stack, &support, &customer.address)
        .writes("sec1@example.net", "Secrets stay secret", "Hello.")
        .await;
    wait_event(&alice, &room, "the Matrix thread", |e| {
        sender(e) == bot.0 && body(e).contains("Secrets stay secret")
    })
    .await;
    wait_for("the Slack thread", WAIT, || {
        let posted = slack.messages(&channel).iter().any(|m| m.bot);
        async move { posted.then_some(()) }
    })
    .await;
    let _reply = run_ok(
        mailroom()
            .arg("--config")
            .arg(&cfg)
            .args([
                "tickets",
                "reply",
                "1",
                "--as",
                "cli:alice",
                "--message",
                "Noted.",
            ])
            .current_dir(dir.path()),
        "mailroom tickets reply",
    );
    wait_for("the reply at the customer", WAIT, || async {
        (!fetch_all(stack, &customer, "INBOX").await.is_empty()).then_some(())
    })
    .await;

    // Owner-only, checked while running (SQLite removes -wal and -shm when
    // the last connection closes).
    let state = dir.path().join("state");
    let db = state.join("mailroom.db");
    assert_eq!(mode(&state), 0o700, "state dir");
    assert_eq!(mode(&db), 0o600, "database");
    for side in ["mailroom.db-wal", "mailroom.db-shm"] {
        let p = state.join(side);
        assert!(p.exists(), "{side} exists while running (WAL mode)");
        assert_eq!(mode(&p), 0o600, "{side}");
    }
    let matrix_state = state.join("matrix");
    assert_eq!(mode(&matrix_state), 0o700, "matrix.state_dir");
    let session = mailroom::chat::matrix::session_file(&matrix_state);
    assert_eq!(mode(&session), 0o600, "the Matrix session file");
    let session: Value =
        serde_json::from_slice(&std::fs::read(&session).unwrap()).expect("session JSON");
    let access_token = session
        .get("access_token")
        .and_then(Value::as_str)
        .expect("an access token in the session")
        .to_owned();

    daemon.sigterm();
    let log_so_far = daemon.log();
    let (code, _, lines) = daemon.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let log = lines.join("\n");
    assert!(
        log.len() > 10_000 && log.contains("TRACE"),
        "a trace-level capture ({} bytes; {} before the stop)",
        log.len(),
        log_so_far.len()
    );
    let mut secrets = secrets;
    secrets.push(("matrix access token", access_token));
    let plain = base64(format!("\0{}\0{}", support.address, mail_secret).as_bytes());
    secrets.push(("SMTP AUTH PLAIN", plain));
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        if let Some(at) = log.find(secret.as_str()) {
            let from = log[..at].rfind('\n').map_or(0, |n| n + 1);
            let to = log[at..].find('\n').map_or(log.len(), |n| at + n);
            leaks.push(format!("the {what}: {}", &log[from..to]));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets reached the log:\n{}",
        leaks.join("\n")
    );
}
