//! Durability gaps closed (issue #18): a chat command given during a long
//! database outage, a start while the database is down, a chat outage
//! longer than the old give-up point, a Slack post whose answer was lost.
//! Each against the real servers: a private PostgreSQL really stopped and
//! started ([`PrivatePg`]), Dovecot and Postfix from the stack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom::bridge::App;
use mailroom::chat::{ChatEvent, ChatPlatform};
use mailroom::domain::chat::Platform;
use mailroom::domain::email::Direction;
use mailroom::domain::ids::Agent;
use mailroom::store::sql::SqlStore;
use mailroom::store::{EmailState, TicketStore};
use tokio_util::sync::CancellationToken;

use crate::common::{
    SLACK_SECRETS, TestDb, append, mailbox_section, outbox_toml, run_ok, slack_toml,
    support_and_customer, wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::faults::{
    Daemon, PrivatePg, RecordingChat, config_text, copies, email_state, kill9, mail, mailroom_cmd,
    parse, wait_copies, wait_ingested,
};
use crate::slack::{Mode, World, all_text};

const WAIT: Duration = Duration::from_secs(60);

/// `!reply` given while PostgreSQL is stopped for longer than the pool's
/// acquire wait: kept in the spool, the teammate told once, and sent once
/// when the server is back (a redelivery of the same event meanwhile
/// changes nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_command_during_a_postgres_outage_is_kept_and_sent_once_when_it_is_back() {
    let (stack, support, customer) = support_and_customer();
    let pg = PrivatePg::create().await;
    let db = TestDb::postgres_at(&pg.admin_url()).await;
    db.store().await.close().await; // migrated
    let spool_dir = tempfile::tempdir().unwrap();
    let mut settings = parse(&config_text(stack, &support, &db, stack.smtp_port, true));
    settings.database.acquire_timeout = Duration::from_secs(2);
    settings.database.spool_dir = spool_dir.path().join("spool");
    settings.commands.undo_window = Duration::ZERO;
    let store = Arc::new(SqlStore::open(&settings.database).await.unwrap());
    let chat = Arc::new(RecordingChat::default());
    let app = Arc::new(App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        vec![chat.clone() as Arc<dyn ChatPlatform>],
    ));
    crate::common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.clone().run(cancel.clone(), Some(rx)));

    let (mid, raw) = mail(&customer.address, &support.address, "spool", 0);
    append(stack, &support, "INBOX", &raw).await;
    let ticket = wait_ingested(store.as_ref(), std::slice::from_ref(&mid)).await[&mid];
    let thread = wait_for("the ticket's thread", WAIT, || async {
        store
            .chat_thread(ticket, Platform::Matrix)
            .await
            .ok()
            .flatten()
    })
    .await;

    pg.stop().await;
    let stopped = Instant::now();
    let command = ChatEvent::ThreadMessage {
        thread: thread.clone(),
        agent: Agent::parse("@alice:localhost").unwrap(),
        text: "!reply Kept while the database was down.".into(),
        event_ref: "$spooled-reply".into(),
    };
    events.send(command.clone()).unwrap();
    // The platform delivers it again (as Slack does when unacknowledged).
    events.send(command).unwrap();
    let spool_file = spool_dir.path().join("spool/chat-events.jsonl");
    wait_for("the command kept and the teammate told", WAIT, || async {
        let told = chat
            .notices(ticket)
            .iter()
            .any(|n| n.contains("database is unavailable"));
        (told && spool_file.exists()).then_some(())
    })
    .await;
    // Down for well past the acquire wait (2 s) every store call makes.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(stopped.elapsed())).await;
    pg.start().await;
    let back = Instant::now();

    let reply = wait_for("the kept reply queued", WAIT, || async {
        let emails = store.emails(ticket).await.ok()?;
        emails
            .into_iter()
            .find(|e| e.direction == Direction::Outbound)
    })
    .await;
    wait_for("the kept reply sent", WAIT, || async {
        (email_state(store.as_ref(), reply.id).await == EmailState::Sent).then_some(())
    })
    .await;
    let recovery = back.elapsed();
    let message_id = store.outgoing(reply.id).await.unwrap().unwrap().message_id;
    let ids = vec![message_id.as_str().to_owned()];
    assert_eq!(wait_copies(stack, &customer, "INBOX", &ids).await, vec![1]);
    let outbound = store
        .emails(ticket)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.direction == Direction::Outbound)
        .count();
    assert_eq!(outbound, 1, "the command acted on once");
    let told: Vec<String> = chat
        .notices(ticket)
        .into_iter()
        .filter(|n| n.contains("database is unavailable"))
        .collect();
    assert_eq!(told.len(), 1, "told once: {told:?}");
    wait_for("the spool emptied", WAIT, || async {
        (!spool_file.exists()).then_some(())
    })
    .await;
    // Settled: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(copies(stack, &customer, "INBOX", &ids).await, vec![1]);
    println!(
        "DURABLE spooled-command postgres down_ms={} sent_after_back_ms={}",
        back.duration_since(stopped).as_millis(),
        recovery.as_millis()
    );
    cancel.cancel();
    let _ = running.await;
    store.close().await;
}

