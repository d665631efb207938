//! The team's figures, read from a [`TicketStore`]: one function a figure
//! set, each on SQLite and PostgreSQL alike. The arithmetic is in
//! [`crate::domain::analytics`]; the rows come from `sql/analytics.rs`;
//! the definitions are in `docs/ANALYTICS.md`.
//!
//! Durations are measured by the [`WorkTime`] handed in: [`WallClock`]
//! for elapsed time, [`BusinessHours`] for working time ([`Hours`] names
//! them: the API's `hours=wall|business`). The SLA share needs the
//! configured policies and calendars ([`SlaRules`]).

pub use crate::domain::analytics::{
    ActiveTicket, AgeBucket, Backlog, BusinessHours, Day, DayFigures, DurationStats, Figures,
    GroupBy, Hours, Load, NO_GROUP, Period, PeriodError, PeriodKind, PeriodRows, ReceivedTicket,
    ResolvedTicket, Scope, Share, SlaFacts, SlaOutcome, SlaRules, WaitingCount, WallClock,
    WorkTime, Workload,
};

use super::{StoreResult, TicketStore};

/// The period's figures for `scope`: received, first response, resolution,
/// replies per ticket, reopened share, volume by hour and weekday, a line
/// a day; no SLA share.
pub async fn figures(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    work: &dyn WorkTime,
) -> StoreResult<Figures> {
    figures_with_sla(store, scope, period, work, None).await
}

/// The same with the SLA share when `sla` is given and has policies
/// (`Figures::sla_met`).
pub async fn figures_with_sla(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    work: &dyn WorkTime,
    sla: Option<&SlaRules<'_>>,
) -> StoreResult<Figures> {
    let rows = rows(store, scope, period, sla).await?;
    Ok(Figures::compute(period, &rows, work))
}

/// The period's figures for `scope`, split by mailbox, person or tag, with
/// the SLA share when `sla` is given and has policies.
pub async fn breakdown(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    by: GroupBy,
    work: &dyn WorkTime,
    sla: Option<&SlaRules<'_>>,
) -> StoreResult<Vec<(String, Figures)>> {
    let rows = rows(store, scope, period, sla).await?;
    Ok(Figures::breakdown(period, &rows, by, work))
}

async fn rows(
    store: &dyn TicketStore,
    scope: &Scope,
    period: &Period,
    sla: Option<&SlaRules<'_>>,
) -> StoreResult<PeriodRows> {
    let sla = sla.filter(|r| !r.policies.is_empty());
    let mut rows = store
        .period_rows(scope, period.start_ms, period.end_ms, sla.is_some())
        .await?;
    if let Some(rules) = sla {
        rows.judge_sla(rules);
    }
    Ok(rows)
}

/// Tickets of `scope` waiting at `now_ms`, by age.
pub async fn backlog(store: &dyn TicketStore, scope: &Scope, now_ms: i64) -> StoreResult<Backlog> {
    Ok(waiting(store, scope, now_ms).await?.0)
}

/// Waiting tickets of `scope` per owner now.
pub async fn workload(store: &dyn TicketStore, scope: &Scope) -> StoreResult<Workload> {
    Ok(Workload::from_counts(
        &store.waiting_counts(scope, 0).await?,
    ))
}

/// Both at once, from one count in the database: the tickets of `scope`
/// waiting at `now_ms` by age, and per owner.
pub async fn waiting(
    store: &dyn TicketStore,
    scope: &Scope,
    now_ms: i64,
) -> StoreResult<(Backlog, Workload)> {
    let counts = store.waiting_counts(scope, now_ms).await?;
    Ok((
        Backlog::from_counts(&counts, now_ms),
        Workload::from_counts(&counts),
    ))
}
