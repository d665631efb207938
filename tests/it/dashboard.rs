//! The web dashboard in a real headless Chromium, driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/stack install`), against a store seeded through the store API,
//! on SQLite and PostgreSQL: sign in by a link from the chat command's
//! bridge function, every page renders the seeded rows, the charts carry
//! one element per data point, the CSV exports parse, a reused or expired
//! link is refused and a page without a session sends the browser to the
//! sign-in explanation. Screenshots go to `<target>/test-artefacts/dashboard/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use jiff::Timestamp;
use mailroom::bridge::App;
use mailroom::config::Settings;
use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::email::{ContentHash, Party};
use mailroom::domain::ids::{
    Actor, Agent, EmailAddress, MailboxName, MessageId, TicketId, TicketToken,
};
use mailroom::domain::ticket::TicketEvent;
use mailroom::domain::time::ManualClock;
use mailroom::store::*;
use tokio_util::sync::CancellationToken;

use crate::common::{TestDb, init_logs, poll_every};

pub(crate) const MIN: i64 = 60_000;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;
/// The address `auth.test` gives for the fake Slack's workspace.
pub(crate) const SLACK_WORKSPACE: &str = "https://fake-team.slack.com/";

/// The fixed "now" of the seeded store (UTC, so days are plain).
pub(crate) fn now() -> Timestamp {
    "2026-12-06T11:30:00Z".parse().expect("a timestamp")
}

pub(crate) fn agent(s: &str) -> Agent {
    Agent::parse(s).expect("an agent")
}

/// Where screenshots go: beside the build, never in the source tree.
fn artefacts() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .map_or(tmp.clone(), |t| t.to_path_buf())
        .join("test-artefacts/dashboard");
    std::fs::create_dir_all(&dir).expect("the artefacts folder");
    dir
}

/// chromedriver on a free loopback port, killed (by its pid) when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub(crate) async fn browser() -> (Driver, Client) {
    mailroom::mail::tls::install_crypto_provider();
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: run `scripts/stack install` (it installs Debian's chromium and chromium-driver)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("a profile folder");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    poll_every(
        "chromedriver answers",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        // The machine has no way out: Chromium's own traffic would only fail.
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!("a JSON object")
    };
    let client = ClientBuilder::rustls()
        .expect("a connector")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// A real mail as a customer's client writes it.
