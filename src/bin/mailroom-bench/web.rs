//! The `web` stage: the dashboard's page times over a store with 2,000
//! waiting tickets (each with chat threads and an SLA clock, a third
//! claimed, a sixth pending) and 200 closed ones, on SQLite and
//! PostgreSQL. The dashboard is served in-process on a loopback port and
//! read over HTTP as a browser would, one request at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use jiff::{SignedDuration, Timestamp};
use mailroom::bridge::App;
use mailroom::bridge::ingest::MailboxIngest;
use mailroom::config::Settings;
use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::ids::{Actor, Agent, MailboxName, TicketId};
use mailroom::domain::mailbox::Checkpoint;
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::domain::time::{Clock, ManualClock};
use mailroom::domain::web::SecretHash;
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;
use mailroom::store::{NewWebLink, NewWebSession, TicketFilter, TicketStore};
use tokio_util::sync::CancellationToken;

use crate::common::{hex, mail};
use crate::percentile;

/// The pages timed, with the metric name each is reported under.
pub const PAGES: &[(&str, &str)] = &[
    ("overview_week", "/"),
    ("overview_month", "/?period=month"),
    ("overview_mailbox", "/?period=week&mailbox=support"),
    ("queue", "/queue"),
    ("queue_csv", "/queue.csv"),
    ("people", "/people"),
    ("ticket", "/tickets/1"),
];

/// p50 and p99 (ms) of each page of [`PAGES`], in order.
pub type PageTimes = Vec<(f64, f64)>;

const SESSION: &str = "bench-session";

