//! What every scenario needs: sizes, the databases, the real `mailroom`
//! binary as a child process, a Matrix room read over the client-server API,
//! bulk APPEND, counts read from the store, and the figures line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailroom::mail::imap;
use serde_json::{Value, json};

use crate::common::{
    Stack, TestDb, User, customer_mail, matrix_toml, outbox_toml, random_hex, synapse_register,
};

/// Scenarios stop servers, cut connections and load the machine: one at a
/// time. A tokio mutex because the guard is held across awaits; it works
/// across the per-test runtimes.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sizes from the environment; the defaults are the fast subset that
/// `cargo test --all-targets` runs.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub emails: usize,
    pub kills: usize,
    pub outage: Duration,
}

pub fn sizes() -> Sizes {
    let get = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|e| panic!("{k}={v}: {e}")))
            .unwrap_or(d)
    };
    Sizes {
        emails: get("MAILROOM_CHAOS_EMAILS", 60) as usize,
        kills: get("MAILROOM_CHAOS_KILLS", 3) as usize,
        outage: Duration::from_secs(get("MAILROOM_CHAOS_OUTAGE_SECS", 5)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub async fn fresh(self) -> TestDb {
        match self {
            Db::Sqlite => TestDb::sqlite(),
            Db::Postgres => TestDb::postgres().await,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

/// One scenario's result, printed as a `CHAOS …` line that `scripts/chaos`
/// collects into its table.
#[derive(Debug, Default)]
pub struct Figures {
    pub runs: usize,
    pub emails: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub recovery_ms: u128,
    /// Further `key=value` pairs.
    pub extra: Vec<(String, String)>,
}

impl Figures {
    /// A scenario run once over `emails` mails, its roots tallied in `t`.
    pub fn once(
        emails: usize,
        t: &Tally,
        recovery_ms: u128,
        extra: Vec<(String, String)>,
    ) -> Figures {
        Figures {
            runs: 1,
            emails,
            lost: t.lost,
            duplicated: t.duplicated,
            recovery_ms,
            extra,
        }
    }

    pub fn print(&self, scenario: &str, db: Db) {
        let mut line = format!(
            "CHAOS {scenario} {} runs={} emails={} lost={} duplicated={} recovery_ms={}",
            db.name(),
            self.runs,
            self.emails,
            self.lost,
            self.duplicated,
            self.recovery_ms
        );
        for (k, v) in &self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        println!("{line}");
    }
}

pub use crate::common::poll_every as poll;

// ---- mail ----

/// The subject of email `i` of a run tagged `tag`.
pub fn subject(tag: &str, i: usize) -> String {
    format!("Chaos {tag} #{i:05}")
}

/// Email `i` of a run; `pad` bytes of filler text make it as large as a
/// scenario needs.
pub fn chaos_mail(customer: &User, support: &User, tag: &str, i: usize, pad: usize) -> Vec<u8> {
    let filler = "All work and no play makes Jack a dull boy.\r\n".repeat(pad / 44);
    customer_mail(
        &customer.address,
        &support.address,
        &format!("{tag}-{i}@example.net"),
        &subject(tag, i),
        &format!("Message {i} of a chaos run.\r\n{filler}"),
        None,
    )
}

/// APPENDs `range` of a run's emails to `folder` over one IMAP session, in
/// order (so UID order is arrival order).
pub async fn append_many(
    stack: &Stack,
    support: &User,
    customer: &User,
    tag: &str,
    folder: &str,
    range: std::ops::Range<usize>,
    pad: usize,
) {
    let settings = stack.imap_settings(support, folder);
    let mut s = imap::connect_password(&settings).await.expect("IMAP login");
    for i in range {
        s.append(
            folder,
            None,
            None,
            &chaos_mail(customer, support, tag, i, pad),
        )
        .await
        .expect("APPEND");
    }
    imap::logout(s).await;
}

/// Which of emails `0..n` of `tag` the root messages (in chat order) show:
/// lost, duplicated, whether in arrival order.
#[derive(Debug)]
pub struct Tally {
    pub roots: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub in_order: bool,
}

impl Tally {
    /// Each of the `n` mails has exactly one root, in arrival order; `what`
    /// says so in the scenario's words, `log` is shown when it is not so.
    pub fn assert_each_once(&self, n: usize, what: &str, log: &Path) {
        assert_eq!(
            (self.lost, self.duplicated, self.roots),
            (0, 0, n),
            "{what}; log:\n{}",
            tail(log, 40)
        );
        assert!(self.in_order, "roots in arrival order");
    }
}

pub fn tally<'a>(bodies: impl IntoIterator<Item = &'a str>, tag: &str, n: usize) -> Tally {
    let marker = format!("Chaos {tag} #");
    let mut seen = vec![0usize; n];
    let mut order = Vec::new();
    let mut roots = 0;
    for b in bodies {
        let Some(rest) = b.split(&marker).nth(1) else {
            continue;
        };
        let Some(i) = rest.get(..5).and_then(|d| d.parse::<usize>().ok()) else {
            continue;
        };
        roots += 1;
        if i < n {
            seen[i] += 1;
        }
        order.push(i);
    }
    Tally {
        roots,
        lost: seen.iter().filter(|c| **c == 0).count(),
        duplicated: seen.iter().map(|c| c.saturating_sub(1)).sum(),
        in_order: order.windows(2).all(|w| w[0] < w[1]),
    }
}

// ---- the store, read from outside ----

/// Counts read straight from the database the daemon writes.
pub struct StoreProbe {
    pool: sqlx::AnyPool,
}

impl StoreProbe {
    pub async fn open(db: &TestDb) -> StoreProbe {
        sqlx::any::install_default_drivers();
        let pool = poll(
            "the database to exist",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                sqlx::pool::PoolOptions::<sqlx::Any>::new()
                    .max_connections(1)
                    .connect(&db.url_text)
                    .await
                    .ok()
            },
        )
        .await;
        StoreProbe { pool }
    }

    /// The first column of the first row of `sql`, an integer.
    pub async fn count(&self, sql: &str) -> Option<i64> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .ok()?;
        sqlx::Row::try_get::<i64, _>(&row, 0).ok()
    }

    /// The first column of every row of `sql`, integers.
    pub async fn ints(&self, sql: &str) -> Vec<i64> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
        rows.iter()
            .filter_map(|r| sqlx::Row::try_get::<i64, _>(r, 0).ok())
            .collect()
    }

    /// Tickets stored (None while the schema is not there yet).
    pub async fn tickets(&self) -> Option<i64> {
        self.count("SELECT COUNT(*) FROM tickets").await
    }

    /// Chat threads recorded (posts the daemon knows it made).
    pub async fn threads(&self) -> Option<i64> {
        self.count("SELECT COUNT(*) FROM chat_threads").await
    }

    /// The stored IMAP checkpoint's UIDVALIDITY.
    pub async fn uid_validity(&self) -> Option<i64> {
        // The ingest folder's row: the Sent watcher keeps one of its own.
        self.count("SELECT uid_validity FROM checkpoints WHERE folder = 'inbox'")
            .await
    }

    /// Outbox jobs that gave up.
    pub async fn failed_jobs(&self) -> Option<i64> {
        self.count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'")
            .await
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

// ---- the real binary ----

/// A `mailroom run` child; its log goes to a file kept with the run.
/// The store's counts at the end of a scenario, and the daemon's exit code.
pub struct End {
    pub tickets: i64,
    pub failed: i64,
    pub code: Option<i32>,
}

impl StoreProbe {
    /// Reads the ticket and failed-job counts, checks that the daemon is
    /// still running, stops it (SIGTERM) and closes the probe.
    pub async fn finish(self, mut d: Daemon) -> End {
        let tickets = self.tickets().await.unwrap_or(-1);
        let failed = self.failed_jobs().await.unwrap_or(-1);
        d.assert_running();
        let code = d.stop().await;
        self.close().await;
        End {
            tickets,
            failed,
            code,
        }
    }
}

/// The `mailroom` binary the suite runs: `MAILROOM_CHAOS_BIN` when set
/// (see [`Daemon::spawn`]), else the one cargo built for this test target.
pub fn mailroom_bin() -> PathBuf {
    std::env::var_os("MAILROOM_CHAOS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mailroom")))
}

pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `mailroom run --config <config>` with `env` set. The binary is
    /// `MAILROOM_CHAOS_BIN` when set (scripts/chaos copies the one it just
    /// built there, so a build in a worktree sharing the target dir cannot
    /// swap it mid-run), else the one cargo built for this test target.
    pub fn spawn(config: &Path, env: &[(&str, &str)], log: &Path) -> Daemon {
        let bin = mailroom_bin();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("MAILROOM_CONFIG")
            .env_remove("MAILROOM_LOG_FORMAT")
            .env(
                "MAILROOM_LOG",
                std::env::var("MAILROOM_CHAOS_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start mailroom");
        Daemon {
            child,
            log: log.to_owned(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (std's `Child::kill`), then reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and a bounded wait for the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = poll(
            "mailroom to exit after SIGTERM",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let s = self.child.try_wait().expect("try_wait");
                async move { s }
            },
        )
        .await;
        status.code()
    }

    /// Fails loudly if the daemon exited on its own.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("mailroom exited ({status}); log:\n{}", tail(&self.log, 60));
        }
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

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Lines of the daemon log containing `needle`.
pub fn log_count(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A uniform random number in `0..n` (n > 0).
pub fn rand_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("randomness");
    u64::from_le_bytes(b) % n.max(1)
}

// ---- Matrix, over the client-server API ----

/// The Synapse of the stack, read and driven over plain HTTP.
pub struct Homeserver {
    pub url: String,
    pub port: u16,
    http: reqwest::Client,
}

impl Homeserver {
    pub fn get(stack: &Stack) -> Homeserver {
        let env = std::fs::read_to_string(stack.dir.join("stack.env")).unwrap_or_default();
        let url = std::env::var("MAILROOM_SYNAPSE_URL")
            .ok()
            .or_else(|| {
                env.lines().find_map(|l| {
                    l.strip_prefix("export MAILROOM_SYNAPSE_URL=")
                        .map(str::to_owned)
                })
            })
            .unwrap_or_else(|| panic!("Synapse is not running: run `scripts/stack up`"));
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Homeserver {
            url,
            port,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// A fresh account: (user id, password).
    pub fn register(&self, stack: &Stack, prefix: &str) -> (String, String) {
        let name = format!("{prefix}-{}", random_hex(5));
        let password = format!("{name}-pw");
        synapse_register(stack, &name, &password, false)
    }

    pub async fn login(&self, user: &str, password: &str) -> String {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let r = self.post("login", None, body).await;
        r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {r}"))
            .to_owned()
    }

    pub async fn create_room(&self, token: &str, invite: &[&str]) -> String {
        let body = json!({"invite": invite, "name": "Chaos inbox", "preset": "private_chat"});
        let r = self.post("createRoom", Some(token), body).await;
        r["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("createRoom: {r}"))
            .to_owned()
    }

    /// POSTs `body` to the client-server API's `endpoint`; its JSON answer.
    async fn post(&self, endpoint: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = self
            .http
            .post(format!("{}/_matrix/client/v3/{endpoint}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let text = req.send().await.expect(endpoint).text().await.ok();
        text.and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| panic!("{endpoint} answer"))
    }

    /// Every event of the room, oldest first (paginated forwards from the
    /// start). None if the homeserver did not answer.
    pub async fn events(&self, token: &str, room: &str) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000",
                self.url,
                urlencode(room)
            );
            if let Some(f) = &from {
                url.push_str(&format!("&from={}", urlencode(f)));
            }
            let text = self
                .http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let r: Value = serde_json::from_str(&text).ok()?;
            let chunk = r["chunk"].as_array()?;
            if chunk.is_empty() {
                return Some(out);
            }
            out.extend(chunk.iter().cloned());
            match r["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => return Some(out),
            }
        }
    }

    /// The bodies of `bot`'s thread roots, in room order.
    pub async fn roots(&self, token: &str, room: &str, bot: &str) -> Option<Vec<String>> {
        Some(
            self.events(token, room)
                .await?
                .iter()
                .filter(|e| is_root(e, bot))
                .map(|e| e["content"]["body"].as_str().unwrap_or("").to_owned())
                .collect(),
        )
    }
}

/// A ticket's root message: the bot's, not in a thread, not an edit.
pub fn is_root(e: &Value, bot: &str) -> bool {
    e["type"] == "m.room.message"
        && e["sender"] == bot
        && e["content"]["m.relates_to"].is_null()
        && e["content"]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("📨"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Matrix room with a bot account and a teammate who reads it, a support
/// mailbox and a customer, a fresh database: one scenario's world.
pub struct MatrixWorld {
    pub stack: &'static Stack,
    pub hs: Homeserver,
    pub support: User,
    pub customer: User,
    pub bot: (String, String),
    /// An access token of the bot's own (see `config_in`).
    pub bot_token: String,
    pub reader_token: String,
    pub room: String,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub tag: String,
}

impl MatrixWorld {
    pub async fn new(db: Db) -> MatrixWorld {
        let stack = Stack::get();
        let hs = Homeserver::get(stack);
        let bot = hs.register(stack, "mailroom");
        let (alice, alice_pw) = hs.register(stack, "alice");
        let reader_token = hs.login(&alice, &alice_pw).await;
        let bot_token = hs.login(&bot.0, &bot.1).await;
        let room = hs.create_room(&reader_token, &[&bot.0]).await;
        MatrixWorld {
            stack,
            hs,
            support: stack.user("support", "example.com"),
            customer: stack.user("customer", "example.net"),
            bot,
            bot_token,
            reader_token,
            room,
            db: db.fresh().await,
            dir: tempfile::tempdir().expect("tempdir"),
            tag: random_hex(3),
        }
    }

    /// Writes the config file; `homeserver_port` and `imap_port` let a
    /// forwarder stand in front of Synapse or Dovecot.
    pub fn config(&self, homeserver_port: u16, imap_port: u16) -> PathBuf {
        self.config_in(homeserver_port, imap_port, "INBOX")
    }

    /// The same, watching `folder`.
    ///
    /// The bot uses an access token (`access_token_env`), not a password:
    /// a password login takes the homeserver's advertised base URL from the
    /// login answer (matrix-sdk follows `well_known`), which would route
    /// every later request around a forwarder standing in front of Synapse.
    pub fn config_in(&self, homeserver_port: u16, imap_port: u16, folder: &str) -> PathBuf {
        let mailbox = crate::common::mailbox_toml(
            self.stack,
            &self.support,
            &self.db,
            &format!("matrix_room = \"{}\"", self.room),
        )
        .replace(
            &format!("port = {}\n", self.stack.imap_port),
            &format!("port = {imap_port}\n  folder = \"{folder}\"\n"),
        );
        let homeserver = format!("http://127.0.0.1:{homeserver_port}");
        let secret = "access_token_env = \"BOT_TOKEN\"";
        let state = self.dir.path().join("matrix");
        let matrix = matrix_toml(&homeserver, &self.bot.0, secret, &state);
        // Retries come quickly so recovery is measured in seconds, and
        // outlast any outage the scenarios make (see docs/RELIABILITY.md).
        let outbox = outbox_toml("max_attempts = 1000\n");
        let text = format!("{mailbox}\n{matrix}\n{outbox}");
        let path = self.dir.path().join("mailroom.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn spawn(&self, config: &Path) -> Daemon {
        Daemon::spawn(config, &[("BOT_TOKEN", &self.bot_token)], &self.log())
    }

    pub async fn roots(&self) -> Option<Vec<String>> {
        self.hs
            .roots(&self.reader_token, &self.room, &self.bot.0)
            .await
    }

    pub async fn append(&self, range: std::ops::Range<usize>) {
        self.append_to("INBOX", range, 0).await;
    }

    pub async fn append_to(&self, folder: &str, range: std::ops::Range<usize>, pad: usize) {
        append_many(
            self.stack,
            &self.support,
            &self.customer,
            &self.tag,
            folder,
            range,
            pad,
        )
        .await;
    }

    /// The daemon's log: in the run's temp dir, or kept in
    /// `MAILROOM_CHAOS_LOG_DIR` when that is set.
    pub fn log(&self) -> PathBuf {
        match std::env::var_os("MAILROOM_CHAOS_LOG_DIR") {
            Some(dir) => PathBuf::from(dir).join(format!("mailroom-{}.log", self.tag)),
            None => self.dir.path().join("mailroom.log"),
        }
    }

    /// Waits until the room shows at least `n` roots of this run and the
    /// count has held for two seconds (a duplicate posted late would show),
    /// then tallies them.
    pub async fn settle(&self, n: usize, limit: Duration) -> Tally {
        let start = Instant::now();
        let mut stable: Option<(usize, Instant)> = None;
        loop {
            if let Some(roots) = self.roots().await {
                let t = tally(roots.iter().map(String::as_str), &self.tag, n);
                match stable {
                    Some((c, at)) if c == t.roots => {
                        if t.roots >= n && at.elapsed() >= Duration::from_secs(2) {
                            return t;
                        }
                    }
                    _ => stable = Some((t.roots, Instant::now())),
                }
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {n} roots (last count {:?})",
                    stable.map(|s| s.0)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
