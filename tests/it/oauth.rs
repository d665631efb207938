//! OAuth2 mailboxes against the stack's authorization server: `mailroom
//! auth login` (the real binary, device flow), the grant sealed at rest,
//! refresh ahead of expiry, refresh-token rotation, a revoked grant told
//! once and recovered from by a new sign-in, `auth status` and `logout`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom::bridge::oauth::{OAuthLogin, store_sign_in};
use mailroom::config::Settings;
use mailroom::domain::chat::Platform;
use mailroom::domain::ids::MailboxName;
use mailroom::mail::auth::{Login, LoginError, LoginSource};
use mailroom::mail::oauth::{SealKey, TokenClient, Tokens};
use mailroom::ops::metrics::Metrics;
use mailroom::store::{JobSpec, JobState, TicketStore};
use serde_json::{Value, json};

use crate::common::*;
use crate::sasl::AuthServer;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A client registered on the authorization server with `extra` settings.
async fn client(server: &AuthServer, secret: &str, extra: Value) -> String {
    let id = format!("oauth-{}", random_hex(6));
    let mut body = json!({"client_id": id, "client_secret": secret});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    server.post("/admin/clients", body, false).await;
    id
}

/// The config of one OAuth2 mailbox signing in at the stack's server.
fn oauth_toml(
    stack: &Stack,
    support: &User,
    db: &TestDb,
    client_id: &str,
    secret: &str,
    login_user: &str,
) -> String {
    let base = stack.oauth_url();
    let mailbox = MailboxToml {
        db_url: &db.url_text,
        address: &support.address,
        imap_port: stack.imap_port,
        imap_keys: "",
        smtp_port: stack.smtp_port,
        smtp_keys: "",
        tail: &format!(
            "  [mailbox.oauth2]\n  provider = \"custom\"\n  client_id = \"{client_id}\"\n  \
             client_secret = \"{secret}\"\n  token_url = \"{base}/token\"\n  \
             device_authorization_url = \"{base}/device_authorization\"\n  \
             authorization_url = \"{base}/authorize\"\n  revocation_url = \"{base}/revoke\"\n  \
             scopes = [\"mail\", \"offline_access\"]\n  login_user = \"{login_user}\"\n"
        ),
    }
    .render()
    .replace(
        "initial_sync = \"all\"",
        "initial_sync = \"all\"\nauth = \"oauth2\"",
    );
    format!("[secrets]\nkey = \"{KEY}\"\n{mailbox}")
}

fn mailroom(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("MAILROOM_LOG", "warn");
    c
}

