//! Every email reaches the team: the whole corpus through the real servers
//! (Dovecot in, a real Synapse and the fake Slack out), each email exactly
//! once in both chats, whatever its parts; and a post that no rendering
//! gets through is told, listed, reported and retried.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailroom::config::Settings;
use mailroom::domain::chat::Platform;
use mailroom::domain::email::Direction;
use mailroom::store::sql::SqlStore;
use mailroom::store::{JobState, TicketFilter, TicketStore};
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::OwnedRoomId;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::common::{Stack, TestDb, User, Writer, append, wait_for};
use crate::fake_slack::{FakeSlack, FakeSlackOptions, Message};
use crate::matrix::{Synapse, Teammate, body, sender};
use crate::ops::Ops;

/// Generous: the whole corpus goes through a debug build on 2 cores.
const WAIT: Duration = Duration::from_secs(240);

/// The test stack's Synapse takes uploads up to 2 MB (scripts/lib/synapse.sh);
/// the fake Slack workspace is given the same limit.
const UPLOAD_LIMIT: usize = 2 * 1024 * 1024;

/// A Matrix room and a Slack channel for one mailbox, on the real stack.
struct Both {
    stack: &'static Stack,
    support: User,
    db: TestDb,
    dir: tempfile::TempDir,
    bot: (String, String),
    alice: Teammate,
    room: OwnedRoomId,
    slack: FakeSlack,
    channel: String,
}

/// mailroom running, with its `/metrics` and `/healthz`.
struct Running {
    run: crate::common::Running,
    ops: Ops,
}

impl std::ops::Deref for Running {
    type Target = crate::common::Running;
    fn deref(&self) -> &Self::Target {
        &self.run
    }
}

impl Both {
    async fn new() -> Both {
        crate::common::init_logs();
        mailroom::mail::tls::install_crypto_provider();
        let stack = Stack::get();
        let syn = Synapse::get();
        let bot = syn.register("mailroom");
        let (alice, room) = syn.room_for(&bot.0).await;
        let limit = alice
            .client
            .load_or_fetch_max_upload_size()
            .await
            .expect("media config");
        assert!(
            u64::from(limit) <= UPLOAD_LIMIT as u64,
            "the test Synapse takes uploads up to {limit} bytes, not 2 MB: restart it with `scripts/stack up`"
        );
        let slack = FakeSlack::start(FakeSlackOptions {
            max_upload_bytes: Some(UPLOAD_LIMIT),
            ..FakeSlackOptions::default()
        })
        .await;
        let channel = slack.support_channel();
        Both {
            stack,
            support: stack.user("support", "example.com"),
            db: TestDb::sqlite(),
            dir: tempfile::tempdir().expect("tempdir"),
            bot,
            alice,
            room,
            slack,
            channel,
        }
    }

