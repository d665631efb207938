//! The HTML pages: each a template filled from [`super::views`], wrapped
//! in the one layout. Every page but the sign-in ones checks the session
//! first.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::WebHandles;
use super::auth::{base_path, session, to_signin};
use super::chart;
use super::filter::OverviewFilter;
use super::views::{self, Overview, PersonRow, QueueRow, TicketView};
use crate::domain::ids::{Agent, TicketId};
use crate::store::StoreError;
use crate::store::analytics::PeriodKind;

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    title: &'a str,
    base: &'a str,
    who: Option<String>,
    nav: &'a str,
    refresh: Option<String>,
    body: &'a str,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInBody<'a> {
    problem: Option<&'a str>,
    session_hours: u64,
}

#[derive(Template)]
#[template(path = "signed_in.html")]
struct SignedInBody<'a> {
    base: &'a str,
    agent: &'a str,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewBody<'a> {
    base: &'a str,
    o: &'a Overview,
    period: &'static str,
    periods: Vec<&'static str>,
    /// (element id, caption, SVG) a chart.
    charts: Vec<(&'static str, &'a str, String)>,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueueBody<'a> {
    base: &'a str,
    rows: &'a [QueueRow],
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeopleBody<'a> {
    base: &'a str,
    rows: &'a [PersonRow],
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketBody<'a> {
    base: &'a str,
    t: &'a TicketView,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemBody<'a> {
    heading: &'a str,
    message: &'a str,
}

/// A page to render.
pub enum Page {
    SignIn { problem: Option<String> },
    SignedIn { agent: String },
    Overview(Overview),
    Queue(Vec<QueueRow>),
    People(Vec<PersonRow>),
    Ticket(Box<TicketView>),
    Problem { heading: String, message: String },
}

/// The page in the layout, as a response (200; callers set another status).
pub fn render(h: &WebHandles, who: Option<&Agent>, page: Page) -> Response {
    let base = base_path(&h.settings);
    let (title, nav, refresh, body) = match &page {
        Page::SignIn { problem } => (
            "Sign in",
            "",
            None,
            SignInBody {
                problem: problem.as_deref(),
                session_hours: h.settings.session_ttl.as_secs().div_ceil(3600),
            }
            .render(),
        ),
        Page::SignedIn { agent } => (
            "Signed in",
            "",
            Some(format!("{base}/")),
            SignedInBody { base: &base, agent }.render(),
        ),
        Page::Overview(o) => {
            let charts = o
                .charts
                .iter()
                .map(|c| {
                    let svg = if c.line {
                        chart::line(&c.series)
                    } else {
                        chart::bars(&c.series)
                    };
                    (c.id, c.caption.as_str(), svg)
                })
                .collect();
            let body = OverviewBody {
                base: &base,
                o,
                period: o.kind.as_str(),
                periods: PeriodKind::ALL.iter().map(|p| p.as_str()).collect(),
                charts,
            };
            ("Overview", "overview", None, body.render())
        }
        Page::Queue(rows) => (
            "Queue",
            "queue",
            None,
            QueueBody { base: &base, rows }.render(),
        ),
        Page::People(rows) => (
            "People",
            "people",
            None,
            PeopleBody { base: &base, rows }.render(),
        ),
        Page::Ticket(t) => (
            "Ticket",
            "queue",
            None,
            TicketBody { base: &base, t }.render(),
        ),
        Page::Problem { heading, message } => (
            "Problem",
            "",
            None,
            ProblemBody { heading, message }.render(),
        ),
    };
    let title = match &page {
        Page::Ticket(t) => format!("#{} {}", t.id, t.subject),
        _ => title.to_owned(),
    };
    let html = body.and_then(|body| {
        Layout {
            title: &title,
            base: &base,
            who: who.map(|w| w.to_string()),
            nav,
            refresh,
            body: &body,
        }
        .render()
    });
    match html {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The teammate signed in, or the response that sends the browser to sign in.
pub async fn signed_in(h: &WebHandles, headers: &HeaderMap) -> Result<Agent, Response> {
    match session(h, headers).await {
        Ok(Some(agent)) => Ok(agent),
        Ok(None) => Err(to_signin(h)),
        Err(e) => Err(store_failed(h, None, e)),
    }
}

/// A store failure, as a page that says so (503: it may pass).
pub fn store_failed(h: &WebHandles, who: Option<&Agent>, e: StoreError) -> Response {
    tracing::error!(error = %e, "dashboard: the store failed");
    let page = Page::Problem {
        heading: "The database could not be read".into(),
        message: "Try again shortly; the log has the details.".into(),
    };
    let mut resp = render(h, who, page);
    *resp.status_mut() = if e.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    resp
}

fn not_found(h: &WebHandles, who: &Agent, message: String) -> Response {
    let page = Page::Problem {
        heading: "Not found".into(),
        message,
    };
    let mut resp = render(h, Some(who), page);
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

/// The overview's parameters: `period` (day, week, month), and the
/// filters `mailbox`, `person`, `tag`.
#[derive(Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
    mailbox: Option<String>,
    person: Option<String>,
    tag: Option<String>,
    hours: Option<String>,
}

impl PeriodQuery {
    /// The period and filter asked for; `Err` holds the problem's heading
    /// and message (a bad request) or the store's failure.
    pub async fn parse(
        &self,
        h: &WebHandles,
    ) -> Result<Result<(PeriodKind, OverviewFilter), (&'static str, String)>, StoreError> {
        let period = match self.period() {
            Ok(p) => p,
            Err(message) => return Ok(Err(("Unknown period", message))),
        };
        let filter = OverviewFilter::parse(
            h,
            self.mailbox.as_deref(),
            self.person.as_deref(),
            self.tag.as_deref(),
            self.hours.as_deref(),
        )
        .await?;
        Ok(filter
            .map(|f| (period, f))
            .map_err(|message| ("Unknown filter", message)))
    }

    /// The period asked for (this week by default); an unknown one is an
    /// error naming it.
    pub fn period(&self) -> Result<PeriodKind, String> {
        match self.period.as_deref() {
            None | Some("") => Ok(PeriodKind::Week),
            Some(p) => PeriodKind::parse(p)
                .ok_or_else(|| format!("unknown period {p:?}: use day, week or month")),
        }
    }
}

pub async fn overview(
    State(h): State<WebHandles>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let who = match signed_in(&h, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (period, filter) = match q.parse(&h).await {
        Ok(Ok(asked)) => asked,
        Ok(Err((heading, message))) => {
            let page = Page::Problem {
                heading: heading.into(),
                message,
            };
            let mut resp = render(&h, Some(&who), page);
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return resp;
        }
        Err(e) => return store_failed(&h, Some(&who), e),
    };
    match views::overview(&h, period, &filter).await {
        Ok(o) => render(&h, Some(&who), Page::Overview(o)),
        Err(e) => store_failed(&h, Some(&who), e),
    }
}

pub async fn queue(State(h): State<WebHandles>, headers: HeaderMap) -> Response {
    let who = match signed_in(&h, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match views::queue(&h).await {
        Ok(rows) => render(&h, Some(&who), Page::Queue(rows)),
        Err(e) => store_failed(&h, Some(&who), e),
    }
}

pub async fn people(State(h): State<WebHandles>, headers: HeaderMap) -> Response {
    let who = match signed_in(&h, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match views::people(&h).await {
        Ok(rows) => render(&h, Some(&who), Page::People(rows)),
        Err(e) => store_failed(&h, Some(&who), e),
    }
}

pub async fn ticket(
    State(h): State<WebHandles>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match signed_in(&h, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(id) = TicketId::parse(&id) else {
        return not_found(&h, &who, format!("{id:?} is not a ticket number."));
    };
    match views::ticket(&h, id).await {
        Ok(Some(t)) => render(&h, Some(&who), Page::Ticket(Box::new(t))),
        Ok(None) => not_found(&h, &who, format!("There is no ticket {id}.")),
        Err(e) => store_failed(&h, Some(&who), e),
    }
}

/// `/` and anything unknown under it that is not a page.
pub async fn fallback(State(h): State<WebHandles>, headers: HeaderMap) -> Response {
    let who = match signed_in(&h, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    not_found(&h, &who, "There is no such page.".into())
}

/// A CSV download, named.
pub fn csv_response(name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}
