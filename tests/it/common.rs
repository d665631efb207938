//! Shared test helpers: the local mail stack, fresh databases, a running app.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mailroom::bridge::App;
use mailroom::config::Settings;
use mailroom::domain::settings::Secret;
use mailroom::mail::imap;
use mailroom::mail::settings::{ImapSettings, TlsMode};
use mailroom::store::TicketStore;
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Ports and paths of the stack `scripts/stack up` started.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub smtps_port: u16,
    pub ca: PathBuf,
    pub repo: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("export ").unwrap_or(l.trim());
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_owned(),
                v.trim().trim_matches(['"', '\'']).to_owned(),
            ))
        })
        .collect()
}

impl Stack {
    /// The running stack; panics with what to do when it is not up.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(|| {
            let repo = repo_root();
            let dir = std::env::var("MAILROOM_STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| repo.join(".stack"));
            let file = read_env_file(&dir.join("stack.env"));
            let get = |k: &str| -> String {
                std::env::var(k).ok().or_else(|| file.get(k).cloned()).unwrap_or_else(|| {
                    panic!(
                        "the local mail stack is not running ({k} unknown; looked in {}): run `scripts/stack install && scripts/stack up`, or use scripts/test which does it",
                        dir.join("stack.env").display()
                    )
                })
            };
            let port = |k: &str| get(k).parse::<u16>().unwrap_or_else(|e| panic!("{k}: {e}"));
            let stack = Stack {
                imap_port: port("MAILROOM_IMAP_PORT"),
                imaps_port: port("MAILROOM_IMAPS_PORT"),
                smtp_port: port("MAILROOM_SMTP_PORT"),
                smtps_port: port("MAILROOM_SMTPS_PORT"),
                ca: PathBuf::from(get("MAILROOM_STACK_CA")),
                dir,
                repo,
            };
            if std::net::TcpStream::connect(("127.0.0.1", stack.imap_port)).is_err() {
                panic!("Dovecot is not answering on 127.0.0.1:{}: run `scripts/stack up`", stack.imap_port);
            }
            if std::net::TcpStream::connect(("127.0.0.1", stack.smtp_port)).is_err() {
                panic!("Postfix is not answering on 127.0.0.1:{}: run `scripts/stack up`", stack.smtp_port);
            }
            stack
        })
    }

    /// A fresh mail account `prefix-<random>@domain`, so tests never share a mailbox.
    pub fn user(&self, prefix: &str, domain: &str) -> User {
        self.user_with_password(prefix, domain, &format!("pw-{}", random_hex(8)))
    }

    /// Runs `scripts/stack ARGS…` for this stack (the fault suite restarts and
    /// stops servers with it), on a blocking thread so forwarders running in
    /// the test's runtime go on.
    #[allow(dead_code)] // used by the fault suite (tests/chaos) only
    pub async fn control(&self, args: &[&str]) {
        let (script, dir) = (self.repo.join("scripts/stack"), self.dir.clone());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let shown = args.join(" ");
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(script)
                .args(args)
                .env("MAILROOM_STACK_DIR", dir)
                .output()
        })
        .await
        .expect("join")
        .expect("run scripts/stack");
        assert!(
            out.status.success(),
            "scripts/stack {shown} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh mail account with a password of the test's choosing.
    pub fn user_with_password(&self, prefix: &str, domain: &str, password: &str) -> User {
        let address = format!("{prefix}-{}@{domain}", random_hex(6));
        let password = password.to_owned();
        let out = std::process::Command::new(self.repo.join("scripts/stack"))
            .args(["add-user", &address, &password])
            .env("MAILROOM_STACK_DIR", &self.dir)
            .output()
            .expect("run scripts/stack add-user");
        assert!(
            out.status.success(),
            "scripts/stack add-user {address} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        User { address, password }
    }

    pub fn imap_settings(&self, user: &User, folder: &str) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".into(),
            port: self.imap_port,
            tls: TlsMode::None,
            username: user.address.clone(),
            password: Secret::new(user.password.clone()),
            folder: folder.into(),
            ca_file: None,
            idle: true,
            poll_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub address: String,
    pub password: String,
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("randomness");
    hex::encode(b)
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// APPENDs a message to a user's folder.
pub async fn append(stack: &Stack, user: &User, folder: &str, raw: &[u8]) {
    let settings = stack.imap_settings(user, folder);
    let mut s = imap::connect(&settings).await.expect("IMAP login");
    s.append(folder, None, None, raw).await.expect("APPEND");
    imap::logout(s).await;
}

/// A message as read back over IMAP.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub flags: Vec<String>,
}

/// Every message in a user's folder (read-only, flags untouched).
pub async fn fetch_all(stack: &Stack, user: &User, folder: &str) -> Vec<Fetched> {
    let settings = stack.imap_settings(user, folder);
    let mut s = imap::connect(&settings).await.expect("IMAP login");
    let state = imap::examine(&mut s, folder).await.expect("EXAMINE");
    let mut out = Vec::new();
    if state.exists > 0 {
        let stream = s
            .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
            .await
            .expect("FETCH");
        let fetched: Vec<_> = stream.try_collect().await.expect("FETCH stream");
        for f in fetched {
            out.push(Fetched {
                uid: f.uid.unwrap_or(0),
                raw: f.body().map(|b| b.to_vec()).unwrap_or_default(),
                flags: f.flags().map(|fl| format!("{fl:?}")).collect(),
            });
        }
    }
    imap::logout(s).await;
    out.sort_by_key(|f| f.uid);
    out
}

/// A simple customer email.
pub fn customer_mail(
    from: &str,
    to: &str,
    message_id: &str,
    subject: &str,
    body: &str,
    in_reply_to: Option<&str>,
) -> Vec<u8> {
    let mut m = format!(
        "From: Carol Customer <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    );
    if let Some(parent) = in_reply_to {
        m.push_str(&format!(
            "In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"
        ));
    }
    m.push_str("\r\n");
    m.push_str(body);
    m.push_str("\r\n");
    m.into_bytes()
}

/// A database for one test: SQLite in a temp dir, or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub url_text: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

pub fn pg_admin_url() -> String {
    std::env::var("MAILROOM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/mailroom.db");
        let url_text = format!("sqlite://{}", path.display());
        TestDb {
            url: DatabaseUrl::parse(&url_text).expect("sqlite url"),
            url_text,
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// Creates a fresh database on the machine's PostgreSQL.
    pub async fn postgres() -> TestDb {
        TestDb::postgres_at(&pg_admin_url()).await
    }

    /// Creates a fresh database on the server `admin` points at.
    pub async fn postgres_at(admin: &str) -> TestDb {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let admin = admin.to_owned();
        let name = format!("mailroom_test_{}", random_hex(6));
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is not reachable ({e}): start it (scripts/test does) or set MAILROOM_TEST_PG_URL")
        });
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("CREATE DATABASE");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url_text = format!("{base}/{name}");
        TestDb {
            url: DatabaseUrl::parse(&url_text).expect("pg url"),
            url_text,
            _dir: None,
            pg_name: Some(name),
        }
    }

    pub async fn store(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url, 4)
            .await
            .expect("connect store");
        store.migrate().await.expect("migrate");
        store
    }

    /// Drops the PostgreSQL database (left in place when a test fails, for a look).
    pub async fn cleanup(self) {
        use sqlx::Executor;
        if let Some(name) = &self.pg_name
            && let Ok(mut conn) =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url()).await
        {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// `[database]` and one `[[mailbox]]` on the local stack, its
/// `[mailbox.chat]` holding `chat` (e.g. `matrix_room = "!id"`).
pub fn mailbox_toml(stack: &Stack, support: &User, db: &TestDb, chat: &str) -> String {
    mailbox_section(
        stack,
        support,
        db,
        stack.smtp_port,
        &format!("  [mailbox.chat]\n  {chat}"),
    )
}

/// `[database]` and one `[[mailbox]]` sending through `smtp_port`; `tail`
/// ends the mailbox (sub-tables, more SMTP keys).
pub fn mailbox_section(
    stack: &Stack,
    support: &User,
    db: &TestDb,
    smtp_port: u16,
    tail: &str,
) -> String {
    format!(
        r#"
[database]
url = "{db}"

[[mailbox]]
name = "support"
address = "{addr}"
display_name = "Example Support"
initial_sync = "all"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {imap}
  tls = "none"
  password = "{pw}"
  idle_timeout_secs = 600
  [mailbox.smtp]
  host = "127.0.0.1"
  port = {smtp}
  tls = "none"
  password = "{pw}"
{tail}
"#,
        db = db.url_text,
        addr = support.address,
        imap = stack.imap_port,
        smtp = smtp_port,
        pw = support.password,
    )
}

/// A mailroom configuration for the local stack.
pub fn config(stack: &Stack, support: &User, db: &TestDb, smtp_port: u16, extra: &str) -> Settings {
    let text = format!(
        r#"{mailbox}
[outbox]
retry_initial_secs = 1
retry_max_secs = 2
{extra}
"#,
        mailbox = mailbox_section(stack, support, db, smtp_port, "  timeout_secs = 5"),
    );
    Settings::parse(&text, &|_| None).unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

/// mailroom running in the background of a test.
pub struct Running {
    pub app: Arc<App>,
    pub store: Arc<SqlStore>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Logs to the test output (shown for failing tests); `MAILROOM_LOG` filters.
pub fn init_logs() {
    let filter = std::env::var("MAILROOM_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

pub async fn start(settings: Settings, db: &TestDb) -> Running {
    start_with_chats(settings, db, Vec::new()).await
}

/// [`start`] with chat platforms (e.g. a recording one) wired in.
pub async fn start_with_chats(
    settings: Settings,
    db: &TestDb,
    chats: Vec<Arc<dyn mailroom::chat::ChatPlatform>>,
) -> Running {
    init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let store = Arc::new(db.store().await);
    let app = Arc::new(App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        chats,
    ));
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(app.clone().run(cancel.clone(), None));
    Running {
        app,
        store,
        cancel,
        handle,
    }
}

impl Running {
    /// Graceful stop, bounded.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("mailroom stops within 20 s")
            .expect("app task");
        self.store.close().await;
    }
}