    /// customer@example.net writing to the mailbox.
    fn customer(&self) -> Writer<'_> {
        Writer::new(self.stack, &self.support, "customer@example.net")
    }

    /// The configuration, also written to `mailroom.toml` for the CLI.
    fn settings(&self) -> Settings {
        let text = format!(
            "{mailbox}\n{matrix}\n{slack}\n{outbox}",
            mailbox = crate::common::mailbox_toml(
                self.stack,
                &self.support,
                &self.db,
                &format!(
                    "matrix_room = \"{}\"\n  slack_channel = \"{}\"",
                    self.room, self.channel
                ),
            ),
            matrix = crate::common::matrix_toml(
                &Synapse::get().url,
                &self.bot.0,
                "password_env = \"BOT_PASSWORD\"",
                &self.dir.path().join("matrix"),
            ),
            slack = crate::common::slack_toml("socket", &self.slack.api_url(), ""),
            outbox = crate::common::outbox_toml(""),
        );
        std::fs::write(self.config_path(), &text).expect("write config");
        let [bot, app, signing] = crate::common::SLACK_SECRETS;
        let secrets = [
            ("BOT_PASSWORD", self.bot.1.clone()),
            (bot, self.slack.bot_token().to_owned()),
            (app, self.slack.app_token().to_owned()),
            (signing, self.slack.signing_secret().to_owned()),
        ];
        Settings::parse(&text, &move |k| {
            secrets
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mailroom.toml")
    }

    async fn start(&self) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ops = Ops::new(listener.local_addr().expect("address"));
        let run = crate::common::start_connected(self.settings(), &self.db, Some(listener)).await;
        Running { run, ops }
    }

    /// `mailroom ARGS…` against this world's config and database.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .env_remove("MAILROOM_CONFIG")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run mailroom")
    }

    /// Every event of the room, oldest first (paged: a corpus is hundreds).
    async fn matrix_events(&self) -> Vec<Value> {
        let room = self.alice.client.get_room(&self.room).expect("room known");
        let mut out = Vec::new();
        let mut from = None;
        loop {
            let mut opts = MessagesOptions::backward();
            opts.limit = 500u32.into();
            opts.from = from;
            let page = room.messages(opts).await.expect("messages");
            out.extend(
                page.chunk
                    .iter()
                    .filter_map(|e| serde_json::from_str::<Value>(e.raw().json().get()).ok()),
            );
            match page.end {
                Some(end) if !page.chunk.is_empty() => from = Some(end),
                _ => break,
            }
        }
        out.reverse();
        out
    }

    /// The bot's Matrix ticket roots (messages outside any thread), oldest first.
    async fn matrix_roots(&self) -> Vec<Value> {
        self.matrix_events()
            .await
            .into_iter()
            .filter(|e| {
                sender(e) == self.bot.0
                    && e["type"] == "m.room.message"
                    && e["content"]["msgtype"] == "m.text"
                    && e["content"]["m.relates_to"].is_null()
            })
            .collect()
    }

    /// The bot's Slack ticket roots, oldest first.
    fn slack_roots(&self) -> Vec<Message> {
        self.slack
            .messages(&self.channel)
            .into_iter()
            .filter(|m| m.bot && m.thread_ts.is_none() && !m.text.starts_with("⚠️"))
            .collect()
    }
}

fn in_thread(ev: &Value, root: &str) -> bool {
    ev["content"]["m.relates_to"]["rel_type"] == "m.thread"
        && ev["content"]["m.relates_to"]["event_id"] == root
}

/// Waits until no outbox job is left to run.
async fn wait_outbox_idle(store: &SqlStore) {
    wait_for("the outbox to finish", WAIT, || async {
        let busy = store
            .jobs(&[JobState::Pending, JobState::InFlight])
            .await
            .expect("jobs");
        busy.is_empty().then_some(())
    })
    .await;
}

/// A mail with an attachment of `size` bytes (random-looking, so that no
/// layer can shrink it), base64 in 76-column lines.
fn mail_with_attachment(to: &str, subject: &str, size: usize) -> Vec<u8> {
    use base64::Engine;
    let data: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut body = String::new();
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        body.push_str("\r\n");
    }
    format!(
        "From: Sam Ortiz <sam@customer.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Fri, 06 Nov 2026 09:00:00 +0000\r\nMessage-ID: <big-{size}@customer.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"bb\"\r\n\r\n\
         --bb\r\nContent-Type: text/plain\r\n\r\nThe scan is attached.\r\n\
         --bb\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--bb--\r\n"
    )
    .into_bytes()
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("corpus file"))
        })
        .collect();
    out.sort();
    assert!(out.len() >= 45, "the corpus shrank to {}", out.len());
    out
}

