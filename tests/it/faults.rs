//! The fault suite (issue #5, part 2): SMTP and database faults against the
//! real stack, each on SQLite and PostgreSQL, judged from the outside — the
//! customer's INBOX and the shared Sent folder over IMAP, the thread, the
//! audit log, the store.
//!
//! SMTP faults come from [`SmtpProxy`], an SMTP-aware proxy in front of the
//! stack's real Postfix: it forwards the conversation line by line and, for
//! the connections its script names, answers a command itself (a 4xx/5xx at
//! the greeting, RCPT, DATA or after the message) or holds back Postfix's
//! answer to the message. Postfix's configuration is never touched, so these
//! tests run alongside every other test that uses it.
//!
//! Each test prints `FAULT <scenario> <db> emails=… lost=… duplicated=…
//! recovery_ms=…` (run with `--nocapture`). Sizes are small by default;
//! `MAILROOM_FAULTS_EMAILS`, `MAILROOM_FAULTS_REPLIES`,
//! `MAILROOM_FAULTS_SMTP_4XX`, `MAILROOM_FAULTS_LOCK_SECS` and
//! `MAILROOM_FAULTS_KILL_SECS` make them longer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom::bridge::reply::{QueuedReply, queue_reply};
use mailroom::chat::ChatPlatform;
use mailroom::config::Settings;
use mailroom::domain::email::Direction;
use mailroom::domain::ids::{MailboxName, TicketId};
use mailroom::mail::parse::parse_email;
use mailroom::store::{EmailState, JobState, TicketFilter, TicketStore};
use tokio::sync::watch;

use crate::common::{
    Running, Stack, TestDb, User, append, audit_actions, customer_mail, fetch_all, mailbox_section,
    pg_admin_url, random_hex, reply_request, run_ok, start_with_chats, support_and_customer,
    wait_for,
};

mod postgres_terminated;
mod private_pg;
mod recording;
mod smtp_proxy;

pub(crate) use private_pg::PrivatePg;
pub(crate) use recording::RecordingChat;
use smtp_proxy::{Fault, SmtpProxy};

