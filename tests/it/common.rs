//! Shared test helpers: the local mail stack, fresh databases, a running app.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mailroom::bridge::{App, connect_chats};
use mailroom::config::Settings;
use mailroom::domain::ids::TicketId;
use mailroom::domain::settings::Secret;
use mailroom::mail::imap;
use mailroom::mail::settings::{ImapSettings, TlsMode};
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;
use mailroom::store::{AuditEntry, TicketStore};
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
        assert_success(&out, &format!("scripts/stack {shown}"));
    }

    /// A fresh mail account with a password of the test's choosing.
    pub fn user_with_password(&self, prefix: &str, domain: &str, password: &str) -> User {
        let address = format!("{prefix}-{}@{domain}", random_hex(6));
        let password = password.to_owned();
        run_ok(
            Command::new(self.repo.join("scripts/stack"))
                .args(["add-user", &address, &password])
                .env("MAILROOM_STACK_DIR", &self.dir),
            &format!("scripts/stack add-user {address}"),
        );
        User { address, password }
    }

    /// The base URL of the stack's OAuth2 authorization server.
    pub fn oauth_url(&self) -> String {
        std::env::var("MAILROOM_OAUTH_URL")
            .ok()
            .or_else(|| read_env_file(&self.dir.join("stack.env")).remove("MAILROOM_OAUTH_URL"))
            .unwrap_or_else(|| {
                panic!(
                    "the stack has no OAuth2 authorization server (MAILROOM_OAUTH_URL unknown; looked in {}): run `scripts/stack up`",
                    self.dir.join("stack.env").display()
                )
            })
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
            sent_folder: None,
            watch_sent: true,
        }
    }
}

/// The running stack and a fresh support mailbox on it.
pub fn support_mailbox() -> (&'static Stack, User) {
    let stack = Stack::get();
    (stack, stack.user("support", "example.com"))
}

/// [`support_mailbox`] and a fresh customer mailbox to write from and
/// receive replies in.
pub fn support_and_customer() -> (&'static Stack, User, User) {
    let (stack, support) = support_mailbox();
    (stack, support, stack.user("customer", "example.net"))
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
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_every(what, limit, Duration::from_millis(50), f).await
}

/// Polls `f` every `every` until it returns `Some`, for at most `limit`.
pub async fn poll_every<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F) -> T
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
        tokio::time::sleep(every).await;
    }
}

async fn all_tickets(store: &dyn TicketStore) -> Vec<mailroom::store::TicketRecord> {
    let filter = mailroom::store::TicketFilter::default();
    store.list_tickets(&filter).await.unwrap()
}

/// How many tickets the store holds.
pub async fn ticket_count(store: &dyn TicketStore) -> usize {
    all_tickets(store).await.len()
}

/// The id of the first ticket listed (the only one, in most tests).
pub async fn first_ticket(store: &dyn TicketStore) -> TicketId {
    all_tickets(store).await[0].id
}

/// Waits until the store holds at least `n` tickets.
pub async fn wait_tickets(store: &dyn TicketStore, n: usize) {
    wait_for(
        &format!("{n} tickets"),
        Duration::from_secs(30),
        || async move { (ticket_count(store).await >= n).then_some(()) },
    )
    .await;
}

/// A reply to `ticket` by `agent` (signed `agent_name` when given): no
/// files, no undo window.
pub fn reply_request(
    ticket: TicketId,
    agent: &str,
    agent_name: Option<&str>,
    body: &str,
) -> mailroom::bridge::reply::ReplyRequest {
    mailroom::bridge::reply::ReplyRequest {
        ticket,
        agent: mailroom::domain::ids::Agent::parse(agent).unwrap(),
        agent_name: agent_name.map(str::to_owned),
        body_markdown: body.to_owned(),
        attachments: vec![],
        undo_window: Duration::ZERO,
        confirmed: false,
    }
}

/// Fails the test, showing the command's stderr, unless it exited 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to its end; it must succeed ([`assert_success`]).
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(&out, what);
    out
}

/// Registers `name` with `password` on the stack's Synapse (through
/// scripts/lib/synapse.sh), as a server admin when `admin`: (user id, password).
pub fn synapse_register(
    stack: &Stack,
    name: &str,
    password: &str,
    admin: bool,
) -> (String, String) {
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg("source scripts/lib/synapse.sh && synapse_register \"$0\" \"$1\" $2")
            .arg(name)
            .arg(password)
            .arg(if admin { "admin" } else { "" })
            .current_dir(&stack.repo)
            .env("STATE", &stack.dir)
            .env("REPO", &stack.repo),
        &format!("registering {name}"),
    );
    (format!("@{name}:localhost"), password.to_owned())
}

/// APPENDs a message to a user's folder.
pub async fn append(stack: &Stack, user: &User, folder: &str, raw: &[u8]) {
    let settings = stack.imap_settings(user, folder);
    let mut s = imap::connect_password(&settings).await.expect("IMAP login");
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
    let mut s = imap::connect_password(&settings).await.expect("IMAP login");
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

/// A customer writing to the support mailbox: each mail is a
/// [`customer_mail`] from `from`, appended to the support INBOX.
pub struct Writer<'a> {
    pub stack: &'a Stack,
    pub support: &'a User,
    pub from: &'a str,
}

