//! Chat lanes per room, end to end: two mailboxes posting to two Slack
//! channels of the fake Slack, paced as Slack allows (about one post a
//! second per channel). A burst of 200 mails in one channel takes minutes
//! to post; the other channel's mail is posted meanwhile, about as fast as
//! with no burst at all.

use std::time::{Duration, Instant};

use mailroom::config::Settings;
use mailroom::mail::imap;

use crate::common::{
    LOOP_GUARD, Stack, TestDb, User, append, commands_toml, customer_mail, outbox_toml, slack_toml,
    start_connected,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::slack::all_text;

const BURST: usize = 200;

fn mailbox(stack: &Stack, name: &str, user: &User, channel: &str) -> String {
    format!(
        "[[mailbox]]\nname = \"{name}\"\naddress = \"{addr}\"\ndisplay_name = \"{name}\"\ninitial_sync = \"all\"\n{LOOP_GUARD}\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.chat]\nslack_channel = \"{channel}\"\n",
        addr = user.address,
        imap = stack.imap_port,
        smtp = stack.smtp_port,
        pw = user.password,
    )
}

/// The roots the bot posted in `channel` whose text holds `needle`.
fn roots(slack: &FakeSlack, channel: &str, needle: &str) -> Vec<String> {
    slack
        .messages(channel)
        .into_iter()
        .filter(|m| m.bot && m.thread_ts.is_none())
        .map(|m| all_text(&m))
        .filter(|t| t.contains(needle))
        .collect()
}

/// From APPEND to the root in `channel`.
async fn latency(
    stack: &Stack,
    slack: &FakeSlack,
    to: &User,
    from: &User,
    channel: &str,
    subject: &str,
) -> Duration {
    let id = format!("{}@example.net", subject.replace(' ', "-"));
    let started = Instant::now();
    append(
        stack,
        to,
        "INBOX",
        &customer_mail(&from.address, &to.address, &id, subject, "Hello", None),
    )
    .await;
    slack
        .wait_until(subject, Duration::from_secs(60), |s| {
            !roots(s, channel, subject).is_empty()
        })
        .await
        .unwrap_or_else(|e| panic!("{subject} never posted in its channel: {e}"));
    started.elapsed()
}

#[tokio::test]
async fn a_burst_in_one_channel_does_not_hold_another_channels_thread() {
    crate::common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let stack = Stack::get();
    let slack = FakeSlack::start(FakeSlackOptions {
        pace_posts: true,
        ..FakeSlackOptions::default()
    })
    .await;
    let alice = slack.add_user("alice", "Alice Martin");
    let busy_ch = slack.add_channel("busy", &[&alice, slack.bot_user_id()]);
    let quiet_ch = slack.add_channel("quiet", &[&alice, slack.bot_user_id()]);
    let busy = stack.user("busy", "example.com");
    let quiet = stack.user("quiet", "example.com");
    let customer = stack.user("customer", "example.net");
    let db = TestDb::sqlite();
    let text = format!(
        "[database]\nurl = \"{db}\"\n{a}{b}\n{slack}\n{outbox}\n{commands}",
        db = db.url_text,
        a = mailbox(stack, "busy", &busy, &busy_ch),
        b = mailbox(stack, "quiet", &quiet, &quiet_ch),
        slack = slack_toml("socket", &slack.api_url(), ""),
        outbox = outbox_toml(""),
        commands = commands_toml(stack, 0),
    );
    let secrets = [
        slack.bot_token().to_owned(),
        slack.app_token().to_owned(),
        slack.signing_secret().to_owned(),
    ];
    let mut settings = Settings::parse(&text, &move |k| match k {
        "SLACK_BOT" => Some(secrets[0].clone()),
        "SLACK_APP" => Some(secrets[1].clone()),
        "SLACK_SIGNING" => Some(secrets[2].clone()),
        _ => None,
    })
    .unwrap_or_else(|p| panic!("test config invalid: {p:?}"));
    // Slack's own limit, paced by mailroom: about one post a second per
    // channel, a short burst allowed.
    if let Some(s) = settings.slack.as_mut() {
        s.posts_per_second = 1;
        s.post_burst = 3;
    }
    let run = start_connected(settings, &db, None).await;

    let alone = latency(stack, &slack, &quiet, &customer, &quiet_ch, "Quiet alone").await;
    // The burst: 200 mails into the busy mailbox, over one connection.
    let mut writer = imap::connect_password(&stack.imap_settings(&busy, "INBOX"))
        .await
        .expect("IMAP login");
    for i in 0..BURST {
        let raw = customer_mail(
            &customer.address,
            &busy.address,
            &format!("burst{i}@example.net"),
            &format!("Burst {i:03}"),
            "Hello",
            None,
        );
        writer
            .append("INBOX", None, None, &raw)
            .await
            .expect("APPEND");
    }
    imap::logout(writer).await;
    // Posting has begun in the busy channel.
    slack
        .wait_until("the burst's first posts", Duration::from_secs(60), |s| {
            roots(s, &busy_ch, "Burst ").len() >= 3
        })
        .await
        .expect("the burst is being posted");
    let during = latency(
        stack,
        &slack,
        &quiet,
        &customer,
        &quiet_ch,
        "Quiet during burst",
    )
    .await;
    let busy_posted = roots(&slack, &busy_ch, "Burst ");
    println!(
        "quiet channel's root: {} ms alone, {} ms during a burst of {BURST} in another channel \
         ({} of them posted by then)",
        alone.as_millis(),
        during.as_millis(),
        busy_posted.len()
    );
    assert!(
        busy_posted.len() < BURST,
        "the quiet channel's root came before the burst was done"
    );
    assert!(
        during < Duration::from_secs(20),
        "the quiet channel waited {during:?} behind the other's burst"
    );
    // The busy channel's roots so far: in arrival order, each once.
    let subjects: Vec<String> = busy_posted
        .iter()
        .map(|t| {
            let at = t.find("Burst ").expect("subject");
            t[at..at + 9].to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..subjects.len())
        .map(|i| format!("Burst {i:03}"))
        .collect();
    assert_eq!(subjects, expected, "the burst posts in order");
    run.stop().await;
}