pub(crate) fn mail(id: &str, from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Customer <{from}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nDate: Sun, 06 Dec 2026 08:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

pub(crate) fn mb() -> MailboxName {
    MailboxName::parse("support").expect("a mailbox name")
}

/// Stores a new ticket's first mail at `at_ms`.
pub(crate) async fn new_ticket(
    s: &dyn TicketStore,
    n: u32,
    subject: &str,
    body: &str,
    at_ms: i64,
) -> TicketId {
    new_ticket_in(s, mb(), n, subject, body, at_ms).await
}

/// Stores a new ticket's first mail in `mailbox` at `at_ms`.
pub(crate) async fn new_ticket_in(
    s: &dyn TicketStore,
    mailbox: MailboxName,
    n: u32,
    subject: &str,
    body: &str,
    at_ms: i64,
) -> TicketId {
    let id = format!("seed-{n}@customer.example");
    let from = format!("customer{n}@customer.example");
    let raw = mail(&id, &from, subject, body);
    // The token's letters are its bytes modulo 32: n in base 32, so every
    // seeded ticket has its own.
    let mut token = [0u8; TicketToken::LEN];
    for (i, b) in token.iter_mut().enumerate() {
        *b = ((u64::from(n) >> (5 * i)) & 31) as u8;
    }
    let new = NewInbound {
        mailbox,
        checkpoint: None,
        imap_uid: None,
        email: NewEmail {
            message_id: MessageId::parse(&id).expect("a message id"),
            content_hash: ContentHash::from_stored(format!("seed-{n}")),
            from: Party::new(
                Some("Customer".into()),
                EmailAddress::parse(&from).expect("an address"),
            ),
            subject: subject.into(),
            sent_at: Some(at_ms / 1000),
            raw,
            participants: vec![EmailAddress::parse(&from).expect("an address")],
        },
        destination: Destination::New {
            token: TicketToken::from_random(token),
        },
        automatic: None,
        route: Default::default(),
        rooms: Default::default(),
        refused_merges: vec![],
        post_to: vec![],
        now_ms: at_ms,
    };
    match s.record_inbound(new).await.expect("stored") {
        Recorded::NewTicket { ticket, .. } => ticket,
        other => panic!("expected a new ticket, got {other:?}"),
    }
}

pub(crate) async fn act(
    s: &dyn TicketStore,
    t: TicketId,
    who: &str,
    event: TicketEvent,
    at_ms: i64,
) {
    let applied = s
        .apply(t, &Actor::Agent(agent(who)), &event, &[], at_ms)
        .await
        .expect("applied");
    assert!(matches!(applied, Applied::Changed { .. }), "{applied:?}");
}

/// A reply by `who`, sent at `at_ms`: the ticket's first response.
pub(crate) async fn answer(s: &dyn TicketStore, t: TicketId, who: &str, at_ms: i64) {
    let id = format!("reply-{}@example.com", t.get());
    let email = s
        .queue_reply(NewReply {
            ticket: t,
            mailbox: mb(),
            author: agent(who),
            message_id: MessageId::parse(&id).expect("a message id"),
            content_hash: ContentHash::from_stored(format!("reply-{}", t.get())),
            from: Party::new(
                Some("Support".into()),
                EmailAddress::parse("support@example.com").expect("an address"),
            ),
            subject: "Re: your mail".into(),
            raw: mail(&id, "support@example.com", "Re: your mail", "We are on it."),
            send_at_ms: at_ms,
            now_ms: at_ms,
        })
        .await
        .expect("queued");
    // Earlier replies leave their filing in Sent behind; those are done here.
    loop {
        let job = s.next_job(at_ms).await.expect("a job").expect("the send");
        match job.spec {
            JobSpec::SendReply { email_id } if email_id == email => {
                s.reply_sent(&job, email, &[], at_ms).await.expect("sent");
                return;
            }
            _ => s
                .finish_job(&job, &JobOutcome::Done, at_ms)
                .await
                .expect("done"),
        }
    }
}

/// What was seeded, to compare the pages with.
pub(crate) struct Seeded {
    /// Tickets waiting (open, claimed, pending), oldest first.
    pub(crate) waiting: Vec<TicketId>,
    pub(crate) hostile: TicketId,
    pub(crate) refund: TicketId,
    pub(crate) claimed: TicketId,
}

/// Six tickets over the last three weeks: open, claimed, pending, closed,
/// two answered (after 30 and 90 minutes), one with a hostile subject.
pub(crate) async fn seed(s: &dyn TicketStore) -> Seeded {
    let now = now().as_millisecond();
    let old = new_ticket(s, 6, "Old question", "Still there?", now - 20 * DAY).await;
    let hostile = new_ticket(
        s,
        5,
        "<script>alert(1)</script> hello",
        "<b>not bold</b> & <img src=x onerror=alert(2)>",
        now - 5 * DAY,
    )
    .await;
    act(
        s,
        hostile,
        "@bob:localhost",
        TicketEvent::Claim(agent("@bob:localhost")),
        now - 5 * DAY + HOUR,
    )
    .await;
    let closed = new_ticket(
        s,
        4,
        "Password reset",
        "I cannot sign in.",
        now - 3 * DAY - HOUR,
    )
    .await;
    answer(
        s,
        closed,
        "@alice:localhost",
        now - 3 * DAY - HOUR + 90 * MIN,
    )
    .await;
    act(
        s,
        closed,
        "@alice:localhost",
        TicketEvent::Close,
        now - 3 * DAY,
    )
    .await;
    let pending = new_ticket(s, 3, "Delivery date", "When does it ship?", now - 2 * DAY).await;
    act(
        s,
        pending,
        "@alice:localhost",
        TicketEvent::Claim(agent("@alice:localhost")),
        now - 2 * DAY + MIN,
    )
    .await;
    act(
        s,
        pending,
        "@alice:localhost",
        TicketEvent::MarkPending,
        now - 2 * DAY + 2 * MIN,
    )
    .await;
    let claimed = new_ticket(
        s,
        2,
        "Invoice 42",
        "The invoice is wrong.",
        now - DAY - 2 * HOUR,
    )
    .await;
    act(
        s,
        claimed,
        "@alice:localhost",
        TicketEvent::Claim(agent("@alice:localhost")),
        now - DAY - 2 * HOUR + MIN,
    )
    .await;
    answer(
        s,
        claimed,
        "@alice:localhost",
        now - DAY - 2 * HOUR + 30 * MIN,
    )
    .await;
    let refund = new_ticket(
        s,
        1,
        "Refund, \"urgent\"",
        "Please refund order 7,\nthank you.",
        now - 3 * HOUR,
    )
    .await;
    s.link_chat_thread(
        refund,
        &ChatThread {
            platform: Platform::Matrix,
            room: "!support:localhost".into(),
            thread_ref: "$root1".into(),
        },
    )
    .await
    .expect("linked");
    s.link_chat_thread(
        claimed,
        &ChatThread {
            platform: Platform::Slack,
            room: "C0SUPPORT".into(),
            thread_ref: "1765000000.000100".into(),
        },
    )
    .await
    .expect("linked");
    Seeded {
        waiting: vec![old, hostile, pending, claimed, refund],
        hostile,
        refund,
        claimed,
    }
}

/// The dashboard served in-process on a loopback port, its clock at [`now`].
pub(crate) struct Served {
    pub(crate) app: Arc<App>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) base: String,
    pub(crate) cancel: CancellationToken,
}