const WAIT: Duration = Duration::from_secs(60);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(
    scenario: &str,
    db: Db,
    emails: usize,
    lost: usize,
    duplicated: usize,
    recovery: Duration,
) {
    println!(
        "FAULT {scenario} {} emails={emails} lost={lost} duplicated={duplicated} recovery_ms={}",
        db.name(),
        recovery.as_millis()
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }

    async fn make(self) -> TestDb {
        match self {
            Db::Sqlite => TestDb::sqlite(),
            Db::Postgres => TestDb::postgres().await,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// Configuration text: the stack's mailbox sending through `smtp_port`,
/// optionally posting to a (recording) Matrix room.
pub(crate) fn config_text(
    stack: &Stack,
    support: &User,
    db: &TestDb,
    smtp_port: u16,
    chat: bool,
) -> String {
    let tail = if chat {
        "  timeout_secs = 5\n  [mailbox.chat]\n  matrix_room = \"!faults:localhost\"\n"
    } else {
        "  timeout_secs = 5\n"
    };
    let matrix = if chat {
        "[matrix]\nhomeserver = \"http://127.0.0.1:1\"\nuser_id = \"@mailroom:localhost\"\npassword_env = \"MAILROOM_FAULTS_UNUSED_MX\"\n"
    } else {
        ""
    };
    format!(
        "{}\n{matrix}[outbox]\nretry_initial_secs = 1\nretry_max_secs = 2\n",
        mailbox_section(stack, support, db, smtp_port, tail)
    )
}

pub(crate) fn parse(text: &str) -> Settings {
    // The Matrix password is never used: the recording chat stands in.
    Settings::parse(text, &|k| {
        (k == "MAILROOM_FAULTS_UNUSED_MX").then(|| "unused".to_owned())
    })
    .unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

async fn start_recording(settings: Settings, db: &TestDb) -> (Running, Arc<RecordingChat>) {
    let chat = Arc::new(RecordingChat::default());
    let run = start_with_chats(settings, db, vec![chat.clone() as Arc<dyn ChatPlatform>]).await;
    (run, chat)
}

pub(crate) fn mail(from: &str, to: &str, tag: &str, i: usize) -> (String, Vec<u8>) {
    let mid = format!("{tag}-{i}-{}@faults.example", random_hex(4));
    let raw = customer_mail(
        from,
        to,
        &mid,
        &format!("Fault {tag} case {i} {}", random_hex(3)),
        "Hello, this is about my order.",
        None,
    );
    (mid, raw)
}

/// Inbound Message-IDs per ticket, as the store has them.
async fn inbound_ids(store: &dyn TicketStore) -> Vec<(TicketId, String)> {
    let mut out = Vec::new();
    for t in store.list_tickets(&TicketFilter::default()).await.unwrap() {
        for e in store.emails(t.id).await.unwrap() {
            if e.direction == Direction::Inbound {
                out.push((t.id, e.message_id.as_str().to_owned()));
            }
        }
    }
    out
}

/// Waits until every expected Message-ID is stored; returns ticket by id.
pub(crate) async fn wait_ingested(
    store: &dyn TicketStore,
    expected: &[String],
) -> BTreeMap<String, TicketId> {
    let want: BTreeSet<&str> = expected.iter().map(|s| s.as_str()).collect();
    wait_for(&format!("{} emails stored", want.len()), WAIT, || async {
        let got = inbound_ids(store).await;
        let have: BTreeSet<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        want.is_subset(&have)
            .then(|| got.iter().map(|(t, m)| (m.clone(), *t)).collect())
    })
    .await
}

/// (lost, duplicated) Message-IDs against what was appended.
async fn lost_and_duplicated(store: &dyn TicketStore, expected: &[String]) -> (usize, usize) {
    let got = inbound_ids(store).await;
    let have: BTreeSet<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    let lost = expected
        .iter()
        .filter(|m| !have.contains(m.as_str()))
        .count();
    let tickets: BTreeSet<TicketId> = got.iter().map(|(t, _)| *t).collect();
    // Each email is its own ticket here (distinct senders or subjects).
    let duplicated = (got.len() - have.len()) + expected.len().saturating_sub(tickets.len());
    (lost, duplicated)
}

async fn reply(run: &Running, ticket: TicketId, text: &str) -> Result<QueuedReply, String> {
    queue_reply(
        &run.app,
        reply_request(ticket, "@alice:localhost", Some("Alice"), text),
    )
    .await
    .map_err(|e| e.to_string())
}

/// Waits until every reply is sent; their Message-IDs.
async fn wait_replies_sent(store: &dyn TicketStore, replies: &[QueuedReply]) -> Vec<String> {
    wait_for("every reply sent", WAIT, || async {
        for q in replies {
            if email_state(store, q.email_id).await != EmailState::Sent {
                return None;
            }
        }
        Some(())
    })
    .await;
    replies
        .iter()
        .map(|q| q.message_id.as_str().to_owned())
        .collect()
}

pub(crate) async fn email_state(store: &dyn TicketStore, email_id: i64) -> EmailState {
    store.outgoing(email_id).await.unwrap().unwrap().state
}

/// Waits until nothing is left to do in the outbox.
pub(crate) async fn wait_outbox_idle(store: &dyn TicketStore) {
    wait_for("the outbox to drain", WAIT, || async {
        store
            .jobs(&[JobState::Pending, JobState::InFlight])
            .await
            .ok()
            .filter(|j| j.is_empty())
            .map(|_| ())
    })
    .await;
}

/// How often each of `ids` is in a folder.
pub(crate) async fn copies(stack: &Stack, user: &User, folder: &str, ids: &[String]) -> Vec<usize> {
    let msgs = fetch_all(stack, user, folder).await;
    ids.iter()
        .map(|id| {
            msgs.iter()
                .filter(|m| parse_email(&m.raw).message_id.as_str() == id)
                .count()
        })
        .collect()
}

/// Waits until each of `ids` is in the folder at least once; returns the counts.
pub(crate) async fn wait_copies(
    stack: &Stack,
    user: &User,
    folder: &str,
    ids: &[String],
) -> Vec<usize> {
    wait_for(
        &format!("{} messages in {folder}", ids.len()),
        WAIT,
        || async {
            let c = copies(stack, user, folder, ids).await;
            c.iter().all(|n| *n >= 1).then_some(c)
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// 1. SMTP 4xx for a while, then OK

async fn smtp_4xx_then_ok(db_kind: Db) {
    let (stack, support, customer) = support_and_customer();
    let n = env_num("MAILROOM_FAULTS_REPLIES", 3) as usize;
    let faults = env_num("MAILROOM_FAULTS_SMTP_4XX", 8) as usize;
    // Every stage of the transaction, with the codes servers really use.
    let kinds = [
        Fault::Greeting(421),
        Fault::Rcpt(451),
        Fault::Data(452),
        Fault::EndOfData(451),
    ];
    let script: Vec<Fault> = (0..faults).map(|i| kinds[i % kinds.len()]).collect();
    let proxy = SmtpProxy::start(stack.smtp_port, script).await;
    let db = db_kind.make().await;
    let mut text = config_text(stack, &support, &db, proxy.port(), false);
    text.push_str("max_attempts = 1000\n");
    let run = crate::common::start(parse(&text), &db).await;

    let mut expected = Vec::new();
    for i in 0..n {
        let (mid, raw) = mail(&customer.address, &support.address, "smtp4xx", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    let tickets = wait_ingested(run.store.as_ref(), &expected).await;
    let mut replies = Vec::new();
    for mid in &expected {
        let q = reply(&run, tickets[mid], "We are on it.").await.unwrap();
        replies.push(q);
    }
    let reply_ids = wait_replies_sent(run.store.as_ref(), &replies).await;
    let recovery = proxy.since_last_fault();
    assert_eq!(
        proxy.faults_played(),
        faults,
        "every scripted 4xx was played"
    );
    wait_outbox_idle(run.store.as_ref()).await;
    let inbox = wait_copies(stack, &customer, "INBOX", &reply_ids).await;
    let sent = wait_copies(stack, &support, "Sent", &reply_ids).await;
    // Postfix took exactly one message per reply: nothing more can arrive.
    assert_eq!(
        proxy.accepted() as usize,
        n,
        "Postfix accepted each reply once"
    );
    assert_eq!(inbox, vec![1; n], "each reply reached the customer once");
    assert_eq!(sent, vec![1; n], "each reply is filed in Sent once");
    for q in &replies {
        let t = run
            .store
            .outgoing(q.email_id)
            .await
            .unwrap()
            .unwrap()
            .ticket;
        let actions = audit_actions(run.store.as_ref(), t).await;
        assert_eq!(
            actions.iter().filter(|a| *a == "reply-sent").count(),
            1,
            "{actions:?}"
        );
        assert!(!actions.iter().any(|a| a == "reply-failed"), "{actions:?}");
    }
    let duplicated = inbox.iter().map(|c| c - 1).sum();
    report("smtp-4xx-then-ok", db_kind, n, 0, duplicated, recovery);
    run.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn smtp_4xx_at_every_stage_then_ok_delivers_each_reply_exactly_once_on_sqlite() {
    smtp_4xx_then_ok(Db::Sqlite).await;
}

#[tokio::test]
async fn smtp_4xx_at_every_stage_then_ok_delivers_each_reply_exactly_once_on_postgres() {
    smtp_4xx_then_ok(Db::Postgres).await;
}

// ---------------------------------------------------------------------------
// 2. SMTP 5xx

async fn smtp_5xx(db_kind: Db) {
    let (stack, support, customer) = support_and_customer();
    // One refusal before the data, one after it.
    let proxy = SmtpProxy::start(
        stack.smtp_port,
        vec![Fault::Rcpt(550), Fault::EndOfData(554)],
    )
    .await;
    let db = db_kind.make().await;
    let (run, chat) = start_recording(
        parse(&config_text(stack, &support, &db, proxy.port(), true)),
        &db,
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..2 {
        let (mid, raw) = mail(&customer.address, &support.address, "smtp5xx", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    let tickets = wait_ingested(run.store.as_ref(), &expected).await;
    let started = Instant::now();
    let mut failed = Vec::new();
    for (i, mid) in expected.iter().enumerate() {
        let ticket = tickets[mid];
        let q = reply(&run, ticket, "Here you go.").await.unwrap();
        // One at a time, so each meets its own refusal.
        let store = run.store.clone();
        wait_for("the send to fail", WAIT, || async {
            (email_state(store.as_ref(), q.email_id).await == EmailState::Failed).then_some(())
        })
        .await;
        let code = if i == 0 { "550" } else { "554" };
        let notice = wait_for("the thread told why", WAIT, || async {
            chat.notices(ticket)
                .into_iter()
                .find(|n| n.contains("could not be sent"))
        })
        .await;
        assert!(notice.contains(code), "the notice says why: {notice}");
        let log = run.store.audit_log(ticket).await.unwrap();
        let entry = log
            .iter()
            .find(|a| a.action == "reply-failed")
            .expect("reply-failed in the audit log");
        assert!(entry.details.contains(code), "{}", entry.details);
        let jobs = run.store.jobs(&[]).await.unwrap();
        let send = jobs
            .iter()
            .find(|j| j.spec.kind() == "send_reply" && j.ticket == Some(ticket))
            .unwrap();
        assert_eq!(send.state, JobState::Failed);
        assert_eq!(send.attempts, 1, "a 5xx is not retried");
        failed.push(q.message_id.as_str().to_owned());
    }
    let recovery = started.elapsed();
    wait_outbox_idle(run.store.as_ref()).await;
    // Nothing more went to the server, nothing was delivered.
    assert_eq!(proxy.connections(), 2, "one attempt per reply");
    assert_eq!(proxy.accepted(), 0);
    assert_eq!(copies(stack, &customer, "INBOX", &failed).await, vec![0, 0]);
    assert_eq!(copies(stack, &support, "Sent", &failed).await, vec![0, 0]);
    report("smtp-5xx", db_kind, 2, 0, 0, recovery);
    run.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn smtp_5xx_is_not_retried_and_the_thread_and_audit_log_say_why_on_sqlite() {
    smtp_5xx(Db::Sqlite).await;
}

#[tokio::test]
async fn smtp_5xx_is_not_retried_and_the_thread_and_audit_log_say_why_on_postgres() {
    smtp_5xx(Db::Postgres).await;
}

// ---------------------------------------------------------------------------
// 3. kill -9 of the real binary around a send

/// `mailroom` as built for this test run (or `MAILROOM_FAULTS_BIN`: with a
/// target directory shared between checkouts, a pinned copy), in `dir`.
pub(crate) fn mailroom_cmd(dir: &Path) -> std::process::Command {
    let bin = std::env::var("MAILROOM_FAULTS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mailroom").to_owned());
    let mut c = std::process::Command::new(bin);
    c.env_remove("MAILROOM_CONFIG")
        .arg("--config")
        .arg(dir.join("mailroom.toml"))
        .current_dir(dir);
    c
}

pub(crate) fn cli(dir: &Path, args: &[&str]) -> String {
    let out = run_ok(mailroom_cmd(dir).args(args), &format!("mailroom {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `mailroom run`, SIGKILLed when dropped (a failing test leaves
/// no process behind).
pub(crate) struct Daemon(pub(crate) std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn_run(dir: &Path, n: usize) -> Daemon {
    let log = std::fs::File::create(dir.join(format!("run-{n}.log"))).unwrap();
    let child = mailroom_cmd(dir)
        .arg("run")
        .env("MAILROOM_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon(child)
}

/// SIGKILL, and wait for it to be gone.
pub(crate) fn kill9(daemon: &mut Daemon) {
    daemon.0.kill().unwrap();
    let status = daemon.0.wait().unwrap();
    assert!(!status.success());
}

async fn send_job(store: &dyn TicketStore) -> Option<mailroom::store::Job> {
    store
        .jobs(&[])
        .await
        .ok()?
        .into_iter()
        .find(|j| j.spec.kind() == "send_reply")
}

/// `during_send`: killed while Postfix has the message and mailroom waits
/// for its answer; otherwise killed between attempts, before the send.
async fn kill9_around_send(db_kind: Db, during_send: bool) {
    let (stack, support, customer) = support_and_customer();
    let script = if during_send {
        vec![Fault::HoldEndOfData]
    } else {
        vec![Fault::Greeting(421)]
    };
    let proxy = SmtpProxy::start(stack.smtp_port, script).await;
    let db = db_kind.make().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = config_text(stack, &support, &db, proxy.port(), false);
    if !during_send {
        // Room between the refused attempt and the next one to kill it in.
        text = text.replace("retry_initial_secs = 1", "retry_initial_secs = 4");
        text = text.replace("retry_max_secs = 2", "retry_max_secs = 4");
    }
    std::fs::write(dir.path().join("mailroom.toml"), text).unwrap();
    cli(dir.path(), &["migrate"]);
    let store = db.store().await;
    let mut child = spawn_run(dir.path(), 1);

    let (mid, raw) = mail(&customer.address, &support.address, "kill9", 0);
    append(stack, &support, "INBOX", &raw).await;
    let tickets = wait_ingested(&store, std::slice::from_ref(&mid)).await;
    let ticket = tickets[&mid];
    let out = cli(
        dir.path(),
        &[
            "tickets",
            "reply",
            &ticket.get().to_string(),
            "--as",
            "@alice:localhost",
            "--message",
            "Refund on its way.",
        ],
    );
    assert!(out.contains("queued"), "{out}");

    if during_send {
        proxy.wait_held(1).await;
        let job = send_job(&store).await.unwrap();
        assert_eq!(job.state, JobState::InFlight, "{job:?}");
    } else {
        wait_for(
            "the first attempt refused, the next not begun",
            WAIT,
            || async {
                send_job(&store).await.filter(|j| {
                    j.state == JobState::Pending
                        && j.last_error.as_deref().unwrap_or("").contains("421")
                })
            },
        )
        .await;
    }
    kill9(&mut child);
    proxy.release();
    let restarted = Instant::now();
    let mut child = spawn_run(dir.path(), 2);

    let email_id = store
        .emails(ticket)
        .await
        .unwrap()
        .iter()
        .find(|e| e.direction == Direction::Outbound)
        .unwrap()
        .id;
    let reply_id = store.outgoing(email_id).await.unwrap().unwrap().message_id;
    let ids = vec![reply_id.as_str().to_owned()];
    let scenario;
    let recovery;
    if during_send {
        scenario = "kill9-during-send";
        wait_for("the interrupted send marked uncertain", WAIT, || async {
            send_job(&store)
                .await
                .filter(|j| j.state == JobState::Uncertain)
        })
        .await;
        recovery = restarted.elapsed();
        assert_eq!(email_state(&store, email_id).await, EmailState::Uncertain);
        let list = cli(dir.path(), &["outbox", "list"]);
        assert!(
            list.lines()
                .any(|l| l.contains("uncertain") && l.contains("send_reply")),
            "the CLI shows it: {list}"
        );
        let show = cli(dir.path(), &["tickets", "show", &ticket.get().to_string()]);
        assert!(show.contains("reply-uncertain"), "{show}");
        // Postfix had it before the kill: it arrives, once, and is never re-sent.
        let inbox = wait_copies(stack, &customer, "INBOX", &ids).await;
        assert_eq!(inbox, vec![1]);
        wait_outbox_idle(&store).await;
        assert_eq!(
            proxy.connections(),
            1,
            "no second attempt after the restart"
        );
        assert_eq!(proxy.accepted(), 1);
    } else {
        scenario = "kill9-before-send";
        let inbox = wait_copies(stack, &customer, "INBOX", &ids).await;
        recovery = restarted.elapsed();
        let store2 = &store;
        wait_for("the reply marked sent", WAIT, || async move {
            (email_state(store2, email_id).await == EmailState::Sent).then_some(())
        })
        .await;
        wait_outbox_idle(&store).await;
        assert_eq!(proxy.accepted(), 1, "sent exactly once");
        assert_eq!(inbox, vec![1]);
        assert_eq!(wait_copies(stack, &support, "Sent", &ids).await, vec![1]);
    }
    let duplicated = copies(stack, &customer, "INBOX", &ids).await[0].saturating_sub(1);
    assert_eq!(duplicated, 0);
    report(scenario, db_kind, 1, 0, duplicated, recovery);
    kill9(&mut child);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn kill9_while_the_smtp_server_holds_the_reply_marks_it_uncertain_never_resent_on_sqlite() {
    kill9_around_send(Db::Sqlite, true).await;
}

#[tokio::test]
async fn kill9_while_the_smtp_server_holds_the_reply_marks_it_uncertain_never_resent_on_postgres() {
    kill9_around_send(Db::Postgres, true).await;
}

#[tokio::test]
async fn kill9_before_the_send_began_sends_it_exactly_once_after_restart_on_sqlite() {
    kill9_around_send(Db::Sqlite, false).await;
}

#[tokio::test]
async fn kill9_before_the_send_began_sends_it_exactly_once_after_restart_on_postgres() {
    kill9_around_send(Db::Postgres, false).await;
}

// ---------------------------------------------------------------------------
// 4. SQLite write lock held by another connection

#[tokio::test]
async fn sqlite_write_lock_longer_than_busy_timeout_loses_no_mail_and_no_sent_reply() {
    use sqlx::Connection;
    let (stack, support, customer) = support_and_customer();
    let n = env_num("MAILROOM_FAULTS_EMAILS", 4) as usize;
    // Longer than the store's 10 s busy_timeout.
    let hold = Duration::from_secs(env_num("MAILROOM_FAULTS_LOCK_SECS", 13));
    let proxy = SmtpProxy::start(stack.smtp_port, vec![Fault::HoldEndOfData]).await;
    let db = Db::Sqlite.make().await;
    let run = crate::common::start(
        parse(&config_text(stack, &support, &db, proxy.port(), false)),
        &db,
    )
    .await;

    // Before the lock: one ticket, its reply handed to Postfix and held there.
    let (first, raw) = mail(&customer.address, &support.address, "lock", 0);
    append(stack, &support, "INBOX", &raw).await;
    let tickets = wait_ingested(run.store.as_ref(), std::slice::from_ref(&first)).await;
    let q = reply(&run, tickets[&first], "Sent while the database is locked.")
        .await
        .unwrap();
    proxy.wait_held(1).await;

    let mut locker = sqlx::AnyConnection::connect(&db.url_text).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    // The send completes now: recording it meets the lock.
    proxy.release();
    let mut expected = vec![first.clone()];
    for i in 1..n {
        let sender = format!("sender{i}-{}@faults.example", random_hex(3));
        let (mid, raw) = mail(&sender, &support.address, "lock", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    // A teammate queues another reply meanwhile.
    let app = run.app.clone();
    let second_ticket = tickets[&first];
    let queued_meanwhile = tokio::spawn(async move {
        queue_reply(
            &app,
            reply_request(
                second_ticket,
                "@alice:localhost",
                None,
                "A second answer, queued while locked.",
            ),
        )
        .await
        .map_err(|e| e.to_string())
    });
    // Fault injection: the lock is held for `hold`, whatever happens.
    tokio::time::sleep(hold).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();
    let released = Instant::now();

    // Queueing waited out busy_timeout and then told its caller (the chat
    // command answers with the error); nothing was half-queued. Asked again,
    // as a teammate would, it goes through.
    let second = match queued_meanwhile.await.unwrap() {
        Ok(q) => q,
        Err(e) => {
            assert!(e.contains("database"), "a store error: {e}");
            println!("sqlite-locked: queueing during the lock failed ({e}); queued again");
            reply(
                &run,
                second_ticket,
                "A second answer, queued after the lock.",
            )
            .await
            .unwrap()
        }
    };
    wait_ingested(run.store.as_ref(), &expected).await;
    let store = run.store.clone();
    wait_for("the replies recorded as sent", WAIT, || async {
        for id in [q.email_id, second.email_id] {
            if email_state(store.as_ref(), id).await != EmailState::Sent {
                return None;
            }
        }
        Some(())
    })
    .await;
    wait_outbox_idle(run.store.as_ref()).await;
    let recovery = released.elapsed();
    let ids = vec![
        q.message_id.as_str().to_owned(),
        second.message_id.as_str().to_owned(),
    ];
    assert_eq!(wait_copies(stack, &support, "Sent", &ids).await, vec![1, 1]);
    assert_eq!(
        wait_copies(stack, &customer, "INBOX", &ids).await,
        vec![1, 1]
    );
    assert_eq!(proxy.accepted(), 2);
    let outbound = run
        .store
        .emails(second_ticket)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.direction == Direction::Outbound)
        .count();
    assert_eq!(outbound, 2, "no reply queued twice");
    let (lost, duplicated) = lost_and_duplicated(run.store.as_ref(), &expected).await;
    // The checkpoint is at the last UID of the folder, after every commit.
    let last_uid = fetch_all(stack, &support, "INBOX")
        .await
        .iter()
        .map(|m| m.uid)
        .max()
        .unwrap();
    let mb = MailboxName::parse("support").unwrap();
    let cp = run.store.checkpoint(&mb).await.unwrap().unwrap();
    assert_eq!(cp.last_uid, last_uid);
    report("sqlite-locked", Db::Sqlite, n, lost, duplicated, recovery);
    assert_eq!((lost, duplicated), (0, 0));
    run.stop().await;
}