#[tokio::test]
async fn every_corpus_mail_reaches_both_chats_exactly_once() {
    let w = Both::new().await;
    let run = w.start().await;
    let mut mails = corpus();
    mails.push((
        "generated: attachment over the upload limit".into(),
        mail_with_attachment(&w.support.address, "Scan over the limit", 3 * 1024 * 1024),
    ));
    for (_, raw) in &mails {
        append(w.stack, &w.support, "INBOX", raw).await;
    }

    // Every email stored, and everything the outbox had to do for them done.
    let store = run.store.clone();
    let tickets = wait_for("every email stored", WAIT, || async {
        let tickets = store
            .list_tickets(&TicketFilter::default())
            .await
            .expect("tickets");
        let mut emails = 0;
        for t in &tickets {
            emails += store
                .emails(t.id)
                .await
                .expect("emails")
                .iter()
                .filter(|e| e.direction == Direction::Inbound)
                .count();
        }
        // Two corpus mails share a Message-ID; both are kept.
        (emails == mails.len()).then_some(tickets)
    })
    .await;
    wait_outbox_idle(&store).await;
    let failed = store.jobs(&[JobState::Failed]).await.expect("jobs");
    assert!(failed.is_empty(), "failed jobs: {failed:#?}");

    // Exactly one root per ticket on each platform, each the ticket's thread.
    let follow_ups = mails.len() - tickets.len();
    let matrix_roots = w.matrix_roots().await;
    let slack_roots = w.slack_roots();
    assert_eq!(
        matrix_roots.len(),
        tickets.len(),
        "one Matrix root per ticket"
    );
    assert_eq!(
        slack_roots.len(),
        tickets.len(),
        "one Slack root per ticket"
    );
    let matrix_ids: BTreeSet<&str> = matrix_roots
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let slack_ts: BTreeSet<&str> = slack_roots.iter().map(|m| m.ts.as_str()).collect();
    for t in &tickets {
        let m = store
            .chat_thread(t.id, Platform::Matrix)
            .await
            .expect("thread")
            .unwrap_or_else(|| panic!("{} has no Matrix thread", t.id));
        assert!(matrix_ids.contains(m.thread_ref.as_str()), "{}", t.id);
        let s = store
            .chat_thread(t.id, Platform::Slack)
            .await
            .expect("thread")
            .unwrap_or_else(|| panic!("{} has no Slack thread", t.id));
        assert!(slack_ts.contains(s.thread_ref.as_str()), "{}", t.id);
    }
    // The other emails are follow-ups, each posted once in its thread.
    let events = w.matrix_events().await;
    let matrix_follow_ups = events
        .iter()
        .filter(|e| sender(e) == w.bot.0 && body(e).starts_with("📨 New mail from the customer"))
        .count();
    assert_eq!(matrix_follow_ups, follow_ups, "Matrix follow-ups");
    let slack_follow_ups = w
        .slack
        .messages(&w.channel)
        .iter()
        .filter(|m| {
            m.bot
                && m.thread_ts.is_some()
                && (m.text.starts_with("New mail from")
                    || m.text.contains("New mail from the customer"))
        })
        .count();
    assert_eq!(slack_follow_ups, follow_ups, "Slack follow-ups");

    // What could not be uploaded is said in the thread, on both platforms.
    let matrix_thread = |subject: &str| -> Vec<String> {
        let root = matrix_roots
            .iter()
            .find(|e| body(e).contains(subject))
            .unwrap_or_else(|| panic!("no Matrix root for {subject:?}"));
        let id = root["event_id"].as_str().expect("event id");
        events
            .iter()
            .filter(|e| in_thread(e, id))
            .map(|e| body(e).to_owned())
            .collect()
    };
    let slack_thread = |subject: &str| -> Vec<String> {
        let root = slack_roots
            .iter()
            .find(|m| m.text.contains(subject))
            .unwrap_or_else(|| panic!("no Slack root for {subject:?}"));
        w.slack
            .thread(&w.channel, &root.ts)
            .into_iter()
            .filter(|m| m.ts != root.ts)
            .map(|m| m.text)
            .collect()
    };
    for (platform, thread) in [
        ("Matrix", matrix_thread("Invoice attached (empty file)")),
        ("Slack", slack_thread("Invoice attached (empty file)")),
    ] {
        for name in ["invoice.pdf", "empty.bin"] {
            assert!(
                thread.iter().any(|t| t.contains(&format!(
                    "Attachment `{name}` (0 B) could not be uploaded: the file is empty"
                ))),
                "{platform}: no line for the empty {name}: {thread:#?}"
            );
        }
    }
    let over = matrix_thread("Scan over the limit");
    assert!(
        over.iter().any(
            |t| t.contains("Attachment `scan.pdf` (3.0 MB) could not be uploaded")
                && t.contains("over the homeserver's upload limit")
        ),
        "Matrix: {over:#?}"
    );
    let over = slack_thread("Scan over the limit");
    assert!(
        over.iter().any(
            |t| t.contains("Attachment `scan.pdf` (3.0 MB) could not be uploaded")
                && t.contains("file_upload_size_restricted")
        ),
        "Slack: {over:#?}"
    );
    // The rendering over Matrix's event limit: Synapse refused the HTML
    // version, the plain one is in the room, and the thread says so. Slack
    // took its full rendering (its sections are cut to Slack's limits).
    let root = matrix_roots
        .iter()
        .find(|e| body(e).contains("Forty attachments with very long names"))
        .expect("a root for the long rendering");
    assert!(root["content"]["formatted_body"].is_null(), "{root:#}");
    let thread = matrix_thread("Forty attachments with very long names");
    assert!(
        thread
            .iter()
            .any(|t| t.contains("shown as plain text") && t.contains("M_TOO_LARGE")),
        "{thread:#?}"
    );
    let slack_root = slack_roots
        .iter()
        .find(|m| m.text.contains("Forty attachments"))
        .expect("a Slack root for the long rendering");
    assert!(slack_root.blocks.is_array());

    // Files that fit were uploaded: the 40 small ones, on both platforms.
    let matrix_files = events
        .iter()
        .filter(|e| e["content"]["msgtype"] == "m.file" && body(e).contains("R&D & Q&A"))
        .count();
    assert_eq!(matrix_files, 40);
    run.run.stop().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn a_post_no_rendering_gets_through_is_told_listed_reported_and_posted_on_retry() {
    let w = Both::new().await;
    let run = w.start().await;
    // Slack refuses the full, the plain and the minimal post alike; the
    // fourth call, the room's notice, goes through.
    w.slack.inject_error("chat.postMessage", 3, "msg_too_long");
    w.customer()
        .writes(
            "refused-everywhere@example.net",
            "Refused on Slack",
            "Please call me back.",
        )
        .await;

    let notice = wait_for("the channel told", WAIT, || async {
        w.slack
            .messages(&w.channel)
            .into_iter()
            .find(|m| m.bot && m.text.contains("could not be posted here"))
    })
    .await;
    wait_outbox_idle(&run.store).await;
    let failed = run.store.jobs(&[JobState::Failed]).await.expect("jobs");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let job = &failed[0];
    let ticket = job.ticket.expect("a ticket's job");
    assert!(
        notice.text.contains(&format!("ticket {ticket}")),
        "{}",
        notice.text
    );
    assert!(
        notice.text.contains("from customer@example.net"),
        "{}",
        notice.text
    );
    assert!(
        notice
            .text
            .contains(&format!("`mailroom outbox retry {}`", job.id)),
        "{}",
        notice.text
    );
    let error = job.last_error.clone().unwrap_or_default();
    for level in ["full", "plain", "minimal"] {
        assert!(
            error.contains(&format!("{level}: chat.postMessage: msg_too_long")),
            "{error}"
        );
    }
    // Told once, no Slack root; Matrix, which took it, has its thread.
    let told = w
        .slack
        .messages(&w.channel)
        .iter()
        .filter(|m| m.text.contains("could not be posted here"))
        .count();
    assert_eq!(told, 1);
    assert!(w.slack_roots().is_empty());
    assert_eq!(w.matrix_roots().await.len(), 1);

    // The outbox lists it, /healthz and /metrics report it.
    let list = w.cli(&["outbox", "list"]);
    assert!(list.status.success(), "{list:?}");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.lines().any(|l| l.contains("failed")
            && l.contains("chat_post")
            && l.contains("slack")
            && l.contains("msg_too_long")),
        "{list}"
    );
    let (status, health) = run.ops.healthz().await.expect("/healthz");
    assert_eq!(status, 200, "{health:#}");
    assert_eq!(health["status"], "degraded", "{health:#}");
    assert_eq!(health["undelivered"][0]["job"], job.id, "{health:#}");
    assert_eq!(health["undelivered"][0]["platform"], "slack", "{health:#}");
    assert_eq!(
        run.ops
            .metric("mailroom_chat_posts_failed_total{platform=\"slack\"}")
            .await,
        Some(1.0)
    );
    let audit = run.store.audit_log(ticket).await.expect("audit");
    assert!(
        audit.iter().any(|a| a.action == "chat-post-failed"),
        "{audit:#?}"
    );

    // Retrying anything but a failed job is refused with the reason.
    let wrong = w.cli(&["outbox", "retry", "999999"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("there is no job 999999"));

    // Once the cause is gone, `outbox retry` posts it.
    let retried = w.cli(&["outbox", "retry", &job.id.to_string(), "--as", "ops-oncall"]);
    assert!(retried.status.success(), "{retried:?}");
    let root = wait_for("the Slack root after the retry", WAIT, || async {
        w.slack_roots().into_iter().next()
    })
    .await;
    assert!(root.text.contains("Refused on Slack"), "{}", root.text);
    wait_outbox_idle(&run.store).await;
    let (_, health) = run.ops.healthz().await.expect("/healthz");
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(
        run.store
            .chat_thread(ticket, Platform::Slack)
            .await
            .expect("thread")
            .map(|t| t.thread_ref),
        Some(root.ts)
    );
    let audit = run.store.audit_log(ticket).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "job-retried" && a.actor.to_stored().contains("ops-oncall")),
        "{audit:#?}"
    );
    let again = w.cli(&["outbox", "retry", &job.id.to_string()]);
    assert!(!again.status.success(), "a done job is not queued again");
    run.run.stop().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn a_refused_formatted_post_falls_back_to_plain_text_and_says_so() {
    let w = Both::new().await;
    let run = w.start().await;
    // Slack refuses the Block Kit version once; the plain one goes through.
    w.slack
        .inject_error("chat.postMessage", 1, "invalid_blocks");
    w.customer()
        .writes(
            "blocks-refused@example.net",
            "Blocks refused",
            "The *stars* stay literal in plain text.",
        )
        .await;
    let root = wait_for("the plain Slack root", WAIT, || async {
        w.slack_roots().into_iter().next()
    })
    .await;
    assert!(root.blocks.is_null(), "no blocks: {:?}", root.blocks);
    assert!(root.text.starts_with("📨 #1 · "), "{}", root.text);
    assert!(
        root.text.contains("The *stars* stay literal"),
        "{}",
        root.text
    );
    assert!(root.text.contains("Status: #1 · Open"), "{}", root.text);
    let notice = wait_for("the thread told", WAIT, || async {
        w.slack
            .thread(&w.channel, &root.ts)
            .into_iter()
            .find(|m| m.text.contains("shown as plain text"))
    })
    .await;
    assert!(notice.text.contains("invalid_blocks"), "{}", notice.text);
    wait_outbox_idle(&run.store).await;
    assert!(
        run.store
            .jobs(&[JobState::Failed])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        run.ops
            .metric("mailroom_chat_posts_degraded_total{platform=\"slack\",rendering=\"plain\"}")
            .await,
        Some(1.0)
    );
    run.run.stop().await;
    w.db.cleanup().await;
}
