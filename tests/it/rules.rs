//! Routing rules: `check-config` on bad rules and `mailroom rules test` with
//! the real binary, and one rule of each action kind acting on real mail,
//! posting to real Synapse and the fake Slack.

use std::process::Command;
use std::time::Duration;

use mailroom::domain::routing::Priority;
use mailroom::domain::ticket::{Status, TicketState};
use mailroom::store::{TicketFilter, TicketStore};

use crate::common::{
    Stack, TestDb, Writer, mailbox_toml, matrix_toml, outbox_toml, run_ok, slack_toml,
    start_connected, wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::matrix::{Synapse, body, sender, wait_event};

fn mailroom() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.env_remove("MAILROOM_CONFIG");
    c
}

/// A valid configuration without rules: one mailbox on Matrix.
const BASE: &str = r#"
[database]
url = "sqlite://DB"

[[mailbox]]
name = "support"
address = "support@mailroom.example"
display_name = "Support"
  [mailbox.imap]
  host = "127.0.0.1"
  password = "x"
  [mailbox.smtp]
  host = "127.0.0.1"
  [mailbox.chat]
  matrix_room = "!support:example.com"

[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@mailroom:example.com"
password = "x"

[people]
alice = { matrix = "@alice:example.com" }
"#;

fn write_config(dir: &std::path::Path, rules: &str) -> std::path::PathBuf {
    let db = dir.join("never-created.db");
    let path = dir.join("mailroom.toml");
    let text = format!("{}\n{rules}", BASE.replace("DB", &db.display().to_string()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_names_each_kind_of_bad_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"
[[rule]]
name = "typo"
from = "a@customer.example"
tags = ["x"]
subjekt = "invoice"

[[rule]]
name = "bad regex"
subject = "(?i)invoice ("
tags = ["billing"]

[[rule]]
name = "nowhere"
from_domain = "customer.example"
matrix_room = "general"
slack_channel = "C0BILLING1"
assign = "carol"

[[rule]]
name = "everything"
tags = ["all"]

[[rule]]
name = "both ways"
from = "b@customer.example"
mark = "ignore"
assign = "alice"
"#,
    );
    let out = mailroom().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "rule[0].subjekt: unknown key",
        "rule[1].subject: rule \"bad regex\": bad regex:",
        "rule[2].matrix_room: rule \"nowhere\": expected a room id",
        "rule[2].slack_channel: rule \"nowhere\": set, but there is no [slack] section",
        "rule[2].assign: rule \"nowhere\": unknown person or group \"carol\"",
        "rule[3]: rule \"everything\": matches nothing",
        "rule[4].mark: rule \"both ways\": contradicts assign",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} not in:\n{stderr}");
    }
    // Each with its line.
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("rule["))
            .all(|l| l.contains("(line ")),
        "{stderr}"
    );
}

#[test]
fn rules_test_explains_a_corpus_mail_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"
[[rule]]
name = "billing tag"
to_tag = "billing"
tags = ["billing"]

[[rule]]
name = "customers"
from_domain = "customer.example"
subject = "(?i)umlaute"
tags = ["de"]
priority = "high"
assign = "alice"
stop = true

[[rule]]
name = "never reached"
from = "helga@customer.example"
mark = "spam"
"#,
    );
    let eml = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/latin1_body.eml");
    let out = run_ok(
        mailroom()
            .arg("--config")
            .arg(&path)
            .arg("rules")
            .arg("test")
            .arg(&eml)
            // No network and no database: nothing to reach at this address.
            .env("MAILROOM_LOG", "debug"),
        "rules test",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for wanted in [
        "from helga@customer.example, subject \"Umlaute\", to mailbox support",
        "miss  billing tag: To/Cc has no support@mailroom.example+{billing}",
        "HIT   customers (stop): tag de; priority high; assign to alice",
        "--    never reached: not tried, \"customers\" stopped the walk",
        "post to matrix !support:example.com",
        "tags: de",
        "priority: high",
        "assigned to @alice:example.com (alice)",
    ] {
        assert!(stdout.contains(wanted), "{wanted:?} not in:\n{stdout}");
    }
    assert!(
        !dir.path().join("never-created.db").exists(),
        "rules test opened the database"
    );
    // A mailbox that is not configured is named.
    let out = mailroom()
        .arg("--config")
        .arg(&path)
        .args(["rules", "test", "--mailbox", "sales"])
        .arg(&eml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[mailbox]] is named sales"));
}

