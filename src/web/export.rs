//! Every table of the dashboard as CSV (`/queue.csv`, `/people.csv`,
//! `/overview.csv`, `/tickets/{id}/messages.csv`, `/tickets/{id}/history.csv`),
//! from the same rows as the pages. The `csv` crate quotes fields with
//! commas, quotes or line breaks as RFC 4180 says.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::WebHandles;
use super::pages::{PeriodQuery, csv_response, signed_in, store_failed};
use super::views;
use crate::domain::ids::TicketId;

/// Rows to CSV bytes. Writing into a `Vec` cannot fail but for a field the
/// writer refuses, which none of ours (plain strings and numbers) is.
fn to_csv<const N: usize>(head: [&str; N], rows: impl Iterator<Item = [String; N]>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = w.write_record(head).is_ok();
    for r in rows {
        ok &= w.write_record(&r).is_ok();
    }
    if !ok {
        tracing::warn!("dashboard: a CSV row could not be written");
    }
    w.into_inner().unwrap_or_default()
}

pub async fn queue(State(h): State<WebHandles>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&h, &headers).await {
        return r;
    }
    match views::queue(&h).await {
        Ok(rows) => {
            let head = [
                "ticket",
                "subject",
                "customer",
                "mailbox",
                "status",
                "priority",
                "owner",
                "created",
                "age_minutes",
                "sla",
                "chat",
                "sla_state",
            ];
            let body = to_csv(
                head,
                rows.into_iter().map(|r| {
                    let chat: Vec<String> = r.links.iter().map(|l| l.url.clone()).collect();
                    [
                        r.id.to_string(),
                        r.subject,
                        r.customer,
                        r.mailbox,
                        r.status.to_owned(),
                        r.priority,
                        r.owner,
                        r.created,
                        r.age_mins.to_string(),
                        r.sla.to_string(),
                        chat.join(" "),
                        r.sla.state().to_owned(),
                    ]
                }),
            );
            csv_response("queue.csv", body)
        }
        Err(e) => store_failed(&h, None, e),
    }
}

pub async fn people(State(h): State<WebHandles>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&h, &headers).await {
        return r;
    }
    match views::people(&h).await {
        Ok(rows) => {
            let head = ["who", "open", "claimed", "pending", "total", "oldest"];
            let body = to_csv(
                head,
                rows.into_iter().map(|r| {
                    [
                        r.who,
                        r.open.to_string(),
                        r.claimed.to_string(),
                        r.pending.to_string(),
                        r.total.to_string(),
                        r.oldest,
                    ]
                }),
            );
            csv_response("people.csv", body)
        }
        Err(e) => store_failed(&h, None, e),
    }
}

pub async fn overview(
    State(h): State<WebHandles>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    if let Err(r) = signed_in(&h, &headers).await {
        return r;
    }
    let (period, filter) = match q.parse(&h).await {
        Ok(Ok(asked)) => asked,
        Ok(Err((_, message))) => return (StatusCode::BAD_REQUEST, message).into_response(),
        Err(e) => return store_failed(&h, None, e),
    };
    match views::overview(&h, period, &filter).await {
        Ok(o) => {
            let head = ["day", "received", "median_first_answer_minutes"];
            let rows = o.days.iter().map(|(day, received, first)| {
                [
                    day.clone(),
                    received.to_string(),
                    first.map(super::chart::show).unwrap_or_default(),
                ]
            });
            let body = to_csv(head, rows);
            csv_response(&overview_name(period.as_str(), &filter), body)
        }
        Err(e) => store_failed(&h, None, e),
    }
}

/// `overview-week.csv`, `overview-week-support-billing.csv`: the period
/// and the filter, in characters safe in a file name.
fn overview_name(period: &str, f: &super::filter::OverviewFilter) -> String {
    let mut name = format!("overview-{period}");
    let parts = [
        f.mailbox.as_ref().map(|m| m.to_string()),
        f.person.as_ref().map(|p| p.to_string()),
        f.tag.as_ref().map(|t| t.to_string()),
    ];
    for p in parts.into_iter().flatten() {
        name.push('-');
        name.extend(
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    name + ".csv"
}

async fn ticket_view(
    h: &WebHandles,
    headers: &HeaderMap,
    id: &str,
) -> Result<views::TicketView, Response> {
    signed_in(h, headers).await?;
    let Ok(id) = TicketId::parse(id) else {
        return Err((StatusCode::NOT_FOUND, "no such ticket").into_response());
    };
    match views::ticket(h, id).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err((StatusCode::NOT_FOUND, "no such ticket").into_response()),
        Err(e) => Err(store_failed(h, None, e)),
    }
}

pub async fn messages(
    State(h): State<WebHandles>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let t = match ticket_view(&h, &headers, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let head = [
        "at",
        "direction",
        "from",
        "author",
        "subject",
        "state",
        "text",
    ];
    let body = to_csv(
        head,
        t.messages.into_iter().map(|m| {
            [
                m.at,
                m.direction.to_owned(),
                m.from,
                m.author,
                m.subject,
                m.state.to_owned(),
                m.text,
            ]
        }),
    );
    csv_response(&format!("ticket-{}-messages.csv", t.id), body)
}

pub async fn history(
    State(h): State<WebHandles>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let t = match ticket_view(&h, &headers, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let head = ["at", "actor", "action", "details"];
    let body = to_csv(
        head,
        t.history
            .into_iter()
            .map(|a| [a.at, a.actor, a.action, a.details]),
    );
    csv_response(&format!("ticket-{}-history.csv", t.id), body)
}
