//! The Slack bridge against the fake Slack in `tests/fake_slack` (Slack's
//! documented Web API, Socket Mode and signed Events API) and the real mail
//! stack.

use std::time::Duration;

use mailroom::config::Settings;
use mailroom::domain::ticket::Status;
use mailroom::mail::parse::parse_email;
use mailroom::store::sql::SqlStore;
use mailroom::store::{TicketFilter, TicketStore};
use serde_json::json;

use crate::common::{
    LIFECYCLE, Running, Stack, TestDb, User, append, assert_logged, assert_one_attachment,
    commands_toml, customer_mail, fetch_all, mail_with_files, mailbox_toml, outbox_toml,
    slack_toml, start_connected, wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions, Message};

const WAIT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Socket,
    Events,
}

pub(crate) struct World {
    pub(crate) stack: &'static Stack,
    pub(crate) support: User,
    pub(crate) customer: User,
    pub(crate) slack: FakeSlack,
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) channel: String,
    pub(crate) db: TestDb,
    /// Events API mode: where mailroom listens.
    events_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl World {
    pub(crate) async fn new(mode: Mode) -> World {
        World::with(mode, FakeSlackOptions::default()).await
    }

    async fn with(mode: Mode, opts: FakeSlackOptions) -> World {
        crate::common::init_logs();
        mailroom::mail::tls::install_crypto_provider();
        let stack = Stack::get();
        let slack = FakeSlack::start(opts).await;
        let alice = slack.add_user("alice", "Alice Martin");
        let bob = slack.add_user("bob", "Bob Stone");
        let channel = slack.add_channel("support", &[&alice, &bob, slack.bot_user_id()]);
        let events_port = free_port();
        if mode == Mode::Events {
            slack.set_events_url(Some(format!("http://127.0.0.1:{events_port}")));
        }
        World {
            stack,
            support: stack.user("support", "example.com"),
            customer: stack.user("customer", "example.net"),
            slack,
            alice,
            bob,
            channel,
            db: TestDb::sqlite(),
            events_port,
        }
    }

    pub(crate) fn settings(&self, mode: Mode, extra: &str) -> Settings {
        let channel = format!("slack_channel = \"{}\"", self.channel);
        let mailbox = mailbox_toml(self.stack, &self.support, &self.db, &channel);
        let mode = if mode == Mode::Socket {
            "socket"
        } else {
            "events"
        };
        let more = format!(
            "listen = \"127.0.0.1:{}\"\n  [slack.signature_names]\n  {} = \"Alice M.\"\n",
            self.events_port, self.alice
        );
        let slack = slack_toml(mode, &self.slack.api_url(), &more);
        let commands = commands_toml(self.stack, 0);
        let text = format!(
            "{mailbox}\n{slack}\n{}\n{commands}{extra}\n",
            outbox_toml("")
        );
        let (bot, app, sign) = (
            self.slack.bot_token().to_owned(),
            self.slack.app_token().to_owned(),
            self.slack.signing_secret().to_owned(),
        );
        Settings::parse(&text, &move |k| match k {
            "SLACK_BOT" => Some(bot.clone()),
            "SLACK_APP" => Some(app.clone()),
            "SLACK_SIGNING" => Some(sign.clone()),
            _ => None,
        })
        .unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
    }

    pub(crate) async fn start(&self, settings: Settings) -> Running {
        start_connected(settings, &self.db, None).await
    }

    fn mail(&self, message_id: &str, subject: &str, text: &str, parent: Option<&str>) -> Vec<u8> {
        customer_mail(
            &self.customer.address,
            &self.support.address,
            message_id,
            subject,
            text,
            parent,
        )
    }

    /// The bot's top-level messages (ticket roots), oldest first.
    fn roots(&self) -> Vec<Message> {
        self.slack
            .messages(&self.channel)
            .into_iter()
            .filter(|m| m.bot && m.thread_ts.is_none())
            .collect()
    }

    /// A customer email, and the root message it became.
    pub(crate) async fn email(&self, message_id: &str, subject: &str, text: &str) -> Message {
        append(
            self.stack,
            &self.support,
            "INBOX",
            &self.mail(message_id, subject, text, None),
        )
        .await;
        self.wait("the ticket's root message", |w| {
            w.roots()
                .into_iter()
                .find(|m| all_text(m).contains(subject))
        })
        .await
    }

    pub(crate) async fn wait<T>(&self, what: &str, f: impl Fn(&World) -> Option<T>) -> T {
        wait_for(what, WAIT, || {
            let v = f(self);
            async move { v }
        })
        .await
    }

    pub(crate) fn thread(&self, root: &Message) -> Vec<Message> {
        self.slack.thread(&self.channel, &root.ts)
    }

    async fn customer_inbox(&self, n: usize) -> Vec<crate::common::Fetched> {
        wait_for(&format!("{n} mail(s) at the customer"), WAIT, || async {
            let m = fetch_all(self.stack, &self.customer, "INBOX").await;
            (m.len() >= n).then_some(m)
        })
        .await
    }
}