impl<'a> Writer<'a> {
    pub fn new(stack: &'a Stack, support: &'a User, from: &'a str) -> Writer<'a> {
        Writer {
            stack,
            support,
            from,
        }
    }

    /// A new mail (no In-Reply-To).
    pub async fn writes(&self, message_id: &str, subject: &str, body: &str) {
        self.send(message_id, subject, body, None).await;
    }

    /// A mail answering `parent` (In-Reply-To and References).
    pub async fn answers(&self, parent: &str, message_id: &str, subject: &str, body: &str) {
        self.send(message_id, subject, body, Some(parent)).await;
    }

    async fn send(&self, message_id: &str, subject: &str, body: &str, parent: Option<&str>) {
        let to = &self.support.address;
        let raw = customer_mail(self.from, to, message_id, subject, body, parent);
        append(self.stack, self.support, "INBOX", &raw).await;
    }
}

/// A mail with a `long_body` of text, a small PDF and a 1.5 MB file.
pub fn mail_with_files(customer: &User, support: &User, long_body: &str) -> String {
    let big = "A".repeat(1_500_000);
    format!(
        "From: Carol <{c}>\r\nTo: {s}\r\nSubject: With files\r\nMessage-ID: <files1@example.net>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{long_body}\r\n\
--b1\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n\
--b1\r\nContent-Type: application/octet-stream; name=\"huge.bin\"\r\nContent-Disposition: attachment; filename=\"huge.bin\"\r\n\r\n{big}\r\n--b1--\r\n",
        c = customer.address,
        s = support.address,
    )
}

/// The one attachment of a sent `raw` mail is `name` holding `bytes`.
pub fn assert_one_attachment(raw: &[u8], name: &str, bytes: &[u8]) {
    let mail = mailroom::mail::parse::parse_email(raw);
    assert_eq!(mail.attachments.len(), 1, "{:?}", mail.attachments);
    assert_eq!(mail.attachments[0].name, name);
    assert_eq!(
        mailroom::mail::parse::attachment_bytes(raw, 0).unwrap(),
        bytes
    );
}

/// The actions of a ticket's audit log, oldest first.
pub async fn audit_actions(store: &dyn TicketStore, ticket: TicketId) -> Vec<String> {
    let log = store.audit_log(ticket).await.unwrap();
    log.into_iter().map(|a| a.action).collect()
}

/// A ticket's life through chat: mailed in, claimed, answered, answered
/// back by the customer, closed.
pub const LIFECYCLE: &[&str] = &[
    "created",
    "claim",
    "reply-queued",
    "reply-sent",
    "customer-replied",
    "close",
];

/// Every one of `wanted` is among the actions of `log`.
pub fn assert_logged(log: &[AuditEntry], wanted: &[&str]) {
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    for a in wanted {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
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
    let password = format!("password = \"{}\"", support.password);
    MailboxToml {
        db_url: &db.url_text,
        address: &support.address,
        imap_port: stack.imap_port,
        imap_keys: &format!("{password}\n  idle_timeout_secs = 600"),
        smtp_port,
        smtp_keys: &password,
        tail,
    }
    .render()
}

/// The tests' customers write in bursts (50 mails in a second) that the
/// loop guard would take for a mail loop; it is raised out of their way
/// here, and `tests/it/hygiene.rs` replaces this line to test it.
pub const LOOP_GUARD: &str = "loop_guard = { max_messages = 10000 }";

/// `[database]` and one `[[mailbox]]` named support on 127.0.0.1, with
/// plain-text IMAP and SMTP.
pub struct MailboxToml<'a> {
    pub db_url: &'a str,
    pub address: &'a str,
    pub imap_port: u16,
    /// The IMAP password line (`password = …` or `password_env = …`) and
    /// any more `[mailbox.imap]` keys.
    pub imap_keys: &'a str,
    pub smtp_port: u16,
    /// The same for `[mailbox.smtp]`.
    pub smtp_keys: &'a str,
    /// Ends the mailbox (sub-tables, more SMTP keys).
    pub tail: &'a str,
}

impl MailboxToml<'_> {
    pub fn render(&self) -> String {
        format!(
            r#"
[database]
url = "{db}"

[[mailbox]]
name = "support"
address = "{addr}"
display_name = "Example Support"
initial_sync = "all"
{LOOP_GUARD}
  [mailbox.imap]
  host = "127.0.0.1"
  port = {imap}
  tls = "none"
  {imap_keys}
  [mailbox.smtp]
  host = "127.0.0.1"
  port = {smtp}
  tls = "none"
  {smtp_keys}
{tail}
"#,
            db = self.db_url,
            addr = self.address,
            imap = self.imap_port,
            imap_keys = self.imap_keys,
            smtp = self.smtp_port,
            smtp_keys = self.smtp_keys,
            tail = self.tail,
        )
    }
}

