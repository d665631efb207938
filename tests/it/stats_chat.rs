//! `!mailroom stats` in chat: Slack's `/mailroom stats` answers the table
//! privately and uploads the chart (a PNG of the chart's size) into the
//! channel; a wrong word is named with the command's right form; with
//! `[[sla]]` the table has an SLA row, and `business` says its durations
//! count business hours. Each test runs on SQLite and PostgreSQL.

use crate::common::TestDb;
use crate::slack::{Mode, World};

/// One policy for every ticket: the table then has an "SLA met" row.
const SLA: &str = "\n[[sla]]\nname = \"everyone\"\nfirst_response = \"4h\"\n";

#[tokio::test]
async fn slack_stats_answer_privately_and_upload_the_chart_on_sqlite() {
    slack_stats_answer_privately_and_upload_the_chart(TestDb::sqlite()).await;
}

#[tokio::test]
async fn slack_stats_answer_privately_and_upload_the_chart_on_postgres() {
    slack_stats_answer_privately_and_upload_the_chart(TestDb::postgres().await).await;
}

async fn slack_stats_answer_privately_and_upload_the_chart(db: TestDb) {
    let mut w = World::new(Mode::Socket).await;
    w.db = db;
    let run = w.start(w.settings(Mode::Socket, "")).await;
    w.email("stats1@example.net", "Where is my parcel", "It never came.")
        .await;
    w.slack
        .slash_command(&w.bob, &w.channel, "/mailroom", "stats week")
        .await
        .unwrap();
    let answer = w
        .wait("the figures", |w| {
            w.slack
                .ephemerals(&w.bob)
                .into_iter()
                .find(|e| e.text.contains("Received"))
        })
        .await;
    assert!(
        answer.text.starts_with("```") && answer.text.contains("1 (1 unanswered)"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("Waiting now"), "{}", answer.text);
    // No [[sla]]: no SLA row; wall-clock durations unless asked.
    assert!(!answer.text.contains("SLA met"), "{}", answer.text);
    assert!(!answer.text.contains("business hours"), "{}", answer.text);
    let chart = w
        .wait("the chart in the channel", |w| {
            w.slack
                .messages(&w.channel)
                .into_iter()
                .filter(|m| m.thread_ts.is_none())
                .flat_map(|m| m.files)
                .find(|f| f.mimetype == "image/png")
        })
        .await;
    let (width, height, _) = mailroom::chat::chart::decode(&chart.data).unwrap();
    assert_eq!(
        (width, height),
        (mailroom::chat::chart::WIDTH, mailroom::chat::chart::HEIGHT)
    );
    assert!(
        chart.name.starts_with("mailroom-stats-week-"),
        "{}",
        chart.name
    );

    w.slack
        .slash_command(&w.bob, &w.channel, "/mailroom", "stats year")
        .await
        .unwrap();
    let mistake = w
        .wait("the answer to a wrong period", |w| {
            w.slack
                .ephemerals(&w.bob)
                .into_iter()
                .find(|e| e.text.contains("neither a period"))
        })
        .await;
    assert!(
        mistake.text.contains("/mailroom stats [day|week|month]"),
        "{}",
        mistake.text
    );
    run.stop().await;
    std::mem::replace(&mut w.db, TestDb::sqlite())
        .cleanup()
        .await;
}

#[tokio::test]
async fn slack_stats_in_business_hours_with_an_sla_row_on_sqlite() {
    slack_stats_in_business_hours_with_an_sla_row(TestDb::sqlite()).await;
}

#[tokio::test]
async fn slack_stats_in_business_hours_with_an_sla_row_on_postgres() {
    slack_stats_in_business_hours_with_an_sla_row(TestDb::postgres().await).await;
}

/// With `[[sla]]` the table has an "SLA met" row (nothing resolved yet:
/// "—"); `business` marks the durations as business time.
async fn slack_stats_in_business_hours_with_an_sla_row(db: TestDb) {
    let mut w = World::new(Mode::Socket).await;
    w.db = db;
    let run = w.start(w.settings(Mode::Socket, SLA)).await;
    w.email("stats2@example.net", "Wrong size", "Too small.")
        .await;
    w.slack
        .slash_command(&w.bob, &w.channel, "/mailroom", "stats business month")
        .await
        .unwrap();
    let answer = w
        .wait("the figures", |w| {
            w.slack
                .ephemerals(&w.bob)
                .into_iter()
                .find(|e| e.text.contains("Received"))
        })
        .await;
    assert!(
        answer.text.contains("1 (1 unanswered)") && answer.text.contains("business hours"),
        "{}",
        answer.text
    );
    assert!(
        answer
            .text
            .lines()
            .any(|l| l.starts_with("SLA met") && l.trim_end().ends_with('—')),
        "{}",
        answer.text
    );
    run.stop().await;
    std::mem::replace(&mut w.db, TestDb::sqlite())
        .cleanup()
        .await;
}

#[tokio::test]
async fn matrix_stats_post_the_table_and_an_image_on_sqlite() {
    matrix_stats_post_the_table_and_an_image(TestDb::sqlite()).await;
}

#[tokio::test]
async fn matrix_stats_post_the_table_and_an_image_on_postgres() {
    matrix_stats_post_the_table_and_an_image(TestDb::postgres().await).await;
}

/// On Matrix the table is a notice in a monospace block and the chart an
/// `m.image` in the room whose PNG decodes to the chart's size.
async fn matrix_stats_post_the_table_and_an_image(db: TestDb) {
    use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
    use matrix_sdk::ruma::OwnedMxcUri;
    use matrix_sdk::ruma::events::room::MediaSource;
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

    use crate::matrix::{World, body, sender, wait_event};

    let mut w = World::new().await;
    w.db = db;
    let run = w.start(w.parse(&w.settings_text(0, ""))).await;
    w.email("stats-m1@example.net", "Broken hinge", "It broke.")
        .await;
    w.alice
        .room(&w.room)
        .send(RoomMessageEventContent::text_plain("!mailroom stats month"))
        .await
        .unwrap();
    let table = wait_event(&w.alice, &w.room, "the figures", |e| {
        sender(e) == w.bot.0 && body(e).contains("First response")
    })
    .await;
    assert!(body(&table).contains("1 (1 unanswered)"), "{table}");
    let html = table["content"]["formatted_body"].as_str().unwrap_or("");
    assert!(html.starts_with("<pre><code>"), "{html}");
    let image = wait_event(&w.alice, &w.room, "the chart", |e| {
        sender(e) == w.bot.0 && e["content"]["msgtype"] == "m.image"
    })
    .await;
    assert!(
        image["content"]["m.relates_to"].is_null(),
        "in the room, not a thread"
    );
    let url: OwnedMxcUri = image["content"]["url"].as_str().unwrap_or("").into();
    let png = w
        .alice
        .client
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source: MediaSource::Plain(url),
                format: MediaFormat::File,
            },
            false,
        )
        .await
        .unwrap();
    let (width, height, _) = mailroom::chat::chart::decode(&png).unwrap();
    assert_eq!(
        (width, height),
        (mailroom::chat::chart::WIDTH, mailroom::chat::chart::HEIGHT)
    );
    run.stop().await;
    std::mem::replace(&mut w.db, TestDb::sqlite())
        .cleanup()
        .await;
}
