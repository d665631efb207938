//! `mailroom-bench`: figures for mailroom on the local stack (see
//! `scripts/bench`). Prints a table and one `METRIC <name> <value> <unit>`
//! line per figure.
//!
//! Measured: the floors (the mail server's and the chat server's own delays),
//! mailroom's end-to-end latency, backlog throughput against the chat
//! server's own posting rate, mailroom's own ingest cost, and, from a
//! separate `mailroom run` process, startup time and memory (idle, backlog
//! peak, a 25 MB attachment's peak), and the same latency into the fake
//! Slack of the tests, reply latency (`!reply` queued → sent and filed), the
//! latency of a reply written outside mailroom (APPEND to Sent → its post
//! in the ticket's thread), a month's figures over 100,000 tickets, the
//! web dashboard's page times over 2,000 waiting tickets, how storing
//! and posting scale from one to three `mailroom run` replicas on
//! PostgreSQL over many mailboxes, and what 200 mailboxes cost one
//! `mailroom run` (start-up, memory, connections, a burst to all of them).
//!
//! One module per stage (`floors`, `latency`, `slack`, `backlog`, `reply`,
//! `sent`, `process`, `ingest`, `stats`, `web`, `scale`, `many`); what they
//! share is in `common` (the stack, users, sample mail), `bridge` (the
//! bench's mailroom, in-process or as a process) and `daemon` (a `mailroom
//! run` process, its memory and other resources).

// matrix-sdk's futures are deeply nested types.
#![recursion_limit = "256"]

/// The fake Slack the integration tests use (Slack's documented wire format),
/// here as the chat server for `slack_latency_*`.
#[path = "../../../tests/fake_slack/mod.rs"]
mod fake_slack;

