//! The team's figures, read from a [`TicketStore`]: one function a figure
//! set, each on SQLite and PostgreSQL alike. The arithmetic is in
//! [`crate::domain::analytics`]; the rows come from `sql/analytics.rs`;
//! the definitions are in `docs/ANALYTICS.md`.
//!
//! Durations are measured by the [`WorkTime`] handed in: [`WallClock`]
//! for elapsed time, a business-hours calendar for working time.

pub use crate::domain::analytics::{
    ActiveTicket, AgeBucket, Backlog, Day, DayFigures, DurationStats, Figures, GroupBy, Load,
    NO_GROUP, Period, PeriodError, PeriodKind, PeriodRows, ReceivedTicket, ResolvedTicket, Scope,
    Share, WallClock, WorkTime, Workload,
};

use super::{StoreResult, TicketStore};

/// The period's figures for `scope`: received, first response, resolution,
/// replies per ticket, reopened share, volume by hour and weekday, a line
/// a day.
pub async fn figures(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    work: &dyn WorkTime,
) -> StoreResult<Figures> {
    let rows = store
        .period_rows(scope, period.start_ms, period.end_ms)
        .await?;
    Ok(Figures::compute(period, &rows, work))
}

/// The period's figures for `scope`, split by mailbox, person or tag.
pub async fn breakdown(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    by: GroupBy,
    work: &dyn WorkTime,
) -> StoreResult<Vec<(String, Figures)>> {
    let rows = store
        .period_rows(scope, period.start_ms, period.end_ms)
        .await?;
    Ok(Figures::breakdown(period, &rows, by, work))
}

/// Tickets of `scope` waiting at `now_ms`, by age.
pub async fn backlog(store: &dyn TicketStore, scope: &Scope, now_ms: i64) -> StoreResult<Backlog> {
    Ok(Backlog::compute(
        &store.active_tickets(scope).await?,
        now_ms,
    ))
}

/// Waiting tickets of `scope` per owner now.
pub async fn workload(store: &dyn TicketStore, scope: &Scope) -> StoreResult<Workload> {
    Ok(Workload::compute(&store.active_tickets(scope).await?))
}