/// A message's text and every text in its blocks.
pub(crate) fn all_text(m: &Message) -> String {
    let mut out = m.text.clone();
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push('\n');
                out.push_str(s);
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&m.blocks, &mut out);
    out
}

async fn only_ticket(store: &SqlStore) -> mailroom::store::TicketRecord {
    let list = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

async fn whole_loop(mode: Mode) {
    let w = World::new(mode).await;
    let run = w.start(w.settings(mode, "")).await;
    let root = w
        .email(
            &format!("loop1-{mode:?}@example.net"),
            "Invoice 77 is wrong",
            "Hello, invoice 77 charges twice. <!channel> & <b>bold</b>",
        )
        .await;
    let text = all_text(&root);
    assert!(text.contains(&w.customer.address), "{text}");
    assert!(text.contains("invoice 77 charges twice"), "{text}");
    assert!(
        text.contains("&lt;!channel&gt; &amp; &lt;b&gt;"),
        "customer text is escaped: {text}"
    );
    assert!(text.contains("Open"), "{text}");
    let ticket = only_ticket(&run.store).await;

    // alice claims with a reaction; the card says so, with a mention.
    w.slack
        .react(&w.alice, &w.channel, &root.ts, "raising_hand::skin-tone-2")
        .await
        .unwrap();
    w.wait("the card to show alice's claim", |w| {
        let r = w.roots().into_iter().find(|m| m.ts == root.ts)?;
        (r.edits > 0 && all_text(&r).contains(&format!("<@{}>", w.alice))).then_some(())
    })
    .await;
    assert_eq!(
        only_ticket(&run.store).await.state.status(),
        Status::Claimed
    );
    // bob tries too: he alone is told, privately.
    w.slack
        .react(&w.bob, &w.channel, &root.ts, "eyes")
        .await
        .unwrap();
    w.wait("bob's private refusal", |w| {
        w.slack
            .ephemerals(&w.bob)
            .into_iter()
            .find(|e| e.text.contains("already claimed"))
    })
    .await;

    // Internal talk stays internal.
    w.slack
        .post_message(
            &w.bob,
            &w.channel,
            Some(&root.ts),
            "I think it's the VAT line again.",
        )
        .await
        .unwrap();
    // alice replies with the slash command, naming the ticket.
    let ack = w
        .slack
        .slash_command(
            &w.alice,
            &w.channel,
            "/mailroom",
            &format!(
                "reply {} Hi,\n\nsorry, the double charge is **refunded**.",
                ticket.id
            ),
        )
        .await
        .unwrap();
    assert!(
        ack.get("response_type").is_none_or(|t| t != "in_channel"),
        "{ack}"
    );
    w.wait("the slash command's private answer", |w| {
        w.slack
            .ephemerals(&w.alice)
            .into_iter()
            .find(|e| e.text.contains("queued"))
    })
    .await;
    let got = w.customer_inbox(1).await;
    assert_eq!(got.len(), 1, "only the reply left the building");
    let mail = parse_email(&got[0].raw);
    assert_eq!(mail.from.address.as_str(), w.support.address);
    assert_eq!(
        mail.from.name.as_deref(),
        Some("Alice M. via Example Support")
    );
    assert!(mail.text.contains("refunded") && !mail.text.contains("VAT"));
    assert_eq!(
        mail.in_reply_to[0].as_str(),
        format!("loop1-{mode:?}@example.net")
    );
    w.wait("the sent notice in the thread", |w| {
        w.thread(&root)
            .into_iter()
            .find(|m| m.bot && m.text.contains("Reply sent by"))
    })
    .await;

    // The customer answers: same thread, alice mentioned.
    append(
        w.stack,
        &w.support,
        "INBOX",
        &w.mail(
            &format!("loop2-{mode:?}@example.net"),
            "Re: Invoice 77 is wrong",
            "Thanks, got it! One more question.",
            Some(mail.message_id.as_str()),
        ),
    )
    .await;
    let follow = w
        .wait("the follow-up in the thread", |w| {
            w.thread(&root)
                .into_iter()
                .find(|m| all_text(m).contains("One more question"))
        })
        .await;
    assert!(all_text(&follow).contains(&format!("<@{}>", w.alice)));

    // A thread reply sees the guard first (the customer wrote since), then `!reply!`.
    w.slack
        .post_message(
            &w.alice,
            &w.channel,
            Some(&root.ts),
            "!reply Sure, ask away.",
        )
        .await
        .unwrap();
    w.wait("the stale-reply guard, privately", |w| {
        w.slack
            .ephemerals(&w.alice)
            .into_iter()
            .find(|e| e.text.contains("the customer wrote since"))
    })
    .await;
    w.slack
        .post_message(
            &w.alice,
            &w.channel,
            Some(&root.ts),
            &format!(
                "!reply! Sure &amp; ask away: <https://example.com/faq|our FAQ>. <@{}> or <@U0NOBODY> will call.",
                w.bob
            ),
        )
        .await
        .unwrap();
    let got = w.customer_inbox(2).await;
    let second = got
        .iter()
        .map(|f| parse_email(&f.raw))
        .find(|m| m.text.contains("ask away"))
        .expect("the second reply");
    assert!(
        // Slack's link markup became a Markdown link; entities were unescaped.
        second
            .text
            .contains("Sure & ask away: [our FAQ](https://example.com/faq)."),
        "{}",
        second.text
    );
    // People are named, not given as Slack's ids; one Slack does not know
    // stays readable.
    assert!(
        second.text.contains("Bob Stone or @U0NOBODY will call."),
        "{}",
        second.text
    );
    assert!(!second.text.contains("<@"), "{}", second.text);
    w.slack
        .post_message(&w.alice, &w.channel, Some(&root.ts), "!close")
        .await
        .unwrap();
    wait_for("closed", WAIT, || async {
        (only_ticket(&run.store).await.state.status() == Status::Closed).then_some(())
    })
    .await;
    let log = run.store.audit_log(ticket.id).await.unwrap();
    assert_logged(&log, LIFECYCLE);
    assert!(
        log.iter()
            .any(|a| a.actor.to_stored() == format!("agent:slack:{}", w.alice)),
        "{log:?}"
    );
    // Nothing was posted twice, and history was never read.
    assert_eq!(w.roots().len(), 1);
    assert_eq!(w.slack.calls("conversations.history"), 0);
    assert_eq!(w.slack.calls("conversations.replies"), 0);
    run.stop().await;
}

#[tokio::test]
async fn the_whole_loop_over_socket_mode() {
    whole_loop(Mode::Socket).await;
}

#[tokio::test]
async fn the_whole_loop_over_the_events_api() {
    whole_loop(Mode::Events).await;
}

#[tokio::test]
async fn the_reply_dialog_sends_through_the_same_guards() {
    let w = World::new(Mode::Socket).await;
    let run = w.start(w.settings(Mode::Socket, "")).await;
    let root = w
        .email(
            "dialog1@example.net",
            "Where is my parcel",
            "It never came.",
        )
        .await;
    // bob claims; alice's dialog reply is refused (claimed by someone else).
    w.slack
        .react(&w.bob, &w.channel, &root.ts, "raising_hand")
        .await
        .unwrap();
    wait_for("bob's claim", WAIT, || async {
        (only_ticket(&run.store).await.state.status() == Status::Claimed).then_some(())
    })
    .await;
    w.slack
        .message_shortcut(&w.alice, &w.channel, &root.ts, "mailroom_reply")
        .await
        .unwrap();
    let view = w
        .wait("the dialog", |w| w.slack.views().into_iter().next())
        .await;
    assert_eq!(view.user, w.alice);
    assert_eq!(view.view["type"], "modal");
    // An empty submission is answered in the dialog itself.
    let answer = w
        .slack
        .submit_view(
            &w.alice,
            &view.view_id,
            json!({"draft": {"text": {"type": "plain_text_input", "value": null}}}),
        )
        .await
        .unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    w.slack
        .submit_view(
            &w.alice,
            &view.view_id,
            json!({"draft": {"text": {"type": "plain_text_input", "value": "We are on it."}}}),
        )
        .await
        .unwrap();
    w.wait("alice's private refusal", |w| {
        w.slack
            .ephemerals(&w.alice)
            .into_iter()
            .find(|e| e.text.contains("is claimed by"))
    })
    .await;
    // bob, the owner, sends from the dialog.
    w.slack
        .message_shortcut(&w.bob, &w.channel, &root.ts, "mailroom_reply")
        .await
        .unwrap();
    let view = w
        .wait("bob's dialog", |w| {
            w.slack.views().into_iter().find(|v| v.user == w.bob)
        })
        .await;
    w.slack
        .submit_view(
            &w.bob,
            &view.view_id,
            json!({"draft": {"text": {"type": "plain_text_input", "value": "It left our warehouse today."}}}),
        )
        .await
        .unwrap();
    let got = w.customer_inbox(1).await;
    let mail = parse_email(&got[0].raw);
    assert!(mail.text.contains("left our warehouse"));
    assert_eq!(
        mail.from.name.as_deref(),
        Some("Bob Stone via Example Support")
    );

    // The overviews answer privately; a mistake is named in the slash form.
    let id = only_ticket(&run.store).await.id;
    for (text, expect) in [
        ("list mine".to_owned(), "Where is my parcel".to_owned()),
        (format!("show {id}"), "Where is my parcel".to_owned()),
        ("lsit".to_owned(), "/mailroom list".to_owned()),
        // Escaped for mrkdwn; Slack shows `<ticket>`.
        (
            "help".to_owned(),
            "/mailroom reply &lt;ticket&gt; &lt;text&gt;".to_owned(),
        ),
    ] {
        let before = w.slack.ephemerals(&w.bob).len();
        w.slack
            .slash_command(&w.bob, &w.channel, "/mailroom", &text)
            .await
            .unwrap();
        w.wait(&format!("the answer to /mailroom {text}"), |w| {
            w.slack
                .ephemerals(&w.bob)
                .into_iter()
                .skip(before)
                .find(|e| e.text.contains(&expect))
        })
        .await;
    }
    let mistake = w
        .slack
        .ephemerals(&w.bob)
        .into_iter()
        .find(|e| e.text.contains("unknown subcommand"))
        .expect("the answer to the typo");
    assert!(
        !mistake.text.contains("!mailroom"),
        "the slash form is named: {}",
        mistake.text
    );
    run.stop().await;
}

#[tokio::test]
async fn forged_tampered_stale_replayed_and_unsigned_slack_requests_get_401_and_change_nothing() {
    let w = World::new(Mode::Events).await;
    let run = w.start(w.settings(Mode::Events, "")).await;
    let (status, body) = w.slack.send_url_verification().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let root = w
        .email("forged1@example.net", "Password reset", "Please reset it.")
        .await;
    let now = jiff::Timestamp::now().as_second();
    let reaction = |id: &str| {
        json!({
            "token": "x", "team_id": w.slack.team_id(), "api_app_id": "A1", "type": "event_callback",
            "event_id": id, "event_time": now,
            "event": {"type": "reaction_added", "user": w.alice, "reaction": "raising_hand",
                      "item": {"type": "message", "channel": w.channel, "ts": root.ts},
                      "event_ts": "1.1"}
        })
        .to_string()
    };
    let ct = "application/json";
    // Wrong secret, stale, from the future, missing: 401, and nothing happens.
    let forged = reaction("EvForged1");
    let bad_sig = format!("v0={}", "0".repeat(64));
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &forged, ct, now, Some(bad_sig))
            .await
            .unwrap(),
        401
    );
    let stale = reaction("EvForged2");
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &stale, ct, now - 301, None)
            .await
            .unwrap(),
        401
    );
    let future = reaction("EvForged3");
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &future, ct, now + 301, None)
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        w.slack
            .post_raw_events(
                "/slack/events",
                &reaction("EvForged4"),
                ct,
                now,
                Some(String::new())
            )
            .await
            .unwrap(),
        401
    );
    // A body changed after signing.
    let signed_for = reaction("EvForged5");
    let sig = w.slack.sign(now, &signed_for);
    let tampered = signed_for.replace(&w.alice, &w.bob);
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &tampered, ct, now, Some(sig))
            .await
            .unwrap(),
        401
    );
    // Commands and interactions are checked the same way.
    let form = format!(
        "command=%2Fmailroom&text=list&user_id={}&channel_id={}&team_id=T1&response_url=http%3A%2F%2F127.0.0.1%3A1%2Fx&trigger_id=t1",
        w.alice, w.channel
    );
    assert_eq!(
        w.slack
            .post_raw_events(
                "/slack/commands",
                &form,
                "application/x-www-form-urlencoded",
                now - 600,
                None
            )
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        w.slack
            .post_raw_events(
                "/slack/interactive",
                "payload=%7B%7D",
                "application/x-www-form-urlencoded",
                now,
                Some("v0=bad".into())
            )
            .await
            .unwrap(),
        401
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(only_ticket(&run.store).await.state.status(), Status::Open);
    // The same event, signed properly, is acted on.
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &reaction("EvGood1"), ct, now, None)
            .await
            .unwrap(),
        200
    );
    wait_for("the genuine claim", WAIT, || async {
        (only_ticket(&run.store).await.state.status() == Status::Claimed).then_some(())
    })
    .await;
    // The same request again, signature and all, while its timestamp is still
    // fresh: a replay, refused.
    assert_eq!(
        w.slack
            .post_raw_events("/slack/events", &reaction("EvGood1"), ct, now, None)
            .await
            .unwrap(),
        401
    );
    run.stop().await;
}

