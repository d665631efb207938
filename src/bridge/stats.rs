//! `!mailroom stats [day|week|month] [@person|#tag] [business]` in a room,
//! and Slack's `/mailroom stats …`: the current period's figures for the
//! mailboxes that post into the room (durations in wall-clock or business
//! time; the SLA share when `[[sla]]` is configured), as a table, and a
//! chart uploaded into the room.
//! Figures: `store::analytics`; definitions: `docs/ANALYTICS.md`.

use crate::chat::{FileUpload, chart};
use crate::domain::analytics::table;
use crate::domain::chat::Platform;
use crate::domain::command::{StatsFilter, StatsQuery};
use crate::domain::time::Zone;
use crate::store::StoreError;
use crate::store::analytics::{self, Period, Scope, SlaRules};

use super::App;

/// The answer: the table's text and the chart.
pub(crate) struct StatsAnswer {
    pub table: String,
    pub chart: FileUpload,
}

/// The figures `query` asks for, in the room's mailboxes' zone, or a
/// sentence for the teammate when the query cannot be answered.
pub(crate) async fn answer(
    app: &App,
    platform: Platform,
    room: &str,
    query: &StatsQuery,
) -> Result<Result<StatsAnswer, String>, StoreError> {
    // The mailboxes posting into this room; a room no mailbox posts into
    // (an operators' room) sees every mailbox.
    let here: Vec<_> = app
        .settings
        .mailboxes
        .iter()
        .filter(|m| m.chat.room(platform).as_deref() == Some(room))
        .collect();
    let zone = here
        .first()
        .copied()
        .or(app.settings.mailboxes.first())
        .map_or_else(Zone::utc, |m| m.time_zone.clone());
    let mut scope = Scope {
        mailboxes: here.iter().map(|m| m.name.clone()).collect(),
        ..Scope::default()
    };
    let mut title = if here.is_empty() {
        "All mailboxes".to_owned()
    } else {
        let names: Vec<&str> = here.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    };
    match &query.filter {
        StatsFilter::Everyone => {}
        StatsFilter::Person(user) => {
            let Some(agent) = user.as_agent() else {
                return Ok(Err(format!(
                    "⚠️ !mailroom stats needs a full user id such as @alice:example.org \
                     (or a Slack mention), not {user}."
                )));
            };
            title.push_str(&format!(" · {agent}"));
            scope.person = Some(agent);
        }
        StatsFilter::Tag(tag) => {
            title.push_str(&format!(" · #{tag}"));
            scope.tag = Some(tag.clone());
        }
    }
    let now = app.clock.now();
    let period = match Period::containing(query.period, now, &zone) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("⚠️ {e}"))),
    };
    let store = app.store.as_ref();
    let work = query.hours.work_time(&app.settings.calendars);
    let sla = SlaRules {
        policies: &app.settings.sla,
        calendars: &app.settings.calendars,
    };
    let figures =
        analytics::figures_with_sla(store, &scope, &period, work.as_ref(), Some(&sla)).await?;
    let (backlog, workload) = analytics::waiting(store, &scope, now.as_millisecond()).await?;
    let busiest = figures.days.iter().map(|d| d.received).max().unwrap_or(0);
    let slowest = figures
        .days
        .iter()
        .filter_map(|d| d.first_response_median_ms)
        .max();
    let mut text = table::render(&title, &figures, &backlog, &workload);
    text.push_str(&format!(
        "\nChart: bars = tickets received a day (tallest {busiest}); \
         line = that day's median first response (top {}).",
        table::duration(slowest)
    ));
    Ok(Ok(StatsAnswer {
        table: text,
        chart: FileUpload {
            name: format!("mailroom-stats-{}-{}.png", query.period, period.first_day),
            content_type: "image/png".to_owned(),
            data: chart::render(&figures.days),
        },
    }))
}

/// Answers in the room: the table, then the chart.
pub(crate) async fn in_room(
    app: &App,
    platform: Platform,
    room: &str,
    query: &StatsQuery,
) -> Result<(), StoreError> {
    let Some(chat) = app.chats.get(&platform) else {
        return Ok(());
    };
    match answer(app, platform, room, query).await? {
        Err(sentence) => {
            if let Err(e) = chat.room_notice(room, &sentence).await {
                tracing::warn!(error = %e, "could not answer in the room");
            }
        }
        Ok(a) => {
            if let Err(e) = chat.room_table(room, &a.table).await {
                tracing::warn!(error = %e, "could not post the figures");
            }
            if let Err(e) = chat.room_upload(room, a.chart).await {
                tracing::warn!(error = %e, "could not upload the figures' chart");
            }
        }
    }
    Ok(())
}

/// Answers a slash command: the table for the teammate alone (returned),
/// the chart uploaded into the channel.
pub(crate) async fn privately(
    app: &App,
    platform: Platform,
    room: &str,
    query: &StatsQuery,
) -> Result<String, StoreError> {
    match answer(app, platform, room, query).await? {
        Err(sentence) => Ok(sentence),
        Ok(a) => {
            if let Some(chat) = app.chats.get(&platform)
                && let Err(e) = chat.room_upload(room, a.chart).await
            {
                tracing::warn!(error = %e, "could not upload the figures' chart");
            }
            Ok(format!("```\n{}\n```", a.table))
        }
    }
}