/// Runs `auth login` until it shows its code, lets `approve` act on the
/// code, and returns (exit code, stdout, stderr).
async fn device_login<F, Fut>(config: &std::path::Path, approve: F) -> (i32, String, String)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut child = mailroom(config, &["auth", "login", "--mailbox", "support"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mailroom auth login starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            if let Some((_, code)) = line.split_once("enter the code ") {
                return Some(code.trim().to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    if let Some(code) = code {
        approve(code).await;
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("mailroom auth login ends");
    let stdout = reader.join().expect("reader");
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn device_login_by_the_binary_stores_a_sealed_grant_for_a_delegate() {
    let (stack, support) = support_mailbox();
    let alice = format!("alice-{}@example.com", random_hex(4));
    let server = AuthServer::get(stack);
    let id = client(&server, "s3cret", json!({})).await;
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailroom.toml");
    std::fs::write(
        &config,
        oauth_toml(stack, &support, &db, &id, "s3cret", &alice),
    )
    .unwrap();

    let (code, out, err) = device_login(&config, |user_code| {
        let (server, alice, support) = (server.clone(), alice.clone(), support.address.clone());
        async move {
            let body = json!({"user_code": user_code, "account": alice, "mailbox": support});
            server.post("/admin/approve", body, false).await;
        }
    })
    .await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let base = stack.oauth_url();
    assert!(
        out.contains(&format!("open {base}")),
        "the verification URL is shown:\n{out}"
    );
    assert!(
        out.contains("(or open "),
        "the complete URL is shown:\n{out}"
    );
    assert!(
        out.contains(&format!("Signed in: mailbox support as {alice}")),
        "{out}"
    );

    // Sealed at rest: the column opens to a live token, and holds no token text.
    let store = db.store().await;
    let support_name = MailboxName::parse("support").unwrap();
    let grant = store.grant(&support_name).await.unwrap().expect("stored");
    assert_eq!(grant.account, alice);
    let key = SealKey::parse(KEY).unwrap();
    let access = key
        .open(grant.access_token.as_deref().unwrap(), "support")
        .unwrap();
    let refresh = key.open(&grant.refresh_token, "support").unwrap();
    for token in [&access, &refresh] {
        let t = token.expose().as_bytes();
        assert!(!grant.refresh_token.windows(t.len()).any(|w| w == t));
        assert!(
            !grant
                .access_token
                .as_ref()
                .unwrap()
                .windows(t.len())
                .any(|w| w == t)
        );
    }
    let introspected = server
        .post("/introspect", json!({"token": access.expose()}), true)
        .await;
    assert_eq!(
        introspected["username"],
        support.address.as_str(),
        "the grant opens support@"
    );
    assert_eq!(introspected["sub"], alice.as_str(), "alice signed in");
    let wrong = SealKey::parse(&KEY.replace('M', "N")).unwrap();
    let e = wrong
        .open(&grant.refresh_token, "support")
        .unwrap_err()
        .to_string();
    assert!(e.contains("secrets.key"), "a wrong key is named: {e}");

    let status = run_ok(&mut mailroom(&config, &["auth", "status"]), "auth status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("support: signed in") && status.contains(&alice),
        "{status}"
    );
    assert!(
        status.contains("scopes:         mail offline_access"),
        "{status}"
    );

    let logout = run_ok(
        &mut mailroom(&config, &["auth", "logout", "--mailbox", "support"]),
        "auth logout",
    );
    assert!(String::from_utf8_lossy(&logout.stdout).contains("revoked at the provider"));
    let gone = server
        .post("/introspect", json!({"token": access.expose()}), true)
        .await;
    assert_eq!(gone["active"], false, "revoked at the provider");
    assert_eq!(store.grant(&support_name).await.unwrap(), None);
    let status = run_ok(&mut mailroom(&config, &["auth", "status"]), "auth status");
    assert!(String::from_utf8_lossy(&status.stdout).contains("support: not signed in"));
    store.close().await;
}

#[tokio::test]
async fn device_login_failures_say_what_to_do() {
    let (stack, support) = support_mailbox();
    let server = AuthServer::get(stack);
    let id = client(&server, "s3cret", json!({})).await;
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailroom.toml");
    let write = |secret: &str| {
        let text = oauth_toml(stack, &support, &db, &id, secret, &support.address);
        std::fs::write(&config, text).unwrap();
    };

    write("wrong-secret");
    let (code, out, err) = device_login(&config, |_| async {}).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("mailbox.oauth2.client_secret"),
        "names the key: {err}"
    );

    write("s3cret");
    let deny = |user_code: String| {
        let server = server.clone();
        async move {
            server
                .post(
                    "/admin/approve",
                    json!({"user_code": user_code, "deny": true}),
                    false,
                )
                .await;
        }
    };
    let (code, _, err) = device_login(&config, deny).await;
    assert_eq!(code, 1);
    assert!(err.contains("declined"), "{err}");

    let expire = |user_code: String| {
        let server = server.clone();
        async move {
            server
                .post(
                    "/admin/expire_device",
                    json!({"user_code": user_code}),
                    false,
                )
                .await;
        }
    };
    let (code, _, err) = device_login(&config, expire).await;
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");

    // A permission withheld: the server grants less than was asked.
    let account = support.address.clone();
    let withhold = |user_code: String| {
        let server = server.clone();
        async move {
            server
                .post(
                    "/admin/approve",
                    json!({"user_code": user_code, "account": account, "scope": "offline_access"}),
                    false,
                )
                .await;
        }
    };
    let (code, _, err) = device_login(&config, withhold).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("did not grant mail") && err.contains("mailbox.oauth2.scopes"),
        "names the scope and the key: {err}"
    );
    let store = db.store().await;
    assert_eq!(
        store
            .grant(&MailboxName::parse("support").unwrap())
            .await
            .unwrap(),
        None
    );
    store.close().await;
}

/// A grant minted on the server, stored as `auth login` would.
async fn sign_in(
    server: &AuthServer,
    settings: &Settings,
    store: &dyn TicketStore,
    client_id: &str,
    account: &str,
) {
    let t = server
        .post(
            "/admin/issue",
            json!({"client_id": client_id, "account": account, "scope": "mail offline_access"}),
            false,
        )
        .await;
    let tokens: Tokens = serde_json::from_value(t).expect("tokens");
    store_sign_in(
        store,
        settings.secrets.seal_key.as_ref(),
        &settings.mailboxes[0],
        &tokens,
    )
    .await
    .expect("stored");
}

fn token_of(login: &Login) -> String {
    match login {
        Login::Bearer { token, .. } => token.expose().to_owned(),
        Login::Password { .. } => panic!("a password login"),
    }
}

async fn refresh_log(stack: &Stack, client_id: &str) -> Vec<Value> {
    let url = format!("{}/admin/log?client_id={client_id}", stack.oauth_url());
    let text = reqwest::get(url)
        .await
        .expect("log")
        .text()
        .await
        .expect("body");
    let log: Value = serde_json::from_str(&text).expect("json");
    log.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["grant_type"] == "refresh_token")
        .collect()
}

#[tokio::test]
async fn tokens_refresh_ahead_rotate_and_a_revocation_is_told_once_then_recovered() {
    let (stack, support) = support_mailbox();
    let server = AuthServer::get(stack);
    let id = client(
        &server,
        "s3cret",
        json!({"access_ttl": 4, "rotate_refresh": true}),
    )
    .await;
    let db = TestDb::sqlite();
    let text = oauth_toml(stack, &support, &db, &id, "s3cret", &support.address);
    let settings = Settings::parse(&text, &|_| None).expect("config");
    let store: Arc<dyn TicketStore> = Arc::new(db.store().await);
    let metrics = Arc::new(Metrics::new());
    let rooms = vec![(Platform::Matrix, "!support-room".to_owned())];
    let login = Arc::new(
        OAuthLogin::new(
            &settings.mailboxes[0],
            settings.secrets.seal_key.clone(),
            store.clone(),
            rooms,
            metrics.clone(),
        )
        .expect("an oauth2 mailbox"),
    );
    let name = MailboxName::parse("support").unwrap();
    assert!(matches!(
        login.login().await,
        Err(LoginError::NoGrant { .. })
    ));

    sign_in(&server, &settings, store.as_ref(), &id, &support.address).await;
    let first = token_of(&login.login().await.expect("the stored token"));
    assert!(
        refresh_log(stack, &id).await.is_empty(),
        "a fresh token needs no refresh"
    );
    let old_refresh = store.grant(&name).await.unwrap().unwrap().refresh_token;

    // The refresher renews it ahead of expiry (half of 4 s), rotating the refresh token.
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(mailroom::bridge::oauth::keep_fresh(
        login.clone(),
        cancel.clone(),
    ));
    let log = wait_for("a refresh", Duration::from_secs(10), || async {
        let log = refresh_log(stack, &id).await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log[0]["status"], 200, "{log:?}");
    let second = token_of(&login.login().await.expect("a token"));
    assert_ne!(first, second, "a new access token");
    let stored = store.grant(&name).await.unwrap().unwrap();
    assert_ne!(
        stored.refresh_token, old_refresh,
        "the rotated refresh token is stored"
    );
    let key = SealKey::parse(KEY).unwrap();
    let old = key.open(&old_refresh, "support").unwrap();
    let tc = TokenClient::new(settings.mailboxes[0].oauth2.as_ref().unwrap());
    assert!(
        tc.refresh(&old).await.is_err(),
        "the old refresh token is dead"
    );
    wait_for("a second refresh", Duration::from_secs(10), || async {
        let log = refresh_log(stack, &id).await;
        // The test's own call with the dead token is the one 400.
        (log.iter().filter(|e| e["status"] == 200).count() >= 2).then_some(())
    })
    .await;
    let active = server
        .post(
            "/introspect",
            json!({"token": token_of(&login.login().await.unwrap())}),
            true,
        )
        .await;
    assert_eq!(active["active"], true, "the handed-out token is live");

    // Revoked: refused, the room told once however often it is asked.
    server
        .post("/admin/revoke", json!({"account": support.address}), false)
        .await;
    let current = login.login().await.unwrap();
    login.rejected(&current).await;
    for _ in 0..3 {
        assert!(matches!(
            login.login().await,
            Err(LoginError::Refused { .. })
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notices: Vec<String> = store
        .jobs(&[JobState::Pending])
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| match j.spec {
            JobSpec::ChatRoomNotice { room, text, .. } if room == "!support-room" => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert!(
        notices[0].contains("mailroom auth login --mailbox support"),
        "{}",
        notices[0]
    );
    let refused = store.grant(&name).await.unwrap().unwrap();
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("invalid_grant"),
        "{refused:?}"
    );

    // A new sign-in: the same source logs in again, no restart.
    sign_in(&server, &settings, store.as_ref(), &id, &support.address).await;
    let back = wait_for("recovery", Duration::from_secs(10), || async {
        login.login().await.ok()
    })
    .await;
    let active = server
        .post("/introspect", json!({"token": token_of(&back)}), true)
        .await;
    assert_eq!(active["active"], true);
    cancel.cancel();
    let _ = task.await;

    // Refresh latency against the local server.
    let grant = store.grant(&name).await.unwrap().unwrap();
    let mut refresh = key.open(&grant.refresh_token, "support").unwrap();
    let mut took = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let t = tc.refresh(&refresh).await.expect("refresh");
        took.push(started.elapsed());
        refresh = t.refresh_token.unwrap_or(refresh);
    }
    took.sort();
    println!(
        "refresh latency over {} calls: p50 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// A counter of `/metrics` text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The whole daemon on an OAuth2 mailbox, wired by `App::new` as `mailroom
/// run` wires it: ingest (INBOX and the Sent watcher) and replies log in
/// with the stored grant's tokens; the refresher renews and rotates the
/// token several times while both IDLE sessions stay up (no reconnect);
/// after a revocation a reply fails for good with the fix in its error and
/// the grant is refused once; a new sign-in lets the next reply out, no
/// restart.
#[tokio::test]
async fn an_oauth2_mailbox_runs_the_daemon_across_refreshes_a_revocation_and_a_new_sign_in() {
    use mailroom::bridge::reply::queue_reply;
    let (stack, support, customer) = support_and_customer();
    let server = AuthServer::get(stack);
    let id = client(
        &server,
        "s3cret",
        json!({"access_ttl": 6, "rotate_refresh": true}),
    )
    .await;
    let db = TestDb::sqlite();
    let text = oauth_toml(stack, &support, &db, &id, "s3cret", &support.address);
    let settings = Settings::parse(&text, &|_| None).expect("config");
    let store = Arc::new(db.store().await);
    sign_in(&server, &settings, store.as_ref(), &id, &support.address).await;
    let app =
        mailroom::bridge::App::new(settings, store.clone() as Arc<dyn TicketStore>, Vec::new());
    let app = start_app(app, store);
    let writer = Writer::new(stack, &support, &customer.address);
    writer
        .writes("oauth-e2e-1@example.net", "Token please", "Hi")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;

    // The token is renewed (every 3 s: half its 6 s life) while the
    // sessions IDLE; mail still arrives on them, nothing reconnects.
    let renewing = Instant::now();
    wait_for("three refreshes", Duration::from_secs(30), || async {
        let ok = refresh_log(stack, &id)
            .await
            .iter()
            .filter(|e| e["status"] == 200)
            .count();
        (ok >= 3).then_some(())
    })
    .await;
    let sent = Instant::now();
    writer
        .writes("oauth-e2e-2@example.net", "After three refreshes", "Hi")
        .await;
    wait_tickets(app.store.as_ref(), 2).await;
    let latency = sent.elapsed();
    let metrics = app.app.metrics.encode();
    let reconnects = metric(
        &metrics,
        "mailroom_imap_reconnects_total{mailbox=\"support\"}",
    );
    println!(
        "OAuth2 daemon: 3 refreshes in {:?} while IDLE; mail → ticket after them {latency:?}; IMAP reconnects {reconnects}",
        renewing.elapsed()
    );
    assert_eq!(reconnects, 0.0, "{metrics}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");

    // A reply goes out over SMTP with the current token.
    let ticket = first_ticket(app.store.as_ref()).await;
    let reply =
        |body: &'static str| reply_request(ticket, "@alice:example.com", Some("Alice"), body);
    queue_reply(&app.app, reply("Signed in with a token."))
        .await
        .expect("queued");
    wait_for("the first reply", Duration::from_secs(20), || async {
        (fetch_all(stack, &customer, "INBOX").await.len() == 1).then_some(())
    })
    .await;

    // Revoked at the provider: the refresher's next call is refused, and a
    // reply fails for good, naming the fix; nothing is sent.
    server
        .post("/admin/revoke", json!({"account": support.address}), false)
        .await;
    let name = MailboxName::parse("support").unwrap();
    wait_for("the refusal recorded", Duration::from_secs(15), || async {
        let grant = app.store.grant(&name).await.ok().flatten()?;
        grant
            .last_error
            .filter(|e| e.contains("invalid_grant"))
            .map(|_| ())
    })
    .await;
    queue_reply(&app.app, reply("This one cannot leave."))
        .await
        .expect("queued");
    let failed = wait_for("the reply failed", Duration::from_secs(20), || async {
        app.store
            .jobs(&[JobState::Failed])
            .await
            .ok()?
            .into_iter()
            .find(|j| j.spec.kind() == "send_reply")
    })
    .await;
    let error = failed.last_error.unwrap_or_default();
    assert!(
        error.contains("mailroom auth login --mailbox support"),
        "{error}"
    );

    // A new sign-in: the next reply leaves, no restart.
    sign_in(
        &server,
        &mailroom::config::Settings::parse(&text, &|_| None).expect("config"),
        app.store.as_ref(),
        &id,
        &support.address,
    )
    .await;
    queue_reply(&app.app, reply("Signed in again."))
        .await
        .expect("queued");
    let inbox = wait_for(
        "the reply after the new sign-in",
        Duration::from_secs(20),
        || async {
            let all = fetch_all(stack, &customer, "INBOX").await;
            (all.len() >= 2).then_some(all)
        },
    )
    .await;
    assert_eq!(inbox.len(), 2, "the refused reply never left");
    assert!(String::from_utf8_lossy(&inbox[1].raw).contains("Signed in again."));
    app.stop().await;
    db.cleanup().await;
}

/// `mailroom run` at `MAILROOM_LOG=trace` on an OAuth2 mailbox, through
/// logins over IMAP (INBOX and Sent) and SMTP and two refreshes with
/// rotation: no access or refresh token (the server's `at-…`/`rt-…`, any of
/// them, not only the last), no SASL initial response, no client secret and
/// no sealing key reaches the log.
#[tokio::test]
async fn oauth_tokens_never_reach_the_logs_even_at_trace() {
    use base64::Engine;
    let (stack, support, customer) = support_and_customer();
    let server = AuthServer::get(stack);
    let secret = format!("client-S3CRET-{}", random_hex(8));
    let id = client(
        &server,
        &secret,
        json!({"access_ttl": 6, "rotate_refresh": true}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let text = oauth_toml(stack, &support, &db, &id, &secret, &support.address);
    let config = dir.path().join("mailroom.toml");
    std::fs::write(&config, &text).unwrap();
    let settings = Settings::parse(&text, &|_| None).expect("config");
    let store = db.store().await;
    sign_in(&server, &settings, &store, &id, &support.address).await;

    let log_path = dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = mailroom(&config, &["run"])
        .env("MAILROOM_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mailroom run starts");
    let writer = Writer::new(stack, &support, &customer.address);
    writer
        .writes("oauth-trace-1@example.net", "Tokens stay secret", "Hi")
        .await;
    wait_tickets(&store, 1).await;
    wait_for("two refreshes", Duration::from_secs(30), || async {
        let ok = refresh_log(stack, &id)
            .await
            .iter()
            .filter(|e| e["status"] == 200)
            .count();
        (ok >= 2).then_some(())
    })
    .await;
    let out = mailroom(
        &config,
        &[
            "tickets",
            "reply",
            "1",
            "--as",
            "cli:alice",
            "--message",
            "Noted.",
        ],
    )
    .output()
    .expect("mailroom tickets reply");
    assert_success(&out, "mailroom tickets reply");
    wait_for(
        "the reply at the customer",
        Duration::from_secs(30),
        || async { (!fetch_all(stack, &customer, "INBOX").await.is_empty()).then_some(()) },
    )
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    store.close().await;

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("access token refreshed") && log.contains("TRACE"),
        "the log is at trace and saw the refreshes: {} bytes",
        log.len()
    );
    let token = regex::Regex::new(r"\b(at|rt)-[A-Za-z0-9_-]{32}").unwrap();
    assert!(
        token.find(&log).is_none(),
        "a token reached the log: {:?}",
        token
            .find(&log)
            .map(|m| m.as_str().get(..8).unwrap_or_default().to_owned())
    );
    assert!(!log.contains(&secret), "the client secret reached the log");
    assert!(!log.contains(KEY), "the sealing key reached the log");
    // The SASL initial responses, base64 as sent, by their fixed prefix.
    let b64 = |s: &str| {
        let whole = s.len() / 3 * 3;
        base64::engine::general_purpose::STANDARD.encode(&s.as_bytes()[..whole])
    };
    for prefix in [
        format!("user={}\x01auth=Bearer ", support.address),
        format!("n,a={},", support.address),
    ] {
        assert!(
            !log.contains(&b64(&prefix)),
            "a SASL initial response reached the log: {prefix:?}"
        );
    }
    db.cleanup().await;
}

/// RFC 8628 §3.5: told `slow_down` (the server wants polls 3 s apart though
/// it announced 1 s), `auth login` says so, adds 5 s and still signs in —
/// one `slow_down`, never a second.
#[tokio::test]
async fn device_login_slows_down_when_told() {
    let (stack, support) = support_mailbox();
    let server = AuthServer::get(stack);
    let id = client(
        &server,
        "s3cret",
        json!({"device_interval": 1, "device_min_interval": 3}),
    )
    .await;
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailroom.toml");
    let text = oauth_toml(stack, &support, &db, &id, "s3cret", &support.address);
    std::fs::write(&config, text).unwrap();
    let account = support.address.clone();
    let approve_late = |user_code: String| {
        let server = server.clone();
        async move {
            // After the second poll (1 s, then 2 s: too soon), so the
            // sign-in has been told to slow down before it can succeed.
            tokio::time::sleep(Duration::from_millis(2600)).await;
            server
                .post(
                    "/admin/approve",
                    json!({"user_code": user_code, "account": account}),
                    false,
                )
                .await;
        }
    };
    let started = Instant::now();
    let (code, out, err) = device_login(&config, approve_late).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("asked to poll less often; now every 6 s"),
        "{out}"
    );
    let url = format!("{}/admin/log?client_id={id}", stack.oauth_url());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let log: Value = serde_json::from_str(&text).unwrap();
    let errors: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["error"].as_str())
        .collect();
    assert_eq!(
        errors,
        ["authorization_pending", "slow_down"],
        "one pending, one slow_down, then the tokens"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "waited 1 + 1 + 6 s"
    );
    let store = db.store().await;
    assert!(
        store
            .grant(&MailboxName::parse("support").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;
}

/// Two processes on one PostgreSQL (replicas, each its own pool) keeping
/// one grant fresh, at a provider that rotates refresh tokens: one refresh
/// at a time across them, the other takes the token it stored. Spent twice,
/// a rotated refresh token is refused and the grant taken for revoked.
#[tokio::test]
async fn replicas_refresh_a_rotating_grant_one_at_a_time() {
    let (stack, support) = support_mailbox();
    let server = AuthServer::get(stack);
    let id = client(
        &server,
        "s3cret",
        json!({"access_ttl": 4, "rotate_refresh": true}),
    )
    .await;
    let db = TestDb::postgres().await;
    let text = oauth_toml(stack, &support, &db, &id, "s3cret", &support.address);
    let settings = Settings::parse(&text, &|_| None).expect("config");
    let one: Arc<dyn TicketStore> = Arc::new(db.store().await);
    let two: Arc<dyn TicketStore> = Arc::new(db.store().await);
    let source = |store: Arc<dyn TicketStore>| {
        Arc::new(
            OAuthLogin::new(
                &settings.mailboxes[0],
                settings.secrets.seal_key.clone(),
                store,
                Vec::new(),
                Arc::new(Metrics::new()),
            )
            .expect("an oauth2 mailbox"),
        )
    };
    let (a, b) = (source(one.clone()), source(two.clone()));
    sign_in(&server, &settings, one.as_ref(), &id, &support.address).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = [a.clone(), b.clone()]
        .map(|login| tokio::spawn(mailroom::bridge::oauth::keep_fresh(login, cancel.clone())));
    // Over two token lifetimes, each renewed at half its life.
    tokio::time::sleep(Duration::from_secs(9)).await;
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let log = refresh_log(stack, &id).await;
    assert!(
        log.iter().all(|e| e["status"] == 200),
        "a refresh token was spent twice: {log:#?}"
    );
    assert!(
        (3..=7).contains(&log.len()),
        "one refresh per renewal, not one per process: {log:#?}"
    );
    let name = MailboxName::parse("support").unwrap();
    let grant = one.grant(&name).await.unwrap().unwrap();
    assert!(grant.refused_told_at_ms.is_none(), "{grant:?}");
    let (ta, tb) = (
        token_of(&a.login().await.expect("a token")),
        token_of(&b.login().await.expect("a token")),
    );
    assert_eq!(ta, tb, "both hand out the token stored last");
    let active = server.post("/introspect", json!({"token": ta}), true).await;
    assert_eq!(active["active"], true);
    db.cleanup().await;
}
