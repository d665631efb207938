//! Scenarios 6–8: three `mailroom run` replica processes on one PostgreSQL
//! database (docs/SCALING.md) while mail arrives in several mailboxes and
//! replies are queued:
//!
//! - `replicas_kill9`: a random replica SIGKILLed and restarted at once
//!   (same replica name), again and again;
//! - `replicas_db_cut`: one replica cut from PostgreSQL (a loopback proxy
//!   in front of the machine's server drops its connections and refuses new
//!   ones), then let back;
//! - `replicas_rolling`: each replica stopped (SIGTERM) and started again,
//!   one after the other.
//!
//! Each run checks from the outside: every APPENDed mail is a ticket with
//! exactly one root post in the (fake) Slack channel, counted per mail from
//! the channel, not from the store; every queued reply reaches the
//! customer's mailbox at most once (counted in Dovecot, after Postfix), and
//! one not delivered must be one the store marked uncertain (a send cut
//! off by the fault, never retried). Takeover: from the fault to every
//! mailbox lease held, unexpired, by a replica other than the faulted one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    LOOP_GUARD, Stack, TestDb, User, fetch_all, outbox_toml, random_hex, slack_toml,
};
use crate::cuttable::Cuttable;
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::harness::{
    Daemon, Figures, SERIAL, StoreProbe, Tally, chaos_mail, log_count, mailroom_bin, poll,
    rand_below, sizes, tail, tally,
};

const REPLICAS: usize = 3;

/// What a replica logs when it stops a mailbox whose lease it could not
/// renew in time (src/bridge/replica.rs).
const STOPPED_UNRENEWED: &str = "lease not renewed in time; mailbox stopped here";

/// Heartbeats every second, leases of three: a dead replica's mailboxes
/// move within about four seconds, so the fast subset stays short.
const CLUSTER: &str = "[cluster]\nheartbeat_secs = 1\nlease_ttl_secs = 3\n";

/// The database's clock in Unix ms, as the lease table compares it.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill9,
    DbCut,
    Rolling,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "replicas_kill9",
            Fault::DbCut => "replicas_db_cut",
            Fault::Rolling => "replicas_rolling",
        }
    }
}

/// This family's sizes: the suite's email count, and its own knobs
/// (`scripts/chaos --full` sets 20 mailboxes, 10 kills, a 30 s cut).
struct Plan {
    emails: usize,
    mailboxes: usize,
    kills: usize,
    cut: Duration,
    replies: usize,
}

fn plan() -> Plan {
    let get = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|e| panic!("{k}={v}: {e}")))
            .unwrap_or(d)
    };
    Plan {
        emails: sizes().emails,
        mailboxes: get("MAILROOM_CHAOS_MAILBOXES", 5).max(1) as usize,
        kills: get("MAILROOM_CHAOS_REPLICA_KILLS", 3) as usize,
        cut: Duration::from_secs(get("MAILROOM_CHAOS_DB_CUT_SECS", 8)),
        replies: get("MAILROOM_CHAOS_REPLIES", 6) as usize,
    }
}

/// The port of a `postgres://user@host:port/db` URL.
fn pg_port(url: &str) -> u16 {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|auth| auth.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}: give MAILROOM_TEST_PG_URL one"))
}

/// The run's world: mailboxes, a customer, the fake Slack, a fresh database.
struct World {
    stack: &'static Stack,
    slack: FakeSlack,
    channel: String,
    boxes: Vec<User>,
    customer: User,
    db: TestDb,
    dir: tempfile::TempDir,
    tag: String,
}

impl World {
    async fn new(mailboxes: usize) -> World {
        let stack = Stack::get();
        let slack = FakeSlack::start(FakeSlackOptions::default()).await;
        let alice = slack.add_user("alice", "Alice Martin");
        let channel = slack.add_channel("support", &[&alice, slack.bot_user_id()]);
        World {
            stack,
            boxes: (0..mailboxes)
                .map(|i| stack.user(&format!("box{i}"), "example.com"))
                .collect(),
            customer: stack.user("customer", "example.net"),
            slack,
            channel,
            db: TestDb::postgres().await,
            dir: tempfile::tempdir().expect("tempdir"),
            tag: random_hex(3),
        }
    }