mod backlog;
mod bridge;
mod common;
mod cpu;
mod daemon;
mod floors;
mod ingest;
mod latency;
mod many;
mod process;
mod reply;
mod scale;
mod sent;
mod slack;
mod stats;
mod web;

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::backlog::backlog;
use crate::common::{env, tempfile_dir};
use crate::floors::{chat_floor, imap_floor};
use crate::ingest::{ingest, ingest_postgres};
use crate::latency::latency;
use crate::process::process_figures;
use crate::reply::reply_latency;
use crate::scale::scale;
use crate::sent::sent_latency;
use crate::slack::slack_latency;
use crate::stats::{stats_month, stats_month_postgres};

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Runs one stage, saying so on stderr, and stops it if it outlives every
/// reasonable duration (the full run's longest stage takes about 10 minutes,
/// a smoke run's a few seconds):
/// the bench always ends by itself.
async fn bounded<T>(
    limit: Duration,
    name: &str,
    stage: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    eprintln!("mailroom-bench: {name}…");
    let started = Instant::now();
    let out = tokio::time::timeout(limit, stage)
        .await
        .map_err(|_| anyhow!("{name}: still running after {} s; stopped", limit.as_secs()))?
        .context(name.to_owned())?;
    eprintln!(
        "mailroom-bench: {name} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

const STAGES: &[&str] = &[
    "floors", "latency", "slack", "backlog", "reply", "sent", "process", "ingest", "stats", "web",
    "scale", "many",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mailroom::mail::tls::install_crypto_provider();
    let mut only: Option<Vec<String>> = None;
    let (mut smoke, mut quick) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--quick" => quick = true,
            "--only" => {
                let list = args.next().unwrap_or_default();
                let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = names.iter().find(|n| !STAGES.contains(&n.as_str())) {
                    bail!("--only: no stage {bad:?}; stages: {}", STAGES.join(", "));
                }
                only = Some(names);
            }
            _ => bail!(
                "mailroom-bench: unknown argument {a:?} (expected --quick, --smoke or --only STAGE,…)"
            ),
        }
    }
    let run = |stage: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == stage));
    let env = env()?;
    // --smoke: every stage with a handful of emails, to check the bench
    // itself works (scripts/test runs it); its figures mean little.
    let (floor_n, lat_n, ingest_n, backlog_n) = if smoke {
        (3, 5, 50, 20)
    } else if quick {
        (10, 30, 1_000, 1_000)
    } else {
        (30, 200, 5_000, 10_000)
    };
    let limit = Duration::from_secs(if smoke { 180 } else { 1_800 });
    // Names made at run time (a metric per page and database) live here,
    // before `metrics`, which borrows them.
    let mut web_metrics: Vec<(String, f64)> = Vec::new();
    let mut metrics: Vec<(&str, f64, &str)> = Vec::new();

    let mut floors = None;
    if run("floors") {
        let mut f = bounded(limit, "imap floor", imap_floor(&env, floor_n)).await?;
        let imap_p50 = percentile(&mut f, 50.0);
        metrics.push(("imap_floor_p50_ms", imap_p50, "ms"));
        let mut c = bounded(limit, "chat floor", chat_floor(&env, floor_n)).await?;
        let chat_p50 = percentile(&mut c, 50.0);
        metrics.push(("chat_floor_p50_ms", chat_p50, "ms"));
        floors = Some(imap_p50 + chat_p50);
    }

    if run("latency") {
        let mut l = bounded(
            limit,
            "latency",
            latency(&env, lat_n, Duration::from_millis(250)),
        )
        .await?;
        let p50 = percentile(&mut l, 50.0);
        metrics.push(("latency_p50_ms", p50, "ms"));
        metrics.push(("latency_p99_ms", percentile(&mut l, 99.0), "ms"));
        if let Some(floors) = floors {
            metrics.push(("latency_overhead_p50_ms", p50 - floors, "ms"));
        }
    }

    if run("slack") {
        // Slack allows about one post a second per channel: a steady stream
        // just under it.
        let mut sl = bounded(
            limit,
            "slack latency",
            slack_latency(&env, lat_n, Duration::from_millis(1_100)),
        )
        .await?;
        metrics.push(("slack_latency_p50_ms", percentile(&mut sl, 50.0), "ms"));
        metrics.push(("slack_latency_p99_ms", percentile(&mut sl, 99.0), "ms"));
    }

    if run("backlog") {
        let bl = bounded(limit, "backlog", backlog(&env, backlog_n)).await?;
        metrics.push(("backlog_emails_per_s", bl.rate, "emails/s"));
        metrics.push(("synapse_raw_posts_per_s", bl.raw_rate, "posts/s"));
        metrics.push(("synapse_raw_before_posts_per_s", bl.raw_before, "posts/s"));
        metrics.push(("synapse_raw_after_posts_per_s", bl.raw_after, "posts/s"));
        metrics.push(("backlog_vs_raw", bl.rate / bl.raw_rate, "ratio"));
        metrics.push(("rss_backlog_peak_mb", bl.peak, "MiB"));
    }

    if run("reply") {
        let mut r = bounded(
            limit,
            "reply latency",
            reply_latency(&env, lat_n, Duration::from_millis(300)),
        )
        .await?;
        metrics.push(("reply_p50_ms", percentile(&mut r, 50.0), "ms"));
        metrics.push(("reply_p99_ms", percentile(&mut r, 99.0), "ms"));
    }

    if run("sent") {
        let mut s = bounded(
            limit,
            "sent latency",
            sent_latency(&env, lat_n, Duration::from_millis(300)),
        )
        .await?;
        metrics.push(("sent_reply_p50_ms", percentile(&mut s, 50.0), "ms"));
        metrics.push(("sent_reply_p99_ms", percentile(&mut s, 99.0), "ms"));
    }

    if run("process") {
        let (startup, idle, idle_anon, big_peak) =
            bounded(limit, "startup and memory", process_figures(&env)).await?;
        metrics.push(("startup_ms", startup, "ms"));
        metrics.push(("rss_idle_mb", idle, "MiB"));
        metrics.push(("rss_idle_anon_mb", idle_anon, "MiB"));
        metrics.push(("rss_25mb_attachment_peak_mb", big_peak, "MiB"));
    }

    if run("ingest") {
        let dir = tempfile_dir()?;
        let sqlite = format!("sqlite://{}", dir.join("ingest.db").display());
        metrics.push((
            "ingest_emails_per_s_sqlite",
            bounded(limit, "ingest sqlite", ingest(&sqlite, ingest_n)).await?,
            "emails/s",
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let pg_rate = bounded(limit, "ingest postgres", ingest_postgres(ingest_n)).await?;
        metrics.push(("ingest_emails_per_s_postgres", pg_rate, "emails/s"));
    }

    if run("stats") {
        // A month over 100,000 tickets (four months of history): the
        // `!mailroom stats month` figure (docs/PERFORMANCE.md).
        let tickets = if smoke { 2_000 } else { 100_000 };
        let dir = tempfile_dir()?;
        let sqlite = format!("sqlite://{}", dir.join("stats.db").display());
        let ms = bounded(limit, "stats sqlite", stats_month(&sqlite, tickets)).await?;
        let _ = std::fs::remove_dir_all(&dir);
        let pg = bounded(limit, "stats postgres", stats_month_postgres(tickets)).await?;
        let (sqlite_name, pg_name) = if smoke {
            (
                "stats_month_smoke_sqlite_ms",
                "stats_month_smoke_postgres_ms",
            )
        } else {
            ("stats_month_100k_sqlite_ms", "stats_month_100k_postgres_ms")
        };
        metrics.push((sqlite_name, ms, "ms"));
        metrics.push((pg_name, pg, "ms"));
    }

    if run("web") {
        // The dashboard over 2,000 waiting tickets (docs/PERFORMANCE.md).
        let (waiting, requests) = if smoke { (100, 3) } else { (2_000, 30) };
        let dir = tempfile_dir()?;
        let sqlite = format!("sqlite://{}", dir.join("web.db").display());
        let lite = bounded(
            limit,
            "web sqlite",
            web::page_times(&sqlite, waiting, requests),
        )
        .await?;
        let _ = std::fs::remove_dir_all(&dir);
        let pg = bounded(
            limit,
            "web postgres",
            web::page_times_postgres(waiting, requests),
        )
        .await?;
        for (db, times) in [("sqlite", lite), ("postgres", pg)] {
            for ((page, _), (p50, p99)) in web::PAGES.iter().zip(times) {
                let p50_name = format!("web_{page}_p50_ms_{db}");
                let p99_name = format!("web_{page}_p99_ms_{db}");
                web_metrics.push((p50_name, p50));
                web_metrics.push((p99_name, p99));
            }
        }
    }
    for (name, value) in &web_metrics {
        metrics.push((name.as_str(), *value, "ms"));
    }
    if run("scale") {
        // Mailboxes × emails each, then 1 and 3 replicas (docs/PERFORMANCE.md).
        let (mailboxes, per, window) = if smoke {
            (2, 5, 30)
        } else if quick {
            (10, 200, 20)
        } else {
            (50, 1_000, 30)
        };
        let runs = bounded(
            limit,
            "scale",
            scale(&env, mailboxes, per, &[1, 3], Duration::from_secs(window)),
        )
        .await?;
        for r in &runs {
            eprintln!(
                "mailroom-bench: scale: {} replica(s): {} emails stored at {:.0}/s (first after {:.1} s), {} of them posted at {:.1} threads/s",
                r.replicas, r.emails, r.store_rate, r.first_s, r.threads, r.threads_rate
            );
            eprintln!(
                "mailroom-bench: scale: {} replica(s): storing: {}",
                r.replicas, r.storing_cpu
            );
            eprintln!(
                "mailroom-bench: scale: {} replica(s): posting after storing: {}",
                r.replicas, r.posting_cpu
            );
        }
        if let [one, three] = runs.as_slice() {
            metrics.push(("scale_store_emails_per_s_1", one.store_rate, "emails/s"));
            metrics.push(("scale_store_emails_per_s_3", three.store_rate, "emails/s"));
            metrics.push(("scale_threads_per_s_1", one.threads_rate, "threads/s"));
            metrics.push(("scale_threads_per_s_3", three.threads_rate, "threads/s"));
            metrics.push((
                "scale_store_ratio",
                three.store_rate / one.store_rate,
                "ratio",
            ));
        }
    }

    if run("many") {
        // Issue #18: 200 mailboxes in one process (docs/PERFORMANCE.md).
        let mailboxes = if smoke {
            5
        } else if quick {
            50
        } else {
            200
        };
        let m = bounded(limit, "many", many::many(&env, mailboxes)).await?;
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let build = if cfg!(debug_assertions) {
            "; this is a debug build, the targets are for a release build"
        } else {
            ""
        };
        eprintln!(
            "mailroom-bench: many: {} mailboxes: ready in {:.0} ms (matrix connected at {:.0} ms; target ≤ {:.0} ms: {}), idle RSS {:.1} MiB (target ≤ {:.0} MiB: {}), burst peak {:.1} MiB ({}){build}",
            m.mailboxes,
            m.ready_ms,
            m.matrix_ms,
            many::TARGET_READY_MS,
            verdict(m.ready_ms <= many::TARGET_READY_MS),
            m.rss_idle_mb,
            many::TARGET_RSS_MB,
            verdict(m.rss_idle_mb <= many::TARGET_RSS_MB),
            m.rss_peak_mb,
            verdict(m.rss_peak_mb <= many::TARGET_RSS_MB),
        );
        metrics.push(("many_mailboxes", m.mailboxes as f64, "mailboxes"));
        metrics.push(("many_ready_ms", m.ready_ms, "ms"));
        metrics.push(("many_login_floor_ms", m.login_floor_ms, "ms"));
        metrics.push(("many_start_cpu_ms", m.start_cpu_ms, "ms"));
        metrics.push(("many_rss_start_peak_mb", m.rss_start_peak_mb, "MiB"));
        metrics.push(("many_rss_idle_mb", m.rss_idle_mb, "MiB"));
        metrics.push(("many_rss_idle_anon_mb", m.rss_idle_anon_mb, "MiB"));
        metrics.push((
            "many_imap_connections",
            m.imap_connections as f64,
            "connections",
        ));
        metrics.push(("many_threads", m.threads as f64, "threads"));
        metrics.push(("many_open_fds", m.open_fds as f64, "fds"));
        metrics.push(("many_burst_stored_ms", m.burst_stored_ms, "ms"));
        match m.burst_posted_ms {
            Some(posted) => metrics.push(("many_burst_posted_ms", posted, "ms")),
            None => eprintln!(
                "mailroom-bench: many: only {} of {} threads posted within the window",
                m.posted, m.mailboxes
            ),
        }
        metrics.push(("many_rss_peak_mb", m.rss_peak_mb, "MiB"));
        metrics.push(("many_stop_ms", m.stop_ms, "ms"));
    }

    if let Some((name, ..)) = metrics.iter().find(|(_, v, _)| !v.is_finite()) {
        bail!("{name}: no figure (is /proc mounted?)");
    }
    // A ratio with one decimal would print 0.75 as 0.8, the target itself;
    // counts have no decimals.
    let digits = |unit: &str| match unit {
        "ratio" => 2,
        "mailboxes" | "connections" | "threads" | "fds" => 0,
        _ => 1,
    };
    println!("{:<30} {:>12}  unit", "metric", "value");
    for (name, value, unit) in &metrics {
        println!("{name:<30} {value:>12.d$}  {unit}", d = digits(unit));
    }
    for (name, value, unit) in &metrics {
        println!("METRIC {name} {value:.d$} {unit}", d = digits(unit));
    }
    Ok(())
}
