//! Logging in with OAuth2 access tokens (SASL XOAUTH2 and OAUTHBEARER)
//! against the stack's Dovecot and Postfix, which check every token with
//! the stack's authorization server; the tokens are minted there too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::Address;
use lettre::address::Envelope;
use mailroom::mail::auth::{Login, LoginError, LoginSource, SaslPreference};
use mailroom::mail::imap::{self, ImapError};
use mailroom::mail::settings::{SmtpSettings, TlsMode};
use mailroom::mail::smtp::{Mailer, SendError, SmtpMailer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::*;

/// The stack's OAuth2 authorization server, through its admin API.
#[derive(Clone)]
pub(crate) struct AuthServer {
    base: String,
    http: reqwest::Client,
}

impl AuthServer {
    pub(crate) fn get(stack: &Stack) -> AuthServer {
        AuthServer {
            base: stack.oauth_url(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Value, form: bool) -> Value {
        let req = self.http.post(format!("{}{path}", self.base));
        let req = if form {
            let pairs: Vec<(String, String)> = body
                .as_object()
                .expect("a form is an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let encoded: String = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B").replace('=', "%3D")))
                .collect::<Vec<_>>()
                .join("&");
            req.header("content-type", "application/x-www-form-urlencoded")
                .body(encoded)
        } else {
            req.header("content-type", "application/json")
                .body(body.to_string())
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }

    /// A freshly registered client.
    async fn client(&self) -> String {
        let id = format!("sasl-{}", random_hex(6));
        self.post(
            "/admin/clients",
            json!({"client_id": id, "client_secret": "s3cret"}),
            false,
        )
        .await;
        id
    }

    /// An access token of a new grant of `account` opening `mailbox`.
    async fn issue(&self, client: &str, account: &str, mailbox: &str) -> String {
        let t = self
            .post(
                "/admin/issue",
                json!({"client_id": client, "account": account, "mailbox": mailbox}),
                false,
            )
            .await;
        t["access_token"].as_str().expect("access_token").to_owned()
    }

    /// The token is expired now: introspection calls it inactive.
    async fn expire(&self, token: &str) {
        let n = self
            .post("/admin/expire", json!({"access_token": token}), false)
            .await;
        assert_eq!(n["expired"], 1, "{n}");
    }

    async fn active(&self, token: &str) -> bool {
        self.post("/introspect", json!({"token": token}), true)
            .await["active"]
            == true
    }
}

/// A grant's tokens as a sign-in source would hand them out, minted by the
/// authorization server: the current token until the server refuses it,
/// then a new one.
struct ServerTokens {
    server: AuthServer,
    client: String,
    account: String,
    /// The mailbox the grants open.
    grant_mailbox: String,
    /// The SASL user: the mailbox to log in to.
    user: String,
    mechanism: SaslPreference,
    /// Every new token is expired at once: a grant the server never accepts.
    refuse_all: bool,
    current: Mutex<Option<String>>,
    issued: AtomicUsize,
    rejected: Mutex<Vec<String>>,
}

impl ServerTokens {
    async fn new(stack: &Stack, account: &str, mailbox: &str, mechanism: SaslPreference) -> Self {
        let server = AuthServer::get(stack);
        let client = server.client().await;
        ServerTokens {
            server,
            client,
            account: account.to_owned(),
            grant_mailbox: mailbox.to_owned(),
            user: mailbox.to_owned(),
            mechanism,
            refuse_all: false,
            current: Mutex::new(None),
            issued: AtomicUsize::new(0),
            rejected: Mutex::new(Vec::new()),
        }
    }

    fn current(&self) -> Option<String> {
        self.current.lock().expect("lock").clone()
    }

    fn rejected(&self) -> Vec<String> {
        self.rejected.lock().expect("lock").clone()
    }

    fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LoginSource for ServerTokens {
    async fn login(&self) -> Result<Login, LoginError> {
        let token = match self.current() {
            Some(t) => t,
            None => {
                let t = self
                    .server
                    .issue(&self.client, &self.account, &self.grant_mailbox)
                    .await;
                self.issued.fetch_add(1, Ordering::SeqCst);
                if self.refuse_all {
                    self.server.expire(&t).await;
                }
                *self.current.lock().expect("lock") = Some(t.clone());
                t
            }
        };
        Ok(Login::Bearer {
            user: self.user.clone(),
            token: mailroom::domain::settings::Secret::new(token),
            mechanism: self.mechanism,
        })
    }

    async fn rejected(&self, login: &Login) {
        let Login::Bearer { token, .. } = login else {
            panic!("a password login was rejected")
        };
        self.rejected
            .lock()
            .expect("lock")
            .push(token.expose().to_owned());
        let mut current = self.current.lock().expect("lock");
        if current.as_deref() == Some(token.expose()) {
            *current = None;
        }
    }
}

const MECHANISMS: [SaslPreference; 3] = [
    SaslPreference::Auto,
    SaslPreference::Oauthbearer,
    SaslPreference::Xoauth2,
];

/// Messages in `user`'s INBOX as a session logged in with `login` sees them.
async fn inbox_count(stack: &Stack, user: &User, login: &dyn LoginSource) -> u32 {
    let settings = stack.imap_settings(user, "INBOX");
    let mut s = imap::connect(&settings, login)
        .await
        .unwrap_or_else(|e| panic!("IMAP login: {e}"));
    let state = imap::examine(&mut s, "INBOX").await.expect("EXAMINE");
    imap::logout(s).await;
    state.exists
}

#[tokio::test]
async fn imap_logs_in_with_a_token_over_each_mechanism() {
    let (stack, support) = support_mailbox();
    Writer::new(stack, &support, "carol@example.net")
        .writes("sasl-imap@example.net", "Hello", "Hi")
        .await;
    for mechanism in MECHANISMS {
        let tokens = ServerTokens::new(stack, &support.address, &support.address, mechanism).await;
        assert_eq!(
            inbox_count(stack, &support, &tokens).await,
            1,
            "{mechanism:?}"
        );
        assert_eq!(tokens.issued(), 1, "{mechanism:?}");
        assert!(tokens.rejected().is_empty(), "{mechanism:?}");
    }
}

/// A Microsoft 365 delegate: alice signs in, the grant opens the shared
/// mailbox, and the login names the shared mailbox.
#[tokio::test]
async fn a_delegate_token_opens_the_shared_mailbox() {
    let (stack, support) = support_mailbox();
    let alice = stack.user("alice", "example.com");
    Writer::new(stack, &support, "carol@example.net")
        .writes("sasl-delegate@example.net", "Hello", "Hi")
        .await;
    for mechanism in [SaslPreference::Oauthbearer, SaslPreference::Xoauth2] {
        let tokens = ServerTokens::new(stack, &alice.address, &support.address, mechanism).await;
        assert_eq!(
            inbox_count(stack, &support, &tokens).await,
            1,
            "{mechanism:?}"
        );
    }
    // A grant for alice's own mailbox does not open the shared one, even
    // when fresh.
    let mut own =
        ServerTokens::new(stack, &alice.address, &alice.address, SaslPreference::Auto).await;
    own.user = support.address.clone();
    let settings = stack.imap_settings(&support, "INBOX");
    let err = match imap::connect(&settings, &own).await {
        Ok(_) => panic!("a grant for alice's own mailbox opened support's"),
        Err(e) => e,
    };
    assert!(matches!(err, ImapError::TokenRefused { .. }), "{err}");
    assert_eq!(own.issued(), 2);
}

#[tokio::test]
async fn an_expired_token_is_rejected_then_a_fresh_one_logs_in() {
    let (stack, support) = support_mailbox();
    for mechanism in [SaslPreference::Oauthbearer, SaslPreference::Xoauth2] {
        let tokens = ServerTokens::new(stack, &support.address, &support.address, mechanism).await;
        let old = tokens
            .server
            .issue(&tokens.client, &support.address, &support.address)
            .await;
        tokens.server.expire(&old).await;
        *tokens.current.lock().expect("lock") = Some(old.clone());
        assert_eq!(inbox_count(stack, &support, &tokens).await, 0);
        assert_eq!(tokens.rejected(), vec![old.clone()], "{mechanism:?}");
        assert_eq!(tokens.issued(), 1, "one fresh token, {mechanism:?}");
        assert_ne!(tokens.current(), Some(old));
    }
}

#[tokio::test]
async fn a_token_refused_twice_is_a_permanent_error_that_needs_a_sign_in() {
    let (stack, support) = support_mailbox();
    for (mechanism, name) in [
        (SaslPreference::Oauthbearer, "OAUTHBEARER"),
        (SaslPreference::Xoauth2, "XOAUTH2"),
    ] {
        let mut tokens =
            ServerTokens::new(stack, &support.address, &support.address, mechanism).await;
        tokens.refuse_all = true;
        let settings = stack.imap_settings(&support, "INBOX");
        let started = Instant::now();
        let err = match imap::connect(&settings, &tokens).await {
            Ok(_) => panic!("logged in with an expired token"),
            Err(e) => e,
        };
        assert!(matches!(err, ImapError::TokenRefused { .. }), "{err}");
        assert!(!err.is_transient() && err.needs_sign_in(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains(&support.address), "{msg}");
        assert!(msg.contains("mailroom auth login"), "{msg}");
        assert_eq!(tokens.rejected().len(), 2, "{mechanism:?}");
        assert_eq!(tokens.issued(), 2, "exactly one retry, {mechanism:?}");
        // Dovecot delays a failed authentication; two tries, no more.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

/// A tiny IMAP server on loopback offering `caps` (greeting, CAPABILITY,
/// LOGOUT) for `connections` connections, one after the other. It refuses
/// every AUTHENTICATE the way Dovecot does: it asks for the initial
/// response (`+`), sends a failure challenge, reads the client's answer
/// and says NO. It returns what the client sent: commands, then each SASL
/// line base64-decoded.
async fn greeter(
    caps: &'static str,
    connections: usize,
) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..connections {
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
                .await
                .expect("a client comes")
                .expect("accept");
            let (read, mut write) = tcp.into_split();
            let mut lines = BufReader::new(read).lines();
            let greeting = format!("* OK [CAPABILITY {caps}] greeter ready\r\n");
            write.write_all(greeting.as_bytes()).await.expect("greet");
            let mut next = async || {
                tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            };
            while let Some(line) = next().await {
                let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
                let tag = tag.to_owned();
                seen.push(command.to_owned());
                let answer = match command.to_ascii_uppercase().as_str() {
                    "CAPABILITY" => {
                        format!("* CAPABILITY {caps}\r\n{tag} OK CAPABILITY done\r\n")
                    }
                    "LOGOUT" => format!("* BYE bye\r\n{tag} OK LOGOUT done\r\n"),
                    c if c.starts_with("AUTHENTICATE ") => {
                        let sasl_ir = command.split(' ').count() > 2;
                        let mut exchange = vec![];
                        if !sasl_ir {
                            write.write_all(b"+ \r\n").await.expect("continue");
                            exchange.push(next().await.unwrap_or_default());
                        }
                        let failure = b64.encode(
                            br#"{"status":"invalid_token","schemes":"bearer","scope":"mail"}"#,
                        );
                        write
                            .write_all(format!("+ {failure}\r\n").as_bytes())
                            .await
                            .expect("challenge");
                        exchange.push(next().await.unwrap_or_default());
                        for l in exchange {
                            let bytes = b64.decode(l.trim()).unwrap_or_else(|_| l.into_bytes());
                            seen.push(String::from_utf8_lossy(&bytes).into_owned());
                        }
                        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                    }
                    _ => format!("{tag} BAD not here\r\n"),
                };
                if write.write_all(answer.as_bytes()).await.is_err() || answer.contains(" NO ") {
                    break;
                }
            }
        }
        seen
    });
    (port, task)
}

/// Without SASL-IR the initial response goes out when the server asks for
/// it; a failure challenge is answered with OAUTHBEARER's dummy `^A`, and
/// its status becomes the reason; the refusal is retried once.
#[tokio::test]
async fn without_sasl_ir_the_exchange_follows_rfc7628() {
    let (stack, support) = support_mailbox();
    let (port, greeter) = greeter("IMAP4rev1 AUTH=PLAIN AUTH=OAUTHBEARER", 2).await;
    let tokens = ServerTokens::new(
        stack,
        &support.address,
        &support.address,
        SaslPreference::Auto,
    )
    .await;
    let mut settings = stack.imap_settings(&support, "INBOX");
    settings.port = port;
    let err = match imap::connect(&settings, &tokens).await {
        Ok(_) => panic!("the greeter let a client in"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, ImapError::TokenRefused { .. }), "{msg}");
    assert!(
        msg.contains("status invalid_token, scope needed: mail"),
        "{msg}"
    );
    let rejected = tokens.rejected();
    assert_eq!(rejected.len(), 2);
    let seen = greeter.await.expect("greeter");
    let one = |token: &str| {
        vec![
            "CAPABILITY".to_owned(),
            "AUTHENTICATE OAUTHBEARER".to_owned(),
            format!(
                "n,a={},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01",
                support.address
            ),
            "\x01".to_owned(),
        ]
    };
    assert_eq!(seen, [one(&rejected[0]), one(&rejected[1])].concat());
}

#[tokio::test]
async fn a_server_without_the_mechanism_is_named_with_the_config_key() {
    let (stack, support) = support_mailbox();
    for (mechanism, wanted) in [
        (SaslPreference::Xoauth2, "no XOAUTH2"),
        (SaslPreference::Auto, "neither OAUTHBEARER nor XOAUTH2"),
    ] {
        let (port, greeter) = greeter("IMAP4rev1 SASL-IR AUTH=PLAIN", 1).await;
        let tokens = ServerTokens::new(stack, &support.address, &support.address, mechanism).await;
        let mut settings = stack.imap_settings(&support, "INBOX");
        settings.port = port;
        let err = match imap::connect(&settings, &tokens).await {
            Ok(_) => panic!("logged in without the mechanism"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(matches!(err, ImapError::Mechanism { .. }), "{msg}");
        assert!(!err.is_transient(), "{msg}");
        assert!(msg.contains(wanted), "{msg}");
        assert!(msg.contains("[PLAIN]"), "{msg}");
        assert!(msg.contains("mailbox.oauth2.mechanism"), "{msg}");
        assert!(tokens.rejected().is_empty());
        let seen = greeter.await.expect("greeter");
        assert_eq!(seen, vec!["CAPABILITY"], "no AUTHENTICATE was tried");
    }
}

fn smtp_settings(stack: &Stack) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: stack.smtp_port,
        tls: TlsMode::None,
        username: None,
        password: None,
        sent_folder: None,
        ca_file: None,
        timeout: Duration::from_secs(10),
    }
}

async fn send(mailer: &SmtpMailer, from: &User, to: &User, id: &str) -> Result<(), SendError> {
    let envelope = Envelope::new(
        Some(from.address.parse::<Address>().expect("address")),
        vec![to.address.parse::<Address>().expect("address")],
    )
    .expect("envelope");
    let raw = customer_mail(&from.address, &to.address, id, "Token mail", "Hi", None);
    mailer.send(&envelope, &raw).await
}

#[tokio::test]
async fn smtp_sends_with_a_token_over_each_mechanism() {
    let (stack, support, customer) = support_and_customer();
    for (n, mechanism) in MECHANISMS.into_iter().enumerate() {
        let tokens =
            Arc::new(ServerTokens::new(stack, &support.address, &support.address, mechanism).await);
        let mailer = SmtpMailer::new(smtp_settings(stack), Some(tokens.clone()));
        let id = format!("sasl-smtp-{n}@example.com");
        send(&mailer, &support, &customer, &id)
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(tokens.issued(), 1);
        assert!(tokens.rejected().is_empty());
        wait_for(
            &format!("{id} in the customer's INBOX"),
            Duration::from_secs(20),
            || async {
                fetch_all(stack, &customer, "INBOX")
                    .await
                    .iter()
                    .any(|f| String::from_utf8_lossy(&f.raw).contains(&id))
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn smtp_retries_a_refused_token_once_and_a_second_refusal_is_permanent() {
    let (stack, support, customer) = support_and_customer();
    for mechanism in [SaslPreference::Oauthbearer, SaslPreference::Xoauth2] {
        // Expired: rejected, a fresh one sends.
        let tokens =
            Arc::new(ServerTokens::new(stack, &support.address, &support.address, mechanism).await);
        let old = tokens
            .server
            .issue(&tokens.client, &support.address, &support.address)
            .await;
        tokens.server.expire(&old).await;
        *tokens.current.lock().expect("lock") = Some(old.clone());
        let mailer = SmtpMailer::new(smtp_settings(stack), Some(tokens.clone()));
        send(&mailer, &support, &customer, "sasl-smtp-retry@example.com")
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert_eq!(tokens.rejected(), vec![old], "{mechanism:?}");
        assert_eq!(tokens.issued(), 1);

        // Never accepted: permanent (nothing was sent, so not uncertain).
        let mut refused =
            ServerTokens::new(stack, &support.address, &support.address, mechanism).await;
        refused.refuse_all = true;
        let refused = Arc::new(refused);
        let mailer = SmtpMailer::new(smtp_settings(stack), Some(refused.clone()));
        let err = send(
            &mailer,
            &support,
            &customer,
            "sasl-smtp-refused@example.com",
        )
        .await
        .expect_err("sent with a refused token");
        let SendError::Permanent(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("refused the access token"), "{msg}");
        assert!(msg.contains("mailroom auth login"), "{msg}");
        assert_eq!(refused.rejected().len(), 2);
        assert_eq!(refused.issued(), 2);
    }
}

/// A tiny SMTP server on loopback whose EHLO offers `AUTH PLAIN LOGIN`
/// only; it answers QUIT and RSET, refuses anything else, and returns the
/// commands it got.
async fn smtp_greeter() -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("a client comes")
            .expect("accept");
        let (read, mut write) = tcp.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"220 greeter ESMTP\r\n")
            .await
            .expect("greet");
        let mut seen = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await
        {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            seen.push(verb.clone());
            let answer: &[u8] = match verb.as_str() {
                "EHLO" => b"250-greeter\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
                "QUIT" => b"221 bye\r\n",
                "RSET" => b"250 ok\r\n",
                _ => b"502 not here\r\n",
            };
            if write.write_all(answer).await.is_err() || verb == "QUIT" {
                break;
            }
        }
        seen
    });
    (port, task)
}

#[tokio::test]
async fn smtp_without_the_mechanism_is_named_with_the_config_key() {
    let (stack, support, customer) = support_and_customer();
    let (port, greeter) = smtp_greeter().await;
    let tokens = Arc::new(
        ServerTokens::new(
            stack,
            &support.address,
            &support.address,
            SaslPreference::Auto,
        )
        .await,
    );
    let mut settings = smtp_settings(stack);
    settings.port = port;
    let mailer = SmtpMailer::new(settings, Some(tokens.clone()));
    let err = send(&mailer, &support, &customer, "sasl-smtp-none@example.com")
        .await
        .expect_err("sent without a mechanism");
    let SendError::Permanent(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("neither OAUTHBEARER nor XOAUTH2"), "{msg}");
    assert!(msg.contains("[PLAIN LOGIN]"), "{msg}");
    assert!(msg.contains("mailbox.oauth2.mechanism"), "{msg}");
    assert!(tokens.rejected().is_empty());
    let seen = greeter.await.expect("greeter");
    assert!(!seen.iter().any(|v| v == "AUTH" || v == "MAIL"), "{seen:?}");
}

fn reconnects(text: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("mailroom_imap_reconnects_total{mailbox=\"support\"} ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Writes one mail and returns how long until its ticket exists.
async fn mail_to_ticket(
    writer: &Writer<'_>,
    store: &dyn mailroom::store::TicketStore,
    n: usize,
) -> Duration {
    let started = Instant::now();
    writer
        .writes(
            &format!("sasl-idle-{n}@example.net"),
            &format!("Mail {n}"),
            "Hi",
        )
        .await;
    wait_tickets(store, n).await;
    started.elapsed()
}

/// The daemon's own ingest loop logs in with a token, then the token
/// expires at the server while the session IDLEs: mail keeps arriving on
/// the same session, and nothing reconnects or asks for a new token.
#[tokio::test]
async fn a_token_expiring_during_idle_keeps_the_session() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let tokens = Arc::new(
        ServerTokens::new(
            stack,
            &support.address,
            &support.address,
            SaslPreference::Auto,
        )
        .await,
    );
    let store = Arc::new(db.store().await);
    let mut app = mailroom::bridge::App::new(
        config(stack, &support, &db, stack.smtp_port, ""),
        store.clone() as Arc<dyn mailroom::store::TicketStore>,
        Vec::new(),
    );
    for m in app.mailboxes.values_mut() {
        // The one IDLE session under test: no second (Sent) connection.
        m.settings.imap.watch_sent = false;
        m.login = tokens.clone();
    }
    let app = start_app(app, store);
    let writer = Writer::new(stack, &support, "carol@example.net");
    mail_to_ticket(&writer, app.store.as_ref(), 1).await;
    let token = tokens.current().expect("ingest logged in with a token");
    let mut before = Vec::new();
    for n in 2..=4 {
        before.push(mail_to_ticket(&writer, app.store.as_ref(), n).await);
    }
    tokens.server.expire(&token).await;
    assert!(
        !tokens.server.active(&token).await,
        "the token is dead at the server"
    );
    let mut after = Vec::new();
    for n in 5..=7 {
        after.push(mail_to_ticket(&writer, app.store.as_ref(), n).await);
    }
    let metrics = app.app.metrics.encode();
    println!(
        "mail → ticket over IDLE, token valid: {before:?}; after the token expired: {after:?}; reconnects: {}",
        reconnects(&metrics)
    );
    assert_eq!(reconnects(&metrics), 0.0, "{metrics}");
    assert_eq!(tokens.issued(), 1, "no new token was asked for");
    assert!(tokens.rejected().is_empty());
    assert!(
        after.iter().all(|d| *d < Duration::from_secs(5)),
        "IDLE still announces mail at once: {after:?}"
    );
    app.stop().await;
    db.cleanup().await;
}

/// A mailbox nobody has signed in for yet: no grant until `grant` is set,
/// then the server's tokens. Records when it was asked.
struct SignInLater {
    tokens: ServerTokens,
    granted: std::sync::atomic::AtomicBool,
    asked: Mutex<Vec<Instant>>,
}

#[async_trait]
impl LoginSource for SignInLater {
    async fn login(&self) -> Result<Login, LoginError> {
        self.asked.lock().expect("lock").push(Instant::now());
        if !self.granted.load(Ordering::SeqCst) {
            return Err(LoginError::NoGrant {
                mailbox: mailroom::domain::ids::MailboxName::parse("sales").expect("name"),
            });
        }
        self.tokens.login().await
    }

    async fn rejected(&self, login: &Login) {
        LoginSource::rejected(&self.tokens, login).await
    }
}

/// A mailbox without a sign-in waits (slowly, without asking for a token
/// again and again), says why in its health, leaves the other mailbox
/// alone, and starts once the grant exists.
#[tokio::test]
async fn a_mailbox_without_a_sign_in_waits_and_the_others_go_on() {
    let (stack, support) = support_mailbox();
    let sales = stack.user("sales", "example.com");
    let db = TestDb::sqlite();
    let text = format!(
        "{support_box}\n[[mailbox]]\nname = \"sales\"\naddress = \"{sales}\"\n\
         display_name = \"Sales\"\ninitial_sync = \"all\"\n  [mailbox.imap]\n  host = \"127.0.0.1\"\n  \
         port = {imap}\n  tls = \"none\"\n  password = \"unused\"\n  [mailbox.smtp]\n  \
         host = \"127.0.0.1\"\n  port = {smtp}\n  tls = \"none\"\n{outbox}\n",
        support_box = mailbox_section(stack, &support, &db, stack.smtp_port, ""),
        sales = sales.address,
        imap = stack.imap_port,
        smtp = stack.smtp_port,
        outbox = outbox_toml(""),
    );
    let mut settings = mailroom::config::Settings::parse(&text, &|_| None)
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"));
    // The INBOX connection's asks are timed: no second (Sent) connection.
    for m in &mut settings.mailboxes {
        m.imap.watch_sent = false;
    }
    let source = Arc::new(SignInLater {
        tokens: ServerTokens::new(stack, &sales.address, &sales.address, SaslPreference::Auto)
            .await,
        granted: false.into(),
        asked: Mutex::new(Vec::new()),
    });
    let store = Arc::new(db.store().await);
    let mut app = mailroom::bridge::App::new(
        settings,
        store.clone() as Arc<dyn mailroom::store::TicketStore>,
        Vec::new(),
    );
    let retry = Duration::from_secs(3);
    app.sign_in_retry = retry;
    let sales_name = mailroom::domain::ids::MailboxName::parse("sales").expect("name");
    app.mailboxes.get_mut(&sales_name).expect("sales").login = source.clone();
    let app = start_app(app, store);

    Writer::new(stack, &support, "carol@example.net")
        .writes("sasl-other@example.net", "For support", "Hi")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let error = wait_for(
        "sales reports its missing sign-in",
        Duration::from_secs(20),
        || async {
            app.app
                .health
                .report()
                .into_iter()
                .find(|r| r.mailbox == sales_name)
                .and_then(|r| r.last_error)
        },
    )
    .await;
    assert!(error.contains("no OAuth2 sign-in"), "{error}");
    assert!(
        error.contains("mailroom auth login --mailbox sales"),
        "{error}"
    );

    Writer::new(stack, &sales, "dave@example.net")
        .writes("sasl-sales@example.net", "For sales", "Hi")
        .await;
    source.granted.store(true, Ordering::SeqCst);
    wait_tickets(app.store.as_ref(), 2).await;
    let asked = source.asked.lock().expect("lock").clone();
    assert!(asked.len() >= 2, "{asked:?}");
    for pair in asked.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= retry - Duration::from_millis(50),
            "asked again after {gap:?}"
        );
    }
    app.stop().await;
    db.cleanup().await;
}
