//! The dashboard's queue SLA column and the overview's filters, in a real
//! headless Chromium (see `dashboard.rs`), on SQLite and PostgreSQL, over
//! the store `dashboard.rs` seeds plus a `billing` tag and a ticket in a
//! second mailbox whose zone (Pacific/Auckland) is a day ahead of the
//! first's (UTC): each waiting ticket's SLA state as the chat card's
//! clock computes it, in the page and its CSV; the overview narrowed by
//! the links on the page to a mailbox (its days in its own zone), a person
//! or a tag, charts and CSV following; an unknown one refused by name.

use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use mailroom::domain::ids::{MailboxName, Tag};
use mailroom::domain::ticket::TicketEvent;

use crate::common::{TestDb, init_logs};
use crate::dashboard::{
    HOUR, MIN, act, attrs, browser, get, link, new_ticket_in, now, parse_csv, seed, serve, shot,
    texts,
};

fn sum(counts: &[String]) -> u32 {
    counts
        .iter()
        .map(|n| n.parse::<u32>().expect("a count"))
        .sum()
}

async fn sla_and_filters(db: TestDb, label: &str) {
    init_logs();
    let store = Arc::new(db.store().await);
    let seeded = seed(store.as_ref()).await;
    let now_ms = now().as_millisecond();
    let billing = Tag::parse("billing").expect("a tag");
    act(
        store.as_ref(),
        seeded.claimed,
        "@alice:localhost",
        TicketEvent::AddTag(billing),
        now_ms - HOUR,
    )
    .await;
    // Sunday 11:10 UTC is Monday 00:10 in Auckland.
    let sales = new_ticket_in(
        store.as_ref(),
        MailboxName::parse("sales").expect("a mailbox"),
        7,
        "A quote",
        "How much for ten?",
        now_ms - 20 * MIN,
    )
    .await;
    let served = serve(&db, store.clone()).await;
    let base = served.base.clone();
    let (_driver, c) = browser().await;
    let url = link(&served.app, "@alice:localhost").await;
    c.goto(&url).await.expect("goto");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#chart-new"))
        .await
        .expect("the overview after signing in");
    let session = c
        .get_named_cookie("mailroom_session")
        .await
        .expect("the session cookie")
        .value()
        .to_owned();

    // The queue's SLA column (support's policy: first response in 4h,
    // next in 1d, nudge at 90 %; sales has none): the 20-day-old and the
    // 5-day-old unanswered tickets are breached, the pending one stands,
    // the answered one is met, the 3-hour-old one is due in an hour.
    c.goto(&format!("{base}/queue")).await.expect("goto");
    let ids = attrs(&c, "#queue tr[data-ticket]", "data-ticket").await;
    let mut want: Vec<String> = seeded.waiting.iter().map(|t| t.get().to_string()).collect();
    want.push(sales.get().to_string());
    assert_eq!(ids, want);
    assert_eq!(
        attrs(&c, "#queue td.sla", "data-sla").await,
        ["breached", "breached", "paused", "met", "on track", "none"]
    );
    assert_eq!(
        texts(&c, "#queue td.sla").await,
        [
            "breached 19d 20h ago",
            "breached 4d 20h ago",
            "paused while pending (3h 58m left)",
            "met",
            "due in 1h",
            "—"
        ]
    );
    shot(&c, &format!("{label}-queue-sla")).await;
    let rows = parse_csv(
        &get(&base, "/queue.csv", Some(&session))
            .await
            .text()
            .await
            .expect("a body"),
    );
    let sla: Vec<(&str, &str)> = rows.iter().map(|r| (&*r[9], &*r[11])).collect();
    assert_eq!(
        sla,
        [
            ("breached 19d 20h ago", "breached"),
            ("breached 4d 20h ago", "breached"),
            ("paused while pending (3h 58m left)", "paused"),
            ("met", "met"),
            ("due in 1h", "on track"),
            ("—", "none"),
        ]
    );
    // An hour and a half later the 3-hour-old ticket is at risk, then breached.
    served.clock.advance(jiff::SignedDuration::from_mins(40));
    c.refresh().await.expect("refresh");
    let cells = texts(&c, "#queue td.sla").await;
    assert_eq!(cells[4], "at risk: due in 20m", "{cells:?}");
    served.clock.advance(jiff::SignedDuration::from_mins(50));
    c.refresh().await.expect("refresh");
    let cells = texts(&c, "#queue td.sla").await;
    assert_eq!(cells[4], "breached 30m ago", "{cells:?}");
    served.clock.set(now());

    // The overview narrowed by a tag, chosen by its link: the invoice
    // alone, claimed; the period links keep the tag.
    c.goto(&format!("{base}/?period=week")).await.expect("goto");
    let mut clicked = false;
    for a in c
        .find_all(Locator::Css("#filter-tag a"))
        .await
        .expect("the tag links")
    {
        if a.text().await.expect("text") == "billing" {
            a.click().await.expect("click");
            clicked = true;
            break;
        }
    }
    assert!(clicked, "a link for the billing tag");
    let tagged = url::Url::parse(&format!("{base}/?period=week&tag=billing")).expect("url");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_url(&tagged)
        .await
        .expect("the billing overview");
    assert_eq!(texts(&c, "#received").await, ["1"]);
    assert_eq!(texts(&c, "#claimed").await, ["1"]);
    assert_eq!(texts(&c, "#open").await, ["0"]);
    assert_eq!(
        sum(&attrs(&c, "#chart-new rect[data-count]", "data-count").await),
        1
    );
    let month = attrs(&c, "#period a", "href").await;
    assert!(
        month
            .iter()
            .any(|h| h.ends_with("/?period=month&tag=billing")),
        "{month:?}"
    );
    assert_eq!(
        attrs(&c, "#filter-tag a.here", "href").await.len(),
        1,
        "the chosen tag is marked"
    );
    shot(&c, &format!("{label}-overview-tag")).await;

    // With `[[sla]]` configured the overview has an SLA card; durations can
    // be counted in business hours, the choice kept in the links.
    c.goto(&format!("{base}/?period=week")).await.expect("goto");
    assert_eq!(texts(&c, "#sla-met").await.len(), 1, "the SLA card");
    assert_eq!(
        attrs(&c, "#filter-hours a", "href").await.len(),
        2,
        "elapsed and business hours"
    );
    let resp = get(&base, "/?period=week&hours=business", Some(&session)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("a body");
    assert!(
        body.contains("business hours") && body.contains("hours=business"),
        "the business-hours overview names itself and keeps the choice in its links"
    );

    // A person: Bob's one ticket, received on Tuesday and claimed.
    c.goto(&format!("{base}/?period=week&person=%40bob%3Alocalhost"))
        .await
        .expect("goto");
    assert_eq!(texts(&c, "#received").await, ["1"]);
    assert_eq!(texts(&c, "#claimed").await, ["1"]);
    assert_eq!(
        attrs(&c, "#chart-new rect[data-count]", "data-count").await,
        ["0", "1", "0", "0", "0", "0", "0"]
    );

    // A mailbox: sales' day is Monday 7 December in Auckland, its one
    // ticket at 00:10 (hour 0); for every mailbox (UTC) it is at 11.
    c.goto(&format!("{base}/?period=day&mailbox=sales"))
        .await
        .expect("goto");
    assert_eq!(texts(&c, "#zone").await, ["Pacific/Auckland"]);
    let day = attrs(&c, "#chart-new rect[data-count]", "data-count").await;
    assert_eq!(day.len(), 24);
    assert_eq!((day[0].as_str(), sum(&day)), ("1", 1), "{day:?}");
    shot(&c, &format!("{label}-overview-sales")).await;
    c.goto(&format!("{base}/?period=day")).await.expect("goto");
    assert_eq!(texts(&c, "#zone").await, ["UTC"]);
    let day = attrs(&c, "#chart-new rect[data-count]", "data-count").await;
    assert_eq!((day[8].as_str(), day[11].as_str()), ("1", "1"), "{day:?}");

    // The CSV follows the filter: sales' week starts on its Monday.
    let resp = get(
        &base,
        "/overview.csv?period=week&mailbox=sales",
        Some(&session),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .contains("overview-week-sales.csv")
    );
    let rows = parse_csv(&resp.text().await.expect("a body"));
    assert_eq!(rows.len(), 7);
    assert_eq!(
        (rows[0][0].as_str(), rows[0][1].as_str()),
        ("2026-12-07", "1")
    );
    let rows = parse_csv(
        &get(
            &base,
            "/overview.csv?period=week&tag=billing",
            Some(&session),
        )
        .await
        .text()
        .await
        .expect("a body"),
    );
    let received: u32 = rows
        .iter()
        .map(|r| r[1].parse::<u32>().expect("a count"))
        .sum();
    assert_eq!(received, 1);

    // Unknown values are refused by name, on the page and in the CSV.
    c.goto(&format!("{base}/?mailbox=nowhere"))
        .await
        .expect("goto");
    let problem = texts(&c, ".problem").await.join(" ");
    assert!(
        problem.contains("\"nowhere\"") && problem.contains("sales, support"),
        "{problem}"
    );
    shot(&c, &format!("{label}-overview-unknown")).await;
    for (path, named) in [
        ("/?mailbox=nowhere", "nowhere"),
        ("/?person=%40zed%3Alocalhost", "@zed:localhost"),
        ("/?tag=nosuchtag", "nosuchtag"),
        ("/?hours=sometimes", "sometimes"),
        ("/overview.csv?tag=nosuchtag", "nosuchtag"),
        ("/overview.csv?mailbox=Bad%20Name", "Bad Name"),
    ] {
        let resp = get(&base, path, Some(&session)).await;
        assert_eq!(resp.status(), 400, "{path}");
        let body = resp.text().await.expect("a body");
        assert!(body.contains(named), "{path}: {body}");
    }

    let _ = c.close().await;
    served.cancel.cancel();
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn queue_sla_and_overview_filters_in_chromium_on_sqlite() {
    sla_and_filters(TestDb::sqlite(), "sqlite-filters").await;
}

#[tokio::test]
async fn queue_sla_and_overview_filters_in_chromium_on_postgres() {
    sla_and_filters(TestDb::postgres().await, "postgres-filters").await;
}