/// `[outbox]` retrying quickly (after 1 s, at most 2 s apart); `more`
/// adds keys.
pub fn outbox_toml(more: &str) -> String {
    format!("[outbox]\nretry_initial_secs = 1\nretry_max_secs = 2\n{more}")
}

/// `[commands]` with `undo_secs` and the example templates.
pub fn commands_toml(stack: &Stack, undo_secs: u64) -> String {
    let templates = stack.repo.join("bot-config/templates");
    format!(
        "[commands]\nundo_secs = {undo_secs}\ntemplates_dir = \"{}\"\n",
        templates.display()
    )
}

/// `[matrix]` for the bot `user_id` on `homeserver`; `secret` names where
/// its secret comes from (`password_env = "…"` or `access_token_env = "…"`).
pub fn matrix_toml(homeserver: &str, user_id: &str, secret: &str, state_dir: &Path) -> String {
    format!(
        "[matrix]\nhomeserver = \"{homeserver}\"\nuser_id = \"{user_id}\"\n{secret}\nstate_dir = \"{}\"\n",
        state_dir.display()
    )
}

/// The environment variables [`slack_toml`] reads the bot token, the app
/// token and the signing secret from.
pub const SLACK_SECRETS: [&str; 3] = ["SLACK_BOT", "SLACK_APP", "SLACK_SIGNING"];

/// `[slack]` for the fake Slack at `api_url`, connecting in `mode`, posting
/// as fast as the tests need; `more` adds keys and sub-tables.
pub fn slack_toml(mode: &str, api_url: &str, more: &str) -> String {
    let [bot, app, signing] = SLACK_SECRETS;
    format!(
        "[slack]\nmode = \"{mode}\"\nbot_token_env = \"{bot}\"\napp_token_env = \"{app}\"\n\
         signing_secret_env = \"{signing}\"\napi_url = \"{api_url}\"\n\
         posts_per_second = 50\npost_burst = 50\n{more}"
    )
}

/// A mailroom configuration for the local stack.
pub fn config(stack: &Stack, support: &User, db: &TestDb, smtp_port: u16, extra: &str) -> Settings {
    let text = format!(
        "{mailbox}\n{outbox}{extra}\n",
        mailbox = mailbox_section(stack, support, db, smtp_port, "  timeout_secs = 5"),
        outbox = outbox_toml(""),
    );
    Settings::parse(&text, &|_| None).unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

/// mailroom running in the background of a test.
pub struct Running {
    pub app: Arc<App>,
    pub store: Arc<SqlStore>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    /// The connected chats' own tasks ([`start_connected`]).
    chat_tasks: Vec<JoinHandle<()>>,
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
    let store = Arc::new(db.store().await);
    let app = App::new(settings, store.clone() as Arc<dyn TicketStore>, chats);
    start_app(app, store)
}

/// Runs an [`App`] the test wired (e.g. with another login source).
pub fn start_app(app: App, store: Arc<SqlStore>) -> Running {
    init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let app = Arc::new(app);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(app.clone().run(cancel.clone(), None));
    Running {
        app,
        store,
        cancel,
        handle,
        chat_tasks: Vec::new(),
    }
}

/// mailroom in-process as `mailroom run` starts it: its chats connected
/// from the settings, and `/metrics` and `/healthz` served on `ops` when
/// given.
pub async fn start_connected(
    settings: Settings,
    db: &TestDb,
    ops: Option<tokio::net::TcpListener>,
) -> Running {
    let store = Arc::new(db.store().await);
    let cancel = CancellationToken::new();
    let chats = connect_chats(&settings, &cancel)
        .await
        .expect("the chats connect");
    let app = Arc::new(App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        chats.platforms,
    ));
    let run = app
        .clone()
        .run_with_ops(cancel.clone(), Some(chats.events), ops);
    Running {
        app,
        store,
        cancel,
        handle: tokio::spawn(run),
        chat_tasks: chats.tasks,
    }
}

/// [`start_connected`] with the flows reading "now" from `clock` (a
/// `ManualClock` the test moves: SLA timers, snoozes, reminders, digests).
pub async fn start_connected_at(
    settings: Settings,
    db: &TestDb,
    clock: Arc<dyn mailroom::domain::time::Clock>,
) -> Running {
    let store = Arc::new(db.store().await);
    let cancel = CancellationToken::new();
    let chats = connect_chats(&settings, &cancel)
        .await
        .expect("the chats connect");
    let mut app = App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        chats.platforms,
    );
    app.clock = clock;
    let app = Arc::new(app);
    let run = app
        .clone()
        .run_with_ops(cancel.clone(), Some(chats.events), None);
    Running {
        app,
        store,
        cancel,
        handle: tokio::spawn(run),
        chat_tasks: chats.tasks,
    }
}

impl Running {
    /// Graceful stop, bounded; the chat tasks are given as long.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("mailroom stops within 30 s")
            .expect("app task");
        for t in self.chat_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        self.store.close().await;
    }
}