pub(crate) async fn serve(db: &TestDb, store: Arc<mailroom::store::sql::SqlStore>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    let text = format!(
        "[database]\nurl = \"{}\"\n\n[[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\n\
         display_name = \"Example Support\"\ntime_zone = \"UTC\"\n  [mailbox.imap]\n  host = \"127.0.0.1\"\n  \
         password = \"unused\"\n  [mailbox.smtp]\n  host = \"127.0.0.1\"\n\n\
         [[mailbox]]\nname = \"sales\"\naddress = \"sales@example.com\"\n\
         display_name = \"Example Sales\"\ntime_zone = \"Pacific/Auckland\"\n  [mailbox.imap]\n  host = \"127.0.0.1\"\n  \
         password = \"unused\"\n  [mailbox.smtp]\n  host = \"127.0.0.1\"\n\n\
         [[sla]]\nname = \"support\"\nmailbox = \"support\"\nfirst_response = \"4h\"\n\
         next_response = \"1d\"\nnudge_at = 90\n\n[web]\nlisten = \"{addr}\"\n",
        db.url_text
    );
    let settings = Settings::parse(&text, &|_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let mut app = App::new(settings, store as Arc<dyn TicketStore>, Vec::new());
    let clock = Arc::new(ManualClock::new(now()));
    app.clock = clock.clone();
    let app = Arc::new(app);
    let cancel = CancellationToken::new();
    // No Slack adapter runs here: the workspace's address is the one the
    // fake Slack's `auth.test` gives (dashboard_chat checks that a running
    // mailroom takes it from there).
    let mut handles = app.web_handles();
    handles.slack_workspace = Some(SLACK_WORKSPACE.to_owned());
    tokio::spawn(mailroom::web::serve(handles, listener, cancel.clone()));
    Served {
        app,
        clock,
        base: format!("http://{addr}"),
        cancel,
    }
}

/// A sign-in link as `!mailroom dashboard` answers it.
pub(crate) async fn link(app: &App, who: &str) -> String {
    let answer = mailroom::bridge::web::link_answer(app, Platform::Matrix, &agent(who)).await;
    let url = answer
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {answer:?}"));
    assert!(url.contains("/login?token="), "{url}");
    url.to_owned()
}

pub(crate) async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.expect("find") {
        out.push(e.text().await.expect("text"));
    }
    out
}

pub(crate) async fn attrs(c: &Client, css: &str, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.expect("find") {
        out.push(e.attr(attr).await.expect("attr").unwrap_or_default());
    }
    out
}

pub(crate) async fn shot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(artefacts().join(format!("{name}.png")), &png).expect("saved");
    png
}

/// GET with the browser's session cookie, without following redirects.
pub(crate) async fn get(base: &str, path: &str, session: Option<&str>) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let mut req = http.get(format!("{base}{path}"));
    if let Some(s) = session {
        req = req.header("Cookie", format!("mailroom_session={s}"));
    }
    req.send().await.expect("an answer")
}

pub(crate) fn parse_csv(body: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(body.as_bytes())
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
        .collect()
}