#[tokio::test]
async fn concurrent_claims_make_exactly_one_owner() {
    let w = World::new(Mode::Socket).await;
    let carol = w.slack.add_user("carol", "Carol Day");
    let dave = w.slack.add_user("dave", "Dave Ray");
    // carol and dave join the channel after it was made.
    let channel = w.slack.add_channel(
        "support2",
        &[&w.alice, &w.bob, &carol, &dave, w.slack.bot_user_id()],
    );
    let mut settings = w.settings(Mode::Socket, "");
    settings.mailboxes[0].chat.slack_channel = Some(channel.clone());
    let run = w.start(settings).await;
    append(
        w.stack,
        &w.support,
        "INBOX",
        &w.mail("race1@example.net", "Race", "Who takes it?", None),
    )
    .await;
    let root = w
        .wait("the root", |w| {
            w.slack
                .messages(&channel)
                .into_iter()
                .find(|m| m.bot && m.thread_ts.is_none())
        })
        .await;
    let users = [w.alice.clone(), w.bob.clone(), carol, dave];
    let mut claims = Vec::new();
    for u in &users {
        let (slack, channel, ts, u) =
            (w.slack.clone(), channel.clone(), root.ts.clone(), u.clone());
        claims.push(tokio::spawn(async move {
            slack
                .react(&u, &channel, &ts, "raising_hand")
                .await
                .unwrap();
        }));
    }
    for c in claims {
        c.await.unwrap();
    }
    let owner = wait_for("one owner", WAIT, || async {
        only_ticket(&run.store).await.state.owner().cloned()
    })
    .await;
    let losers: Vec<&String> = users
        .iter()
        .filter(|u| owner.as_str() != format!("slack:{u}"))
        .collect();
    assert_eq!(losers.len(), 3, "the owner is one of the four: {owner}");
    for l in losers {
        w.wait("each loser's private notice", |w| {
            w.slack
                .ephemerals(l)
                .into_iter()
                .find(|e| e.text.contains("already claimed"))
        })
        .await;
    }
    let log = run
        .store
        .audit_log(only_ticket(&run.store).await.id)
        .await
        .unwrap();
    assert_eq!(
        log.iter().filter(|a| a.action == "claim").count(),
        1,
        "{log:?}"
    );
    run.stop().await;
}