const WAIT: Duration = Duration::from_secs(60);

/// One rule of each action kind, on mail through the real stack into
/// Synapse and the fake Slack at once.
#[tokio::test]
async fn each_action_kind_acts_on_real_mail_in_matrix_and_slack() {
    crate::common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let stack = Stack::get();
    let syn = Synapse::get();
    let bot = syn.register("mailroom");
    let (alice, room) = syn.room_for(&bot.0).await;
    let vip_room = alice
        .create_room(&[&bot.0], false)
        .await
        .room_id()
        .to_owned();
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let slack_alice = slack.add_user("alice", "Alice Martin");
    let channel = slack.add_channel("support", &[&slack_alice, slack.bot_user_id()]);
    let billing = slack.add_channel("billing", &[&slack_alice, slack.bot_user_id()]);
    let support = stack.user("support", "example.com");
    let customer = stack.user("customer", "example.net");
    let db = TestDb::sqlite();
    let state_dir = tempfile::tempdir().unwrap();

    let chat = format!("matrix_room = \"{room}\"\n  slack_channel = \"{channel}\"");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let rules = format!(
        r#"
[people]
alice = {{ matrix = "{alice_mx}", slack = "{slack_alice}" }}

[[rule]]
name = "newsletters"
subject = "(?i)newsletter"
mark = "ignore"
stop = true

[[rule]]
name = "vip"
subject = "(?i)\\bvip\\b"
matrix_room = "{vip_room}"
tags = ["vip"]
priority = "urgent"

[[rule]]
name = "billing"
subject = "(?i)invoice"
slack_channel = "{billing}"
assign = "alice"
"#,
        alice_mx = alice.user_id,
    );
    let text = format!(
        "{}\n{}\n{}\n{}\n{rules}",
        mailbox_toml(stack, &support, &db, &chat),
        matrix_toml(
            &syn.url,
            &bot.0,
            "password_env = \"BOT_PASSWORD\"",
            state_dir.path()
        ),
        slack_toml(
            "socket",
            &slack.api_url(),
            &format!("listen = \"{listen}\"\n")
        ),
        outbox_toml(""),
    );
    let secrets = [
        ("BOT_PASSWORD", bot.1.clone()),
        ("SLACK_BOT", slack.bot_token().to_owned()),
        ("SLACK_APP", slack.app_token().to_owned()),
        ("SLACK_SIGNING", slack.signing_secret().to_owned()),
    ];
    let settings = mailroom::config::Settings::parse(&text, &move |k| {
        secrets
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|p| panic!("test config invalid: {p:#?}"));
    let app = start_connected(settings, &db, None).await;
    let writer = Writer::new(stack, &support, &customer.address);
    writer
        .writes(
            "news1@example.net",
            "Our monthly Newsletter",
            "Read all about it.",
        )
        .await;
    writer
        .writes("vip1@example.net", "VIP outage", "Everything is down.")
        .await;
    writer
        .writes("inv1@example.net", "Invoice 42 is wrong", "Please fix it.")
        .await;

    // vip: the root goes to the rule's Matrix room, urgent and tagged on
    // its card; on Slack to the mailbox's channel, with the same card.
    let is_root = |e: &serde_json::Value, subject: &str| {
        sender(e) == bot.0 && body(e).contains(subject) && e["content"]["m.relates_to"].is_null()
    };
    let vip = wait_event(&alice, &vip_room, "the vip root in the vip room", |e| {
        is_root(e, "VIP outage")
    })
    .await;
    assert!(
        body(&vip).contains("priority urgent") && body(&vip).contains("tags: vip"),
        "{vip}"
    );
    // billing: the Slack root goes to the billing channel, the Matrix one
    // to the mailbox's room; both cards show the owner.
    let invoice = wait_event(&alice, &room, "the invoice root in the support room", |e| {
        is_root(e, "Invoice 42")
    })
    .await;
    assert!(
        body(&invoice).contains(&format!("Claimed by {}", alice.user_id)),
        "{invoice}"
    );
    let slack_root = |ch: &str, subject: &str| {
        slack
            .messages(ch)
            .into_iter()
            .find(|m| m.bot && m.thread_ts.is_none() && m.text.contains(subject))
    };
    let (slack_vip, slack_invoice) = wait_for("both Slack roots", WAIT, || async {
        Some((
            slack_root(&channel, "VIP outage")?,
            slack_root(&billing, "Invoice 42")?,
        ))
    })
    .await;
    let card = |m: &crate::fake_slack::Message| m.blocks.to_string();
    assert!(
        card(&slack_vip).contains("priority urgent"),
        "{slack_vip:?}"
    );
    assert!(
        card(&slack_invoice).contains(&alice.user_id.to_string()),
        "{slack_invoice:?}"
    );
    assert!(
        slack_root(&channel, "Invoice 42").is_none(),
        "not in the mailbox's channel"
    );

    // newsletters: stored, set aside, never posted anywhere.
    let store = app.store.clone();
    let tickets = wait_for("three tickets", WAIT, || {
        let store = store.clone();
        async move {
            let all = store.list_tickets(&TicketFilter::default()).await.unwrap();
            (all.len() == 3).then_some(all)
        }
    })
    .await;
    let by_subject = |s: &str| tickets.iter().find(|t| t.subject.contains(s)).unwrap();
    assert_eq!(by_subject("Newsletter").state, TicketState::Ignored);
    assert_eq!(by_subject("VIP").priority, Priority::Urgent);
    assert_eq!(
        by_subject("Invoice").state,
        TicketState::Claimed {
            by: mailroom::domain::ids::Agent::parse(alice.user_id.as_str()).unwrap()
        }
    );
    let ignored = TicketFilter {
        status: Some(Status::Ignored),
        ..TicketFilter::default()
    };
    assert_eq!(store.list_tickets(&ignored).await.unwrap().len(), 1);
    // A follow-up to the ignored ticket stays ignored and unposted.
    writer
        .answers(
            "news1@example.net",
            "news2@example.net",
            "Re: Our monthly Newsletter",
            "Did you read it?",
        )
        .await;
    let news = by_subject("Newsletter").id;
    wait_for("the follow-up stored", WAIT, || {
        let store = store.clone();
        async move { (store.emails(news).await.unwrap().len() == 2).then_some(()) }
    })
    .await;
    let news_ticket = store.ticket(news).await.unwrap().unwrap();
    assert_eq!(news_ticket.state, TicketState::Ignored);
    // Everything queued has been done by now; none of it was the newsletter.
    let newsletter_posted = alice
        .events(&room)
        .await
        .iter()
        .chain(alice.events(&vip_room).await.iter())
        .any(|e| body(e).contains("Newsletter"))
        || [&channel, &billing]
            .iter()
            .flat_map(|c| slack.messages(c))
            .any(|m| m.text.contains("Newsletter"));
    assert!(!newsletter_posted, "an ignored mail was posted");
    assert!(
        store
            .jobs(&[])
            .await
            .unwrap()
            .iter()
            .all(|j| j.ticket != Some(news)),
        "no job was queued for the ignored ticket"
    );
    app.stop().await;
}