async fn the_dashboard_in_chromium(db: TestDb, label: &str) {
    init_logs();
    let store = Arc::new(db.store().await);
    let seeded = seed(store.as_ref()).await;
    let served = serve(&db, store.clone()).await;
    let base = served.base.clone();
    let (_driver, c) = browser().await;

    // No session: every page sends the browser to the sign-in explanation.
    c.goto(&format!("{base}/queue")).await.expect("goto");
    assert_eq!(c.current_url().await.expect("url").path(), "/signin");
    let signin = c
        .find(Locator::Css("#signin"))
        .await
        .expect("the explanation")
        .text()
        .await
        .expect("text");
    assert!(signin.contains("!mailroom dashboard"), "{signin}");
    shot(&c, &format!("{label}-signin")).await;

    // The link from chat signs in, and the page moves on to the overview.
    let url = link(&served.app, "@alice:localhost").await;
    c.goto(&url).await.expect("goto");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#chart-new"))
        .await
        .expect("the overview after signing in");
    assert_eq!(c.current_url().await.expect("url").path(), "/");
    let cookie = c
        .get_named_cookie("mailroom_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    let session = cookie.value().to_owned();

    // This week (Monday 30 Nov to Sunday 6 Dec): seven daily bars with the
    // five tickets received; the two answers (30 and 90 minutes) are the
    // line's two points; what waits now is in the cards.
    let counts = attrs(&c, "#chart-new rect[data-count]", "data-count").await;
    assert_eq!(counts, ["0", "1", "0", "1", "1", "1", "1"]);
    let mut minutes = attrs(&c, "#chart-first-response circle[data-value]", "data-value").await;
    minutes.sort();
    assert_eq!(minutes, ["30", "90"]);
    assert_eq!(texts(&c, "#open").await, ["2"]);
    assert_eq!(texts(&c, "#claimed").await, ["2"]);
    assert_eq!(texts(&c, "#pending").await, ["1"]);
    assert_eq!(texts(&c, "#received").await, ["5"]);
    assert_eq!(texts(&c, "#resolved").await, ["1"]);
    let weekdays = attrs(&c, "#chart-weekdays rect[data-count]", "data-count").await;
    assert_eq!(weekdays, counts, "Monday first, like the days of the week");
    let backlog = attrs(&c, "#chart-backlog rect[data-count]", "data-count").await;
    assert_eq!(
        backlog,
        ["1", "2", "1", "1"],
        "under 1 day, 1-3, 3-7, 7 days or more"
    );
    let png = shot(&c, &format!("{label}-overview")).await;
    if std::env::var_os("MAILROOM_DOCS_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(docs, &png).expect("docs/dashboard.png");
    }

    // The period switch: today is 24 hourly bars with one ticket (08:30);
    // December is 31 daily bars with the five of December.
    c.find(Locator::Css("#period a[href$='period=day']"))
        .await
        .expect("the day switch")
        .click()
        .await
        .expect("click");
    let day_url = url::Url::parse(&format!("{base}/?period=day")).expect("url");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_url(&day_url)
        .await
        .expect("the day");
    let day = attrs(&c, "#chart-new rect[data-count]", "data-count").await;
    assert_eq!(day.len(), 24);
    let busy: Vec<(usize, &String)> = day.iter().enumerate().filter(|(_, n)| *n != "0").collect();
    assert_eq!(busy, [(8, &"1".to_owned())]);
    c.goto(&format!("{base}/?period=month"))
        .await
        .expect("goto");
    let month = attrs(&c, "#chart-new rect[data-count]", "data-count").await;
    assert_eq!(month.len(), 31);
    let sum: u32 = month
        .iter()
        .map(|n| n.parse::<u32>().expect("a count"))
        .sum();
    assert_eq!(sum, 5);
    shot(&c, &format!("{label}-overview-month")).await;
    // An unknown period is named, not guessed.
    assert_eq!(
        get(&base, "/?period=year", Some(&session)).await.status(),
        400
    );

    // The queue: the five waiting tickets, oldest first, with their owners
    // and links into chat.
    c.goto(&format!("{base}/queue")).await.expect("goto");
    let ids = attrs(&c, "#queue tr[data-ticket]", "data-ticket").await;
    let want: Vec<String> = seeded.waiting.iter().map(|t| t.get().to_string()).collect();
    assert_eq!(ids, want);
    let owners = texts(&c, "#queue td.owner").await;
    assert_eq!(
        owners,
        [
            "—",
            "@bob:localhost",
            "@alice:localhost",
            "@alice:localhost",
            "—"
        ]
    );
    let links = attrs(&c, "#queue a[target=_blank]", "href").await;
    assert!(
        links.contains(&"https://matrix.to/#/!support:localhost/$root1".to_owned()),
        "{links:?}"
    );
    assert!(
        links.contains(
            &"https://fake-team.slack.com/archives/C0SUPPORT/p1765000000000100\
              ?thread_ts=1765000000.000100&cid=C0SUPPORT"
                .to_owned()
        ),
        "{links:?}"
    );
    // The hostile subject is text, not markup.
    let scripts = c.find_all(Locator::Css("script")).await.expect("find");
    assert!(
        scripts.is_empty(),
        "no script element made it into the page"
    );
    let queue_text = c
        .find(Locator::Css("#queue"))
        .await
        .expect("queue")
        .text()
        .await
        .expect("text");
    assert!(
        queue_text.contains("<script>alert(1)</script> hello"),
        "{queue_text}"
    );
    shot(&c, &format!("{label}-queue")).await;

    // A ticket: its messages as text and its whole history.
    c.goto(&format!("{base}/tickets/{}", seeded.hostile.get()))
        .await
        .expect("goto");
    let messages = texts(&c, "#messages pre").await;
    let messages: Vec<&str> = messages.iter().map(|m| m.trim()).collect();
    assert_eq!(messages, ["<b>not bold</b> & <img src=x onerror=alert(2)>"]);
    assert!(
        c.find_all(Locator::Css("#messages img, #messages b"))
            .await
            .expect("find")
            .is_empty()
    );
    let history = texts(&c, "#history tbody tr").await;
    assert!(history[0].contains("created"), "{history:?}");
    assert!(
        history
            .iter()
            .any(|h| h.contains("@bob:localhost") && h.contains("claim")),
        "{history:?}"
    );
    shot(&c, &format!("{label}-ticket")).await;

    // People: Alice has two, Bob one, two are nobody's (listed last).
    c.goto(&format!("{base}/people")).await.expect("goto");
    assert_eq!(
        attrs(&c, "#people tr[data-who]", "data-who").await,
        ["@alice:localhost", "@bob:localhost", "—"]
    );
    assert_eq!(texts(&c, "#people td.total").await, ["2", "1", "2"]);
    shot(&c, &format!("{label}-people")).await;

    // Every table as CSV, quoted properly: the refund's subject keeps its
    // comma and quotes, its text its line break.
    let queue = get(&base, "/queue.csv", Some(&session)).await;
    assert_eq!(queue.status(), 200);
    assert!(
        queue.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv")
    );
    let rows = parse_csv(&queue.text().await.expect("a body"));
    assert_eq!(rows.len(), 5);
    let refund = rows
        .iter()
        .find(|r| r[0] == seeded.refund.get().to_string())
        .expect("the refund");
    assert_eq!(refund[1], "Refund, \"urgent\"");
    assert_eq!(refund[10], "https://matrix.to/#/!support:localhost/$root1");
    let people = parse_csv(
        &get(&base, "/people.csv", Some(&session))
            .await
            .text()
            .await
            .expect("a body"),
    );
    assert_eq!(people.len(), 3);
    let overview = parse_csv(
        &get(&base, "/overview.csv?period=week", Some(&session))
            .await
            .text()
            .await
            .expect("a body"),
    );
    assert_eq!(overview.len(), 7);
    let messages = parse_csv(
        &get(
            &base,
            &format!("/tickets/{}/messages.csv", seeded.refund.get()),
            Some(&session),
        )
        .await
        .text()
        .await
        .expect("a body"),
    );
    assert_eq!(
        messages[0][6].trim_end(),
        "Please refund order 7,\nthank you."
    );
    let history = parse_csv(
        &get(
            &base,
            &format!("/tickets/{}/history.csv", seeded.hostile.get()),
            Some(&session),
        )
        .await
        .text()
        .await
        .expect("a body"),
    );
    assert!(history.iter().any(|r| r[2] == "claim"), "{history:?}");

    // Only GET: a POST changes nothing and is refused.
    let post = reqwest::Client::new()
        .post(format!("{base}/queue"))
        .header("Cookie", format!("mailroom_session={session}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(post.status(), 405);

    // The link again: refused as used (410), in the browser and over HTTP.
    c.goto(&url).await.expect("goto");
    let problem = c
        .find(Locator::Css("#problem"))
        .await
        .expect("a refusal")
        .text()
        .await
        .expect("text");
    assert!(problem.contains("already used"), "{problem}");
    shot(&c, &format!("{label}-reused")).await;
    assert_eq!(
        get(&base, url.trim_start_matches(&base), None)
            .await
            .status(),
        410
    );

    // A link left longer than its ten minutes: refused as expired.
    let late = link(&served.app, "@bob:localhost").await;
    served.clock.advance(jiff::SignedDuration::from_mins(11));
    c.delete_all_cookies().await.expect("signed out");
    c.goto(&late).await.expect("goto");
    let problem = c
        .find(Locator::Css("#problem"))
        .await
        .expect("a refusal")
        .text()
        .await
        .expect("text");
    assert!(problem.contains("expired"), "{problem}");
    assert!(
        c.get_named_cookie("mailroom_session").await.is_err(),
        "no session from an expired link"
    );
    // And without the cookie, a page is the sign-in explanation again.
    c.goto(&format!("{base}/people")).await.expect("goto");
    assert_eq!(c.current_url().await.expect("url").path(), "/signin");
    let none = get(&base, "/queue.csv", None).await;
    assert_eq!(none.status(), 303);
    assert_eq!(none.headers()["location"], "/signin");
    // A made-up session is no session.
    assert_eq!(get(&base, "/people", Some("forged")).await.status(), 303);

    let _ = c.close().await;
    served.cancel.cancel();
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_dashboard_in_chromium_on_sqlite() {
    the_dashboard_in_chromium(TestDb::sqlite(), "sqlite").await;
}

#[tokio::test]
async fn the_dashboard_in_chromium_on_postgres() {
    the_dashboard_in_chromium(TestDb::postgres().await, "postgres").await;
}

/// p50 and p99 of `times`, in milliseconds.
fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

/// Page times with a store of 500 tickets (200 waiting), 50 requests a
/// page after one warm-up, printed for the notes; a page slower than ten
/// seconds at p99 fails.
async fn page_times(db: TestDb, label: &str) {
    init_logs();
    let store = Arc::new(db.store().await);
    let now = now().as_millisecond();
    for n in 0..500u32 {
        let at = now - i64::from(n) * 90 * MIN;
        let t = new_ticket(
            store.as_ref(),
            n + 1,
            &format!("Question {n}"),
            "Hello,\nhow do I…?",
            at,
        )
        .await;
        match n % 5 {
            0 => {
                act(
                    store.as_ref(),
                    t,
                    "@alice:localhost",
                    TicketEvent::Claim(agent("@alice:localhost")),
                    at + MIN,
                )
                .await
            }
            1 => {}
            _ => {
                act(
                    store.as_ref(),
                    t,
                    "@bob:localhost",
                    TicketEvent::Close,
                    at + MIN,
                )
                .await
            }
        }
    }
    let served = serve(&db, store.clone()).await;
    let url = link(&served.app, "@alice:localhost").await;
    let signed = get(&served.base, url.trim_start_matches(&served.base), None).await;
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let session = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("a session");
    let pages = [
        "/",
        "/?period=month",
        "/queue",
        "/people",
        "/tickets/1",
        "/queue.csv",
    ];
    let mut report = Vec::new();
    for page in pages {
        assert_eq!(
            get(&served.base, page, Some(&session)).await.status(),
            200,
            "{page}"
        );
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            let resp = get(&served.base, page, Some(&session)).await;
            let _ = resp.bytes().await.expect("a body");
            times.push(started.elapsed());
        }
        let (p50, p99) = percentiles(times);
        let line = format!("{label} {page}: p50 {p50:.1} ms, p99 {p99:.1} ms");
        println!("dashboard page time, 500 tickets: {line}");
        report.push((page, p99));
    }
    // A bound for gross regressions only (a page that reads the whole store
    // per ticket): the suite runs on shared 2-core machines, where the full
    // run's load alone has pushed /queue.csv past 4 s at p99. The figures
    // themselves are for the notes (README, Web dashboard).
    for (page, p99) in report {
        assert!(p99 < 10_000.0, "{page} took {p99:.1} ms at p99");
    }
    served.cancel.cancel();
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn dashboard_page_times_on_sqlite() {
    page_times(TestDb::sqlite(), "sqlite").await;
}

#[tokio::test]
async fn dashboard_page_times_on_postgres() {
    page_times(TestDb::postgres().await, "postgres").await;
}