    /// Replica `name`'s config, reaching PostgreSQL on `pg_port`.
    fn config(&self, name: &str, port: u16) -> PathBuf {
        let url = self.db.url_text.replace(
            &format!(":{}/", pg_port(&self.db.url_text)),
            &format!(":{port}/"),
        );
        let mut text = format!(
            "[database]\nurl = \"{url}\"\n\n{CLUSTER}replica_name = \"{name}\"\n\n{}\n{}\n",
            outbox_toml("max_attempts = 1000\n"),
            slack_toml("socket", &self.slack.api_url(), ""),
        );
        for (i, u) in self.boxes.iter().enumerate() {
            text.push_str(&format!(
                r#"
[[mailbox]]
name = "box{i}"
address = "{addr}"
display_name = "Box {i}"
initial_sync = "all"
{LOOP_GUARD}
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
  timeout_secs = 5
  [mailbox.chat]
  slack_channel = "{channel}"
"#,
                addr = u.address,
                pw = u.password,
                imap = self.stack.imap_port,
                smtp = self.stack.smtp_port,
                channel = self.channel,
            ));
        }
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn env(&self) -> [(&str, &str); 3] {
        [
            ("SLACK_BOT", self.slack.bot_token()),
            ("SLACK_APP", self.slack.app_token()),
            ("SLACK_SIGNING", self.slack.signing_secret()),
        ]
    }

    /// Replica `name`'s log: in the run's temp dir, or kept in
    /// `MAILROOM_CHAOS_LOG_DIR` when that is set.
    fn log(&self, name: &str) -> PathBuf {
        match std::env::var_os("MAILROOM_CHAOS_LOG_DIR") {
            Some(dir) => PathBuf::from(dir).join(format!("mailroom-{}-{name}.log", self.tag)),
            None => self.dir.path().join(format!("{name}.log")),
        }
    }

    /// The bot's root posts in the channel (text and blocks).
    fn roots(&self) -> Vec<String> {
        self.slack
            .messages(&self.channel)
            .into_iter()
            .filter(|m| m.bot && m.thread_ts.is_none())
            .map(|m| format!("{} {}", m.text, m.blocks))
            .collect()
    }

    /// Waits until the channel shows at least `n` roots of this run and the
    /// count has held for two seconds (a duplicate posted late would show).
    async fn settle(&self, n: usize, limit: Duration) -> Tally {
        let mut steady: Option<(usize, Instant)> = None;
        poll(
            "a root post for every mail",
            limit,
            Duration::from_millis(200),
            || {
                let t = tally(self.roots().iter().map(String::as_str), &self.tag, n);
                let done = match steady {
                    Some((c, at)) if c == t.roots => {
                        t.roots >= n && at.elapsed() >= Duration::from_secs(2)
                    }
                    _ => {
                        steady = Some((t.roots, Instant::now()));
                        false
                    }
                };
                async move { done.then_some(t) }
            },
        )
        .await
    }

    /// Queues a reply to each ticket with `mailroom tickets reply`.
    async fn queue_replies(&self, config: &Path, tickets: &[i64]) {
        for id in tickets {
            let mut cmd = Command::new(mailroom_bin());
            cmd.arg("--config")
                .arg(config)
                .args(["tickets", "reply", &id.to_string(), "--as", "cli:chaos"])
                .args(["--message", "Thank you, we are on it."])
                .env_remove("MAILROOM_CONFIG")
                .envs(self.env());
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .expect("join")
                .expect("run mailroom tickets reply");
            assert!(
                out.status.success(),
                "mailroom tickets reply {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// How many replies the customer received for each mail of the run.
    async fn replies_received(&self, n: usize) -> Vec<usize> {
        let marker = format!("Chaos {} #", self.tag);
        let mut seen = vec![0usize; n];
        for m in fetch_all(self.stack, &self.customer, "INBOX").await {
            let text = String::from_utf8_lossy(&m.raw);
            if let Some(i) = text
                .split(&marker)
                .nth(1)
                .and_then(|rest| rest.get(..5))
                .and_then(|d| d.parse::<usize>().ok())
                && i < n
            {
                seen[i] += 1;
            }
        }
        seen
    }
}

/// Mail `i` goes to mailbox `i % boxes`; `range` is APPENDed in `chunks`
/// with `gap` between them, so it arrives while the fault plays.
async fn append_paced(
    stack: &'static Stack,
    boxes: Vec<User>,
    customer: User,
    tag: String,
    range: std::ops::Range<usize>,
    chunks: usize,
    gap: Duration,
) {
    let len = range.end - range.start;
    let step = len.div_ceil(chunks.max(1)).max(1);
    let mut start = range.start;
    while start < range.end {
        let end = (start + step).min(range.end);
        append_spread(stack, &boxes, &customer, &tag, start..end).await;
        start = end;
        if start < range.end {
            tokio::time::sleep(gap).await;
        }
    }
}

async fn append_spread(
    stack: &Stack,
    boxes: &[User],
    customer: &User,
    tag: &str,
    range: std::ops::Range<usize>,
) {
    for (b, support) in boxes.iter().enumerate() {
        let mine: Vec<usize> = range.clone().filter(|i| i % boxes.len() == b).collect();
        if mine.is_empty() {
            continue;
        }
        let settings = stack.imap_settings(support, "INBOX");
        let mut s = mailroom::mail::imap::connect_password(&settings)
            .await
            .expect("IMAP login");
        for i in mine {
            s.append(
                "INBOX",
                None,
                None,
                &chaos_mail(customer, support, tag, i, 0),
            )
            .await
            .expect("APPEND");
        }
        mailroom::mail::imap::logout(s).await;
    }
}

/// One of the three `mailroom run` processes.
struct Replica {
    name: String,
    config: PathBuf,
    daemon: Option<Daemon>,
}

impl Replica {
    fn start(&mut self, w: &World) {
        self.daemon = Some(Daemon::spawn(&self.config, &w.env(), &w.log(&self.name)));
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().map(Daemon::pid).unwrap_or(0)
    }

    /// The prefix of this process's replica id (`<name>-<pid>-`).
    fn prefix(&self) -> String {
        format!("{}-{}-", self.name, self.pid())
    }

    fn kill9(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.kill9();
        }
    }

    async fn stop(&mut self) -> Option<i32> {
        match self.daemon.take() {
            Some(d) => d.stop().await,
            None => None,
        }
    }

    fn assert_running(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            d.assert_running();
        }
    }
}

/// Mailbox leases held, unexpired, by replicas whose id starts with
/// `prefix` (`owned = true`) or by any other (`owned = false`).
async fn mailbox_leases(probe: &StoreProbe, prefix: &str, owned: bool) -> i64 {
    let op = if owned { "LIKE" } else { "NOT LIKE" };
    probe
        .count(&format!(
            "SELECT COUNT(*) FROM leases WHERE resource LIKE 'mailbox:%' \
             AND expires_at > {NOW_MS} AND owner {op} '{prefix}%'"
        ))
        .await
        .unwrap_or(0)
}

/// Waits until every mailbox is held by a replica other than the one
/// whose id starts with `prefix`; the time since `since`, in ms.
async fn taken_over(
    probe: &StoreProbe,
    prefix: &str,
    mailboxes: usize,
    since: Instant,
    limit: Duration,
) -> u128 {
    poll(
        "the faulted replica's mailboxes held by the others",
        limit,
        Duration::from_millis(20),
        || async { (mailbox_leases(probe, prefix, false).await == mailboxes as i64).then_some(()) },
    )
    .await;
    since.elapsed().as_millis()
}

/// Waits until every mailbox is held and each replica holds at least one
/// (or all of them, with fewer mailboxes than replicas).
async fn balanced(probe: &StoreProbe, set: &mut [Replica], mailboxes: usize, limit: Duration) {
    let started = Instant::now();
    loop {
        let mut each = Vec::new();
        for r in set.iter() {
            each.push(mailbox_leases(probe, &r.prefix(), true).await);
        }
        let total: i64 = each.iter().sum();
        if total == mailboxes as i64 && (mailboxes < set.len() || each.iter().all(|c| *c >= 1)) {
            return;
        }
        for r in set.iter_mut() {
            r.assert_running();
        }
        assert!(
            started.elapsed() < limit,
            "leases not spread within {limit:?}: {each:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mean(v: &[u128]) -> u128 {
    v.iter().sum::<u128>() / v.len().max(1) as u128
}

pub async fn run(fault: Fault) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let p = plan();
    let (n, m) = (p.emails.max(p.replies * 2).max(REPLICAS), p.mailboxes);
    let limit = Duration::from_secs(120 + n as u64 / 4);
    let w = World::new(m).await;
    let pg = pg_port(&w.db.url_text);
    // Only replica r0 of the cut scenario goes through the proxy.
    let proxy = Cuttable::start(pg).await;
    let mut set: Vec<Replica> = (0..REPLICAS)
        .map(|i| {
            let name = format!("r{i}");
            let port = if i == 0 && fault == Fault::DbCut {
                proxy.port
            } else {
                pg
            };
            Replica {
                config: w.config(&name, port),
                name,
                daemon: None,
            }
        })
        .collect();
    for r in set.iter_mut() {
        r.start(&w);
    }
    let probe = StoreProbe::open(&w.db).await;
    balanced(&probe, &mut set, m, limit).await;

    // A first part of the mail, answered while the fault plays.
    let first = (n / 4).max(p.replies);
    append_spread(w.stack, &w.boxes, &w.customer, &w.tag, 0..first).await;
    poll(
        "tickets to answer",
        limit,
        Duration::from_millis(50),
        || async { (probe.tickets().await.unwrap_or(0) >= p.replies as i64).then_some(()) },
    )
    .await;
    let ids = probe
        .ints(&format!(
            "SELECT id FROM tickets ORDER BY id LIMIT {}",
            p.replies
        ))
        .await;
    w.queue_replies(&set[REPLICAS - 1].config, &ids).await;

    // The rest arrives over about as long as the fault takes.
    let span = match fault {
        Fault::Kill9 => Duration::from_millis(2500) * p.kills as u32,
        Fault::DbCut => p.cut + Duration::from_secs(3),
        Fault::Rolling => Duration::from_secs(4 * REPLICAS as u64),
    };
    let chunks = 10;
    let appender = tokio::spawn(append_paced(
        w.stack,
        w.boxes.clone(),
        w.customer.clone(),
        w.tag.clone(),
        first..n,
        chunks,
        span / chunks as u32,
    ));

    let mut takeovers: Vec<u128> = Vec::new();
    let mut extra: Vec<(String, String)> = Vec::new();
    match fault {
        Fault::Kill9 => {
            let mut victims = Vec::new();
            for _ in 0..p.kills {
                tokio::time::sleep(Duration::from_millis(500 + rand_below(2000))).await;
                let j = rand_below(REPLICAS as u64) as usize;
                let prefix = set[j].prefix();
                let killed = Instant::now();
                set[j].kill9();
                // Restarted at once, under the same name (as a service
                // manager would): it frees its dead predecessor's leases.
                set[j].start(&w);
                takeovers.push(taken_over(&probe, &prefix, m, killed, limit).await);
                victims.push(set[j].name.clone());
            }
            extra.push(("kills".into(), p.kills.to_string()));
            extra.push(("killed".into(), victims.join(",")));
        }
        Fault::DbCut => {
            let prefix = set[0].prefix();
            let r0_log = w.log(&set[0].name);
            let stops_before = log_count(&r0_log, STOPPED_UNRENEWED);
            let cut = Instant::now();
            proxy.cut();
            takeovers.push(taken_over(&probe, &prefix, m, cut, limit).await);
            // Cut off, r0 must stop its mailboxes itself once their leases
            // expire (its IMAP sessions, its in-flight work), not only when
            // the database answers again.
            let mut stopped_ms = None;
            while cut.elapsed() < p.cut {
                if stopped_ms.is_none() && log_count(&r0_log, STOPPED_UNRENEWED) > stops_before {
                    stopped_ms = Some(cut.elapsed().as_millis());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let stopped_ms = stopped_ms.unwrap_or_else(|| {
                panic!(
                    "r0 kept its mailboxes through a {:?} cut; log:\n{}",
                    p.cut,
                    tail(&r0_log, 40)
                )
            });
            extra.push(("r0_stopped_ms".into(), stopped_ms.to_string()));
            set[0].assert_running();
            proxy.restore().await;
            let back = Instant::now();
            poll(
                "the cut replica holds a mailbox again",
                limit,
                Duration::from_millis(50),
                || async { (mailbox_leases(&probe, &prefix, true).await >= 1).then_some(()) },
            )
            .await;
            extra.push(("cut_s".into(), p.cut.as_secs().to_string()));
            extra.push(("rejoin_ms".into(), back.elapsed().as_millis().to_string()));
        }
        Fault::Rolling => {
            let mut rejoins = Vec::new();
            for j in 0..REPLICAS {
                let prefix = set[j].prefix();
                let stopped = Instant::now();
                let code = set[j].stop().await;
                assert_eq!(code, Some(0), "{} exits 0 on SIGTERM", set[j].name);
                takeovers.push(taken_over(&probe, &prefix, m, stopped, limit).await);
                set[j].start(&w);
                let started = Instant::now();
                balanced(&probe, &mut set, m, limit).await;
                rejoins.push(started.elapsed().as_millis());
            }
            extra.push(("restarts".into(), REPLICAS.to_string()));
            extra.push(("rejoin_mean_ms".into(), mean(&rejoins).to_string()));
        }
    }
    appender.await.expect("appender");

    // The end state, from the outside.
    let t = w.settle(n, limit).await;
    poll(
        "every reply settled",
        limit,
        Duration::from_millis(100),
        || async {
            let open = probe
                .count(
                    "SELECT COUNT(*) FROM outbox WHERE kind = 'send_reply' \
                 AND state IN ('pending', 'in_flight')",
                )
                .await;
            (open == Some(0)).then_some(())
        },
    )
    .await;
    let done = probe
        .count("SELECT COUNT(*) FROM outbox WHERE kind = 'send_reply' AND state = 'done'")
        .await
        .unwrap_or(-1);
    let uncertain = probe
        .count("SELECT COUNT(*) FROM outbox WHERE kind = 'send_reply' AND state = 'uncertain'")
        .await
        .unwrap_or(-1);
    // Delivery through Postfix is asynchronous: wait for the sent ones,
    // then two seconds more for a late second copy.
    let delivered_all = Instant::now();
    while delivered_all.elapsed() < limit {
        let received = w.replies_received(n).await;
        if received.iter().filter(|c| **c > 0).count() as i64 >= done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = w.replies_received(n).await;
    let delivered = received.iter().filter(|c| **c > 0).count();
    let doubled: usize = received.iter().map(|c| c.saturating_sub(1)).sum();
    // A reply may be both delivered and marked uncertain: the replica that
    // was cut from the database can finish a send the others, seeing its
    // lease expire, have marked uncertain (docs/SCALING.md). So the count
    // is of replies missing beyond those marked uncertain.
    let replies_lost = (ids.len() as i64 - delivered as i64 - uncertain.max(0)).max(0);

    let tickets = probe.tickets().await.unwrap_or(-1);
    let threads = probe.threads().await.unwrap_or(-1);
    let failed = probe.failed_jobs().await.unwrap_or(-1);
    let mut codes = Vec::new();
    for r in set.iter_mut() {
        r.assert_running();
        codes.push(r.stop().await);
    }
    probe.close().await;
    drop(proxy);

    extra.splice(
        0..0,
        [
            ("replicas".to_owned(), REPLICAS.to_string()),
            ("mailboxes".to_owned(), m.to_string()),
        ],
    );
    extra.extend([
        ("takeover_mean_ms".to_owned(), mean(&takeovers).to_string()),
        ("tickets".to_owned(), tickets.to_string()),
        ("replies".to_owned(), ids.len().to_string()),
        ("replies_delivered".to_owned(), delivered.to_string()),
        ("replies_doubled".to_owned(), doubled.to_string()),
        ("replies_uncertain".to_owned(), uncertain.to_string()),
    ]);
    Figures {
        runs: 1,
        emails: n,
        lost: t.lost,
        duplicated: t.duplicated,
        recovery_ms: takeovers.iter().copied().max().unwrap_or(0),
        extra,
    }
    .print(fault.name(), crate::harness::Db::Postgres);

    let logs: String = set
        .iter()
        .map(|r| format!("--- {}\n{}\n", r.name, tail(&w.log(&r.name), 30)))
        .collect();
    assert_eq!(
        (t.lost, t.duplicated, t.roots),
        (0, 0, n),
        "every mail has exactly one root post; logs:\n{logs}"
    );
    assert_eq!(
        (tickets, threads, failed),
        (n as i64, n as i64, 0),
        "the store: tickets, threads, failed jobs; logs:\n{logs}"
    );
    assert_eq!(doubled, 0, "no reply delivered twice: {received:?}");
    assert!(
        delivered as i64 >= done,
        "every reply sent was delivered (done {done}, delivered {delivered})"
    );
    assert_eq!(
        replies_lost, 0,
        "every reply delivered or marked uncertain (done {done}, uncertain {uncertain}, delivered {delivered})"
    );
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "SIGTERM at the end exits 0: {codes:?}"
    );
    w.db.cleanup().await;
}