/// Seeds `url`'s store with `waiting` waiting tickets and a tenth as many
/// closed ones, serves the dashboard, and times `requests` GETs a page.
pub async fn page_times(url: &str, waiting: usize, requests: usize) -> anyhow::Result<PageTimes> {
    let text = format!(
        "[database]\nurl = \"{url}\"\n[[mailbox]]\nname = \"support\"\naddress = \"support@bench.example\"\n\
         display_name = \"Bench\"\ntime_zone = \"Europe/Paris\"\nloop_guard = {{ max_messages = 1000000 }}\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n\
         [web]\nlisten = \"127.0.0.1:0\"\n\
         [[sla]]\nname = \"support\"\nmailbox = \"support\"\nfirst_response = \"4h\"\nnext_response = \"1d\"\nnudge_at = 75\n"
    );
    let settings = Settings::parse(&text, &|_| None).map_err(|p| anyhow!("{p:?}"))?;
    let db = DatabaseUrl::parse(url).map_err(|e| anyhow!(e))?;
    let store = Arc::new(SqlStore::connect(&db, 4).await?);
    store.migrate().await?;
    let now = Timestamp::now();
    let clock = Arc::new(ManualClock::new(now - SignedDuration::from_hours(8)));
    let mut app = App::new(settings, store.clone() as Arc<dyn TicketStore>, Vec::new());
    app.clock = clock.clone();
    let app = Arc::new(app);
    seed(&app, store.as_ref(), &clock, waiting).await?;
    clock.set(now);

    // A session, as a sign-in link opens one.
    let agent = Agent::parse("@alice:bench.example").map_err(|e| anyhow!(e.reason))?;
    let at = clock.now_ms();
    let link = NewWebLink {
        token: SecretHash::of("bench-link"),
        agent,
        expires_at_ms: at + 600_000,
        via: "bench".into(),
    };
    store.issue_web_link(&link, at).await?;
    let session = NewWebSession {
        id: SecretHash::of(SESSION),
        expires_at_ms: at + 3_600_000,
    };
    store
        .redeem_web_link(&SecretHash::of("bench-link"), &session, at)
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut handles = app.web_handles();
    handles.slack_workspace = Some("https://bench.slack.com/".into());
    let cancel = CancellationToken::new();
    let server = tokio::spawn(mailroom::web::serve(handles, listener, cancel.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()?;
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .header("Cookie", format!("mailroom_session={SESSION}"))
            .send()
    };
    let mut out = Vec::new();
    for (name, path) in PAGES {
        // One warm-up, which also checks the page is there.
        let first = get(path).await?;
        if first.status() != 200 {
            bail!("{name}: {path} answered {}", first.status());
        }
        first.bytes().await?;
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            get(path).await?.bytes().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        out.push((percentile(&mut times, 50.0), percentile(&mut times, 99.0)));
    }
    cancel.cancel();
    let _ = server.await;
    store.close().await;
    Ok(out)
}

/// The tickets, ingested as mail (so each has its SLA facts), half at
/// the clock's start (eight hours ago: breached by now) and half seven
/// hours later (due in 3 h); then claims, pendings and closes, and a
/// Matrix thread for each, a Slack one for every other.
async fn seed(
    app: &Arc<App>,
    store: &SqlStore,
    clock: &ManualClock,
    waiting: usize,
) -> anyhow::Result<()> {
    let support = MailboxName::parse("support")?;
    let sink = MailboxIngest::new(app.clone(), support);
    let closed = waiting / 10;
    let total = waiting + closed;
    let most = mailroom::mail::ingest::BATCH_MESSAGES;
    let mut batch = Vec::with_capacity(most);
    for i in 0..total {
        if i == total / 2 {
            sink.ingest_many(std::mem::take(&mut batch)).await?;
            clock.advance(SignedDuration::from_hours(7));
        }
        let raw = mail(
            &format!("c{i}@customer.example"),
            "support@bench.example",
            &format!("web{i}@bench"),
            &format!("Question {i}"),
        );
        let cp = Checkpoint {
            uid_validity: 1,
            last_uid: i as u32 + 1,
        };
        batch.push((raw, Some(cp)));
        if batch.len() == most {
            sink.ingest_many(std::mem::take(&mut batch)).await?;
        }
    }
    sink.ingest_many(batch).await?;
    let filter = TicketFilter {
        status: Some(Status::Open),
        limit: Some(u32::try_from(total)?),
        ..Default::default()
    };
    let mut tickets: Vec<TicketId> = store
        .list_tickets(&filter)
        .await?
        .iter()
        .map(|t| t.id)
        .collect();
    if tickets.len() != total {
        bail!("{} tickets stored of {total}", tickets.len());
    }
    tickets.sort();
    let people = ["@alice:bench.example", "@bob:bench.example"];
    let at = clock.now_ms();
    for (i, id) in tickets.iter().enumerate() {
        let who = Agent::parse(people[i % 2]).map_err(|e| anyhow!(e.reason))?;
        let actor = Actor::Agent(who.clone());
        let events = match i % 6 {
            _ if i >= waiting => vec![TicketEvent::Close],
            0 | 1 => vec![TicketEvent::Claim(who)],
            2 => vec![TicketEvent::Claim(who), TicketEvent::MarkPending],
            _ => vec![],
        };
        for e in events {
            store
                .apply(*id, &actor, &e, &[], at)
                .await
                .with_context(|| format!("ticket {id}"))?;
        }
        store
            .link_chat_thread(
                *id,
                &ChatThread {
                    platform: Platform::Matrix,
                    room: "!support:bench.example".into(),
                    thread_ref: format!("$root{i}"),
                },
            )
            .await?;
        if i % 2 == 0 {
            store
                .link_chat_thread(
                    *id,
                    &ChatThread {
                        platform: Platform::Slack,
                        room: "C0SUPPORT".into(),
                        thread_ref: format!("1765000000.{i:06}"),
                    },
                )
                .await?;
        }
    }
    Ok(())
}

/// The page times on a fresh PostgreSQL database (MAILROOM_TEST_PG_URL's
/// server, as the tests use), dropped afterwards.
pub async fn page_times_postgres(waiting: usize, requests: usize) -> anyhow::Result<PageTimes> {
    use sqlx::{Connection, Executor};
    let pg_admin = std::env::var("MAILROOM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_db = format!("mailroom_bench_{}", hex(4));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_admin)
        .await
        .context("PostgreSQL")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {pg_db}")))
        .await?;
    let base = pg_admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(pg_admin.clone());
    let times = page_times(&format!("{base}/{pg_db}"), waiting, requests).await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"
        )))
        .await;
    times
}