/// `dir/mailroom.toml`: the stack's mailbox posting to the fake Slack's
/// `channel` (Socket Mode), replies sent at once.
fn write_slack_config(
    dir: &std::path::Path,
    support: &crate::common::User,
    db: &TestDb,
    slack: &FakeSlack,
    channel: &str,
) {
    let stack = crate::common::Stack::get();
    let chat = format!("  timeout_secs = 5\n  [mailbox.chat]\n  slack_channel = \"{channel}\"\n");
    let text = format!(
        "{}\n{}\n{}[commands]\nundo_secs = 0\n",
        mailbox_section(stack, support, db, stack.smtp_port, &chat),
        slack_toml("socket", &slack.api_url(), ""),
        outbox_toml("")
    );
    std::fs::write(dir.join("mailroom.toml"), text).unwrap();
}

/// `mailroom …` in `dir` with the fake Slack's secrets in its environment.
fn slack_cmd(dir: &std::path::Path, slack: &FakeSlack) -> std::process::Command {
    let mut c = mailroom_cmd(dir);
    let [bot, app, signing] = SLACK_SECRETS;
    c.env(bot, slack.bot_token())
        .env(app, slack.app_token())
        .env(signing, slack.signing_secret());
    c
}

fn spawn_slack_run(dir: &std::path::Path, slack: &FakeSlack, n: usize) -> Daemon {
    let log = std::fs::File::create(dir.join(format!("run-{n}.log"))).unwrap();
    let child = slack_cmd(dir, slack)
        .arg("run")
        .env("MAILROOM_LOG", "info,sqlx=warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon(child)
}

/// SIGTERM, and the exit status.
fn terminate(daemon: &mut Daemon) -> std::process::ExitStatus {
    let pid = daemon.0.id().to_string();
    run_ok(
        std::process::Command::new("kill").args(["-TERM", &pid]),
        "kill -TERM",
    );
    daemon.0.wait().unwrap()
}

fn roots(slack: &FakeSlack, channel: &str) -> usize {
    slack
        .messages(channel)
        .iter()
        .filter(|m| m.bot && m.thread_ts.is_none())
        .count()
}

/// `mailroom run` started while its PostgreSQL server is stopped waits for
/// it (instead of exiting), and once it is up recovers what a crash left in
/// flight — a chat post goes back to the queue and is posted, a reply
/// becomes uncertain and is not re-sent — and serves new mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_while_postgres_is_down_waits_then_recovers_in_flight_jobs_and_serves() {
    let (stack, support, customer) = support_and_customer();
    let pg = PrivatePg::create().await;
    let db = TestDb::postgres_at(&pg.admin_url()).await;
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let channel = slack.support_channel();
    let dir = tempfile::tempdir().unwrap();
    write_slack_config(dir.path(), &support, &db, &slack, &channel);
    let store = db.store().await;

    // Two tickets whose posts Slack keeps failing, then a clean stop.
    slack.inject_500("chat.postMessage", 1_000_000);
    let mut first = spawn_slack_run(dir.path(), &slack, 1);
    let mut expected = Vec::new();
    for i in 0..2 {
        let (mid, raw) = mail(&customer.address, &support.address, "pgstart", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    let tickets = wait_ingested(&store, &expected).await;
    assert!(terminate(&mut first).success());
    let ticket = tickets[&expected[1]];
    let out = run_ok(
        slack_cmd(dir.path(), &slack).args([
            "tickets",
            "reply",
            &ticket.get().to_string(),
            "--as",
            "@alice:localhost",
            "--message",
            "Left in flight by a crash.",
        ]),
        "mailroom tickets reply",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued"));
    // What a kill in the middle of the work leaves: jobs in flight.
    let mut in_flight = Vec::new();
    while let Some(job) = store
        .next_job(mailroom::bridge::now_ms() + 60_000)
        .await
        .unwrap()
    {
        in_flight.push(job);
    }
    let kinds: Vec<&str> = in_flight.iter().map(|j| j.spec.kind()).collect();
    assert!(kinds.contains(&"chat_post"), "{kinds:?}");
    assert!(kinds.contains(&"send_reply"), "{kinds:?}");
    let reply_job = in_flight
        .iter()
        .find(|j| j.spec.kind() == "send_reply")
        .unwrap()
        .id;
    store.close().await;
    slack.inject_500("chat.postMessage", 0);

    pg.stop().await;
    let mut second = spawn_slack_run(dir.path(), &slack, 2);
    let down = Duration::from_secs(6);
    tokio::time::sleep(down).await;
    assert!(
        second.0.try_wait().unwrap().is_none(),
        "mailroom run must wait for the database, not exit: {}",
        std::fs::read_to_string(dir.path().join("run-2.log")).unwrap_or_default()
    );
    pg.start().await;
    let back = Instant::now();
    let store = db.store().await;

    wait_for("both tickets posted once", WAIT, || async {
        (roots(&slack, &channel) == 2).then_some(())
    })
    .await;
    let recovery = back.elapsed();
    wait_for("the interrupted reply marked uncertain", WAIT, || async {
        let jobs = store.jobs(&[]).await.ok()?;
        jobs.into_iter()
            .find(|j| j.id == reply_job && j.state == mailroom::store::JobState::Uncertain)
    })
    .await;
    let email_id = store
        .emails(ticket)
        .await
        .unwrap()
        .iter()
        .find(|e| e.direction == Direction::Outbound)
        .unwrap()
        .id;
    assert_eq!(email_state(&store, email_id).await, EmailState::Uncertain);
    let message_id = store.outgoing(email_id).await.unwrap().unwrap().message_id;
    let ids = vec![message_id.as_str().to_owned()];

    // And it serves: new mail is posted.
    let (mid, raw) = mail(&customer.address, &support.address, "pgstart", 2);
    append(stack, &support, "INBOX", &raw).await;
    wait_for("the new ticket posted", WAIT, || async {
        (roots(&slack, &channel) == 3).then_some(())
    })
    .await;
    wait_ingested(&store, std::slice::from_ref(&mid)).await;
    assert_eq!(
        copies(stack, &customer, "INBOX", &ids).await,
        vec![0],
        "an uncertain reply is never sent by mailroom itself"
    );
    assert_eq!(roots(&slack, &channel), 3, "no ticket posted twice");
    println!(
        "DURABLE start-while-db-down postgres down_ms={} first_posts_after_back_ms={}",
        down.as_millis(),
        recovery.as_millis()
    );
    assert!(terminate(&mut second).success());
    store.close().await;
}

/// Slack failing (HTTP 500 on every `chat.postMessage`) for longer than the
/// old give-up point (here `max_attempts = 3` at 1 s apart): the post waits
/// the outage out, appears once, and the channel is told once that posting
/// resumed. A refusal (a permanent error) still fails the post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_outage_past_the_old_give_up_point_is_waited_out_and_the_room_told_once() {
    let w = World::new(Mode::Socket).await;
    let mut settings = w.settings(Mode::Socket, "");
    settings.outbox.max_attempts = 3;
    settings.outbox.retry_initial = Duration::from_secs(1);
    settings.outbox.retry_max = Duration::from_secs(1);
    settings.outbox.chat_outage_notice = Duration::from_secs(2);
    let run = w.start(settings).await;
    let store = run.store.clone();

    w.slack.inject_500("chat.postMessage", 1_000_000);
    let outage = Instant::now();
    let mid = format!("outage-{}@example.net", crate::common::random_hex(4));
    append(
        w.stack,
        &w.support,
        "INBOX",
        &crate::common::customer_mail(
            &w.customer.address,
            &w.support.address,
            &mid,
            "Posted after the outage",
            "Hello.",
            None,
        ),
    )
    .await;
    // Twice the old limit of attempts, all refused by the outage.
    let job = wait_for(
        "the post tried past the old give-up point",
        WAIT,
        || async {
            let jobs = store.jobs(&[]).await.ok()?;
            jobs.into_iter()
                .find(|j| j.spec.kind() == "chat_post" && j.attempts >= 6)
        },
    )
    .await;
    assert_ne!(job.state, mailroom::store::JobState::Failed, "{job:?}");
    w.slack.inject_500("chat.postMessage", 0);
    let lasted = outage.elapsed();
    let back = Instant::now();

    let top = |w: &World| -> Vec<String> {
        w.slack
            .messages(&w.channel)
            .iter()
            .filter(|m| m.bot && m.thread_ts.is_none())
            .map(all_text)
            .collect()
    };
    w.wait("the ticket's root", |w| {
        top(w)
            .iter()
            .any(|t| t.contains("Posted after the outage"))
            .then_some(())
    })
    .await;
    let posted_after = back.elapsed();
    w.wait("the channel told posting resumed", |w| {
        top(w)
            .iter()
            .any(|t| t.contains("Posting resumed after an outage of"))
            .then_some(())
    })
    .await;
    // The other job of the lane settles too; nothing else is said.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let said = top(&w);
    let roots = said
        .iter()
        .filter(|t| t.contains("Posted after the outage"))
        .count();
    assert_eq!(roots, 1, "{said:#?}");
    let resumed: Vec<&String> = said
        .iter()
        .filter(|t| t.contains("Posting resumed"))
        .collect();
    assert_eq!(resumed.len(), 1, "{said:#?}");
    assert!(resumed[0].contains("1 message was delayed"), "{resumed:?}");
    assert!(
        !said.iter().any(|t| t.contains("could not be posted")),
        "{said:#?}"
    );
    let post = store.jobs(&[]).await.unwrap();
    let post = post.iter().find(|j| j.id == job.id).unwrap();
    assert_eq!(post.state, mailroom::store::JobState::Done, "{post:?}");

    // A refusal is not an outage: the post fails, as before.
    w.slack
        .inject_error("chat.postMessage", 50, "channel_not_found");
    let refused = format!("refused-{}@example.net", crate::common::random_hex(4));
    append(
        w.stack,
        &w.support,
        "INBOX",
        &crate::common::customer_mail(
            &w.customer.address,
            &w.support.address,
            &refused,
            "Refused by Slack",
            "Hello.",
            None,
        ),
    )
    .await;
    wait_for("the refused post failed", WAIT, || async {
        let jobs = store
            .jobs(&[mailroom::store::JobState::Failed])
            .await
            .ok()?;
        jobs.into_iter().find(|j| {
            j.spec.kind() == "chat_post"
                && j.last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("channel_not_found")
        })
    })
    .await;
    println!(
        "DURABLE chat-outage sqlite outage_ms={} attempts_during={} posted_after_back_ms={}",
        lasted.as_millis(),
        job.attempts,
        posted_after.as_millis()
    );
    run.stop().await;
}

/// Slack accepted a ticket's root, but mailroom was killed before the
/// answer reached it (the fake holds the answer back): after the restart
/// the job, found in flight, looks the post up by the metadata it carries
/// (`conversations.history`, `include_all_metadata`) and adopts it. One
/// root per ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_post_whose_answer_was_lost_in_a_crash_is_adopted_not_posted_twice() {
    let (stack, support, customer) = support_and_customer();
    let db = TestDb::sqlite();
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let channel = slack.support_channel();
    let dir = tempfile::tempdir().unwrap();
    write_slack_config(dir.path(), &support, &db, &slack, &channel);
    let store = db.store().await;

    slack.hold_answers("chat.postMessage", 1);
    let mut first = spawn_slack_run(dir.path(), &slack, 1);
    let (mid, raw) = mail(&customer.address, &support.address, "lostanswer", 0);
    append(stack, &support, "INBOX", &raw).await;
    let ticket = wait_ingested(&store, std::slice::from_ref(&mid)).await[&mid];
    wait_for(
        "Slack accepted the root, its answer held back",
        WAIT,
        || async { (slack.answers_held() == 1 && roots(&slack, &channel) == 1).then_some(()) },
    )
    .await;
    let post = store
        .jobs(&[])
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.spec.kind() == "chat_post")
        .unwrap();
    assert_eq!(post.state, mailroom::store::JobState::InFlight, "{post:?}");
    kill9(&mut first);

    let restarted = Instant::now();
    let mut second = spawn_slack_run(dir.path(), &slack, 2);
    let thread = wait_for("the ticket's thread recorded", WAIT, || async {
        store
            .chat_thread(ticket, Platform::Slack)
            .await
            .ok()
            .flatten()
    })
    .await;
    let recovery = restarted.elapsed();
    let top: Vec<_> = slack
        .messages(&channel)
        .into_iter()
        .filter(|m| m.bot && m.thread_ts.is_none())
        .collect();
    assert_eq!(top.len(), 1, "{top:#?}");
    assert_eq!(thread.thread_ref, top[0].ts, "the accepted post adopted");
    let meta = top[0].metadata.clone().unwrap();
    assert_eq!(meta["event_type"], "mailroom_job");

    // It goes on serving: the next email is a root of its own.
    let (next, raw) = mail(&customer.address, &support.address, "lostanswer", 1);
    append(stack, &support, "INBOX", &raw).await;
    wait_ingested(&store, std::slice::from_ref(&next)).await;
    wait_for("the next root", WAIT, || async {
        (roots(&slack, &channel) == 2).then_some(())
    })
    .await;
    let store2 = &store;
    wait_for("every post done", WAIT, || async move {
        let jobs = store2.jobs(&[]).await.ok()?;
        jobs.iter()
            .filter(|j| j.spec.kind() == "chat_post")
            .all(|j| j.state == mailroom::store::JobState::Done)
            .then_some(())
    })
    .await;
    assert_eq!(roots(&slack, &channel), 2, "one root per ticket");
    println!(
        "DURABLE slack-lost-answer sqlite adopted_after_restart_ms={}",
        recovery.as_millis()
    );
    assert!(terminate(&mut second).success());
    store.close().await;
}