#[tokio::test]
async fn a_429_storm_during_a_burst_of_100_emails_posts_each_once_in_order() {
    let w = World::new(Mode::Socket).await;
    w.slack.inject_429("chat.postMessage", 15, 1);
    let run = w.start(w.settings(Mode::Socket, "")).await;
    for i in 0..100 {
        append(
            w.stack,
            &w.support,
            "INBOX",
            &w.mail(
                &format!("burst{i}@example.net"),
                &format!("Burst {i:03}"),
                "Hello",
                None,
            ),
        )
        .await;
    }
    w.slack
        .wait_until("100 roots", Duration::from_secs(120), |s| {
            s.messages(&w.channel)
                .iter()
                .filter(|m| m.bot && m.thread_ts.is_none())
                .count()
                >= 100
        })
        .await
        .unwrap();
    // A moment for any duplicate to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subjects: Vec<String> = w
        .roots()
        .iter()
        .map(|m| {
            let t = all_text(m);
            let at = t.find("Burst ").expect("subject");
            t[at..at + 9].to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("Burst {i:03}")).collect();
    assert_eq!(subjects, expected, "each once, in arrival order");
    assert!(
        w.slack.calls("chat.postMessage") >= 115,
        "the 429s were met and retried"
    );
    run.stop().await;
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_nothing_is_lost() {
    let w = World::new(Mode::Socket).await;
    let run = w.start(w.settings(Mode::Socket, "")).await;
    let root = w
        .email("drop1@example.net", "Broken link", "The link 404s.")
        .await;
    let opened = w.slack.socket_connections_opened();
    w.slack.drop_sockets().await;
    // Slack queues what happens meanwhile; it arrives once mailroom is back.
    w.slack
        .react(&w.alice, &w.channel, &root.ts, "raising_hand")
        .await
        .unwrap();
    wait_for("the claim after the reconnect", WAIT, || async {
        (only_ticket(&run.store).await.state.status() == Status::Claimed).then_some(())
    })
    .await;
    assert!(w.slack.socket_connections_opened() > opened);
    // A refresh asked for by Slack is followed too.
    w.slack.disconnect_sockets("refresh_requested").await;
    w.slack
        .post_message(&w.alice, &w.channel, Some(&root.ts), "!pending")
        .await
        .unwrap();
    wait_for("pending after the refresh", WAIT, || async {
        (only_ticket(&run.store).await.state.status() == Status::Pending).then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn attachments_go_into_the_thread_and_reply_attach_sends_files_back() {
    let w = World::new(Mode::Socket).await;
    let run = w
        .start(w.settings(Mode::Socket, "[chat]\nmax_attachment_mb = 1\n"))
        .await;
    let long_body = "All work and no play makes Jack a dull boy.\n".repeat(700);
    let raw = mail_with_files(&w.customer, &w.support, &long_body);
    append(w.stack, &w.support, "INBOX", raw.as_bytes()).await;
    let root = w
        .wait("the root", |w| {
            w.roots()
                .into_iter()
                .find(|m| all_text(m).contains("With files"))
        })
        .await;
    let text = all_text(&root);
    assert!(text.contains("Truncated at"), "long mail is cut");
    assert!(text.contains("📎 invoice.pdf (application/pdf") && text.contains("📎 huge.bin"));
    let files = w
        .wait("the files in the thread", |w| {
            let files: Vec<_> = w.thread(&root).into_iter().flat_map(|m| m.files).collect();
            (files.len() >= 2).then_some(files)
        })
        .await;
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["full-message.txt", "invoice.pdf"],
        "the big one is only listed"
    );
    assert_eq!(files[1].data, b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n");
    assert_eq!(
        String::from_utf8(files[0].data.clone()).unwrap().trim_end(),
        long_body.trim_end()
    );

    // alice posts a file in the thread, then replies with it attached.
    w.slack
        .react(&w.alice, &w.channel, &root.ts, "raising_hand")
        .await
        .unwrap();
    w.slack
        .post_file(
            &w.alice,
            &w.channel,
            Some(&root.ts),
            "form.pdf",
            "application/pdf",
            b"%PDF-form".to_vec(),
            "",
        )
        .await
        .unwrap();
    w.slack
        .post_message(
            &w.alice,
            &w.channel,
            Some(&root.ts),
            "!reply --attach Here is the form.",
        )
        .await
        .unwrap();
    let got = w.customer_inbox(1).await;
    assert_one_attachment(&got[0].raw, "form.pdf", b"%PDF-form");
    run.stop().await;
}

#[tokio::test]
async fn posts_are_paced_per_channel_so_a_burst_waits_instead_of_meeting_429s() {
    // Slack's own limit: about one post a second per channel, short bursts allowed.
    let w = World::with(
        Mode::Socket,
        FakeSlackOptions {
            pace_posts: true,
            ..FakeSlackOptions::default()
        },
    )
    .await;
    let mut settings = w.settings(Mode::Socket, "");
    if let Some(s) = settings.slack.as_mut() {
        s.posts_per_second = 1;
        s.post_burst = 3;
    }
    let run = w.start(settings).await;
    let started = std::time::Instant::now();
    for i in 0..7 {
        append(
            w.stack,
            &w.support,
            "INBOX",
            &w.mail(
                &format!("pace{i}@example.net"),
                &format!("Pace {i}"),
                "Hi",
                None,
            ),
        )
        .await;
    }
    w.slack
        .wait_until("7 roots", Duration::from_secs(60), |s| {
            s.messages(&w.channel)
                .iter()
                .filter(|m| m.bot && m.thread_ts.is_none())
                .count()
                >= 7
        })
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "4 posts beyond the burst wait a second each: {took:?}"
    );
    assert_eq!(
        w.slack.calls("chat.postMessage"),
        7,
        "paced: not one post met Slack's rate limit"
    );
    let subjects: Vec<String> = w
        .roots()
        .iter()
        .map(|m| {
            let t = all_text(m);
            let at = t.find("Pace ").expect("subject");
            t[at..at + 6].to_owned()
        })
        .collect();
    assert_eq!(
        subjects,
        (0..7).map(|i| format!("Pace {i}")).collect::<Vec<_>>()
    );
    run.stop().await;
}
