//! The figures as a compact table of plain text, for a monospace block in
//! chat (`!mailroom stats`).

use super::{AgeBucket, Backlog, DurationStats, Figures, Hours, Workload};

/// "45 min", "3 h 05 min", "2 d 04 h"; "—" for no value.
pub fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "—".to_owned();
    };
    let min = ms / 60_000;
    let (d, h, m) = (min / 1440, min / 60 % 24, min % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m:02} min"),
        _ => format!("{d} d {h:02} h"),
    }
}

fn stats(s: &DurationStats) -> String {
    format!(
        "median {} · p90 {}",
        duration(s.median_ms),
        duration(s.p90_ms)
    )
}

/// The table: `title` names the scope (mailboxes, person or tag).
pub fn render(title: &str, f: &Figures, backlog: &Backlog, workload: &Workload) -> String {
    let mut out = format!("{title} · {} · {}", f.period.label(), f.period.zone);
    if f.hours == Hours::Business {
        out.push_str(" · business hours");
    }
    out.push('\n');
    let mut row = |name: &str, value: String| out.push_str(&format!("{name:<19}{value}\n"));
    row(
        "Received",
        format!("{} ({} unanswered)", f.received, f.unanswered),
    );
    row("First response", stats(&f.first_response));
    row("Resolved", f.resolved.to_string());
    row("Resolution time", stats(&f.resolution));
    row(
        "Replies per ticket",
        f.replies_per_ticket
            .map_or("—".to_owned(), |r| format!("{r:.1}")),
    );
    row(
        "Reopened",
        f.reopened.percent().map_or("—".to_owned(), |p| {
            format!("{p:.0} % ({} of {})", f.reopened.part, f.reopened.whole)
        }),
    );
    if let Some(sla) = &f.sla_met {
        row(
            "SLA met",
            sla.percent().map_or("—".to_owned(), |p| {
                format!(
                    "{p:.0} % ({} of {}; {} breached)",
                    sla.part,
                    sla.whole,
                    sla.whole - sla.part
                )
            }),
        );
    }
    let busiest = |counts: &[u64]| {
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
            .map(|(i, n)| (i, *n))
    };
    if let Some((h, n)) = busiest(&f.by_hour) {
        row("Busiest hour", format!("{h:02}:00–{:02}:00 ({n})", h + 1));
    }
    const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    if let Some((d, n)) = busiest(&f.by_weekday) {
        row("Busiest weekday", format!("{} ({n})", WEEKDAYS[d]));
    }
    let buckets: Vec<String> = AgeBucket::ALL
        .iter()
        .map(|b| format!("{} {}", b.label(), backlog.get(*b)))
        .collect();
    row(
        "Waiting now",
        format!("{} ({})", backlog.total(), buckets.join(" · ")),
    );
    out.push_str("Workload now       open claimed pending\n");
    for l in &workload.rows {
        let who = l.owner.as_ref().map_or("nobody", |a| a.as_str());
        out.push_str(&format!(
            "  {who:<22}{:>5}{:>8}{:>8}\n",
            l.open, l.claimed, l.pending
        ));
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(45 * 60_000 + 59_999)), "45 min");
        assert_eq!(duration(Some((3 * 60 + 5) * 60_000)), "3 h 05 min");
        assert_eq!(duration(Some((52 * 60 + 30) * 60_000)), "2 d 04 h");
    }
}
