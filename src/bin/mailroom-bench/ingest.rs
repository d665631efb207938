//! The `ingest` stage: mailroom's own cost per email, on SQLite and
//! PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use mailroom::bridge::App;
use mailroom::bridge::ingest::MailboxIngest;
use mailroom::config::Settings;
use mailroom::domain::mailbox::Checkpoint;
use mailroom::mail::ingest::{Fetched, IngestError, Pipeline, parse_fetched};
use mailroom::store::TicketStore;
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;

use crate::common::{hex, mail};

/// mailroom's own cost per email: parse + thread + store (+ the rendering a
/// chat post does), chat posting left out.
pub async fn ingest(url: &str, emails: usize) -> anyhow::Result<f64> {
    let text = format!(
        "[database]\nurl = \"{url}\"\n[[mailbox]]\nname = \"support\"\naddress = \"support@bench.example\"\ndisplay_name = \"Bench\"\n\
         loop_guard = {{ max_messages = 1000000 }}\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n"
    );
    let settings = Settings::parse(&text, &|_| None).map_err(|p| anyhow!("{p:?}"))?;
    let url = DatabaseUrl::parse(url).map_err(|e| anyhow!(e))?;
    let store = Arc::new(SqlStore::connect(&url, 4).await?);
    store.migrate().await?;
    let app = Arc::new(App::new(
        settings,
        store.clone() as Arc<dyn TicketStore>,
        Vec::new(),
    ));
    let sink = MailboxIngest::new(
        app.clone(),
        mailroom::domain::ids::MailboxName::parse("support")?,
    );
    let raws: Vec<Vec<u8>> = (0..emails)
        .map(|i| {
            mail(
                &format!("c{}@bench.example", i % 500),
                "support@bench.example",
                &format!("in{i}@bench"),
                &format!("Order {}", i % 700),
            )
        })
        .collect();
    let start = Instant::now();
    // In batches, one transaction each, as ingest stores what one IMAP FETCH
    // brought, through the IMAP side's own pipeline: a batch is parsed (and
    // here also rendered, the cost of its chat posts) off the async threads
    // while the one before it is stored.
    let most = mailroom::mail::ingest::BATCH_MESSAGES;
    let mut pipeline = Pipeline::new(&sink);
    let mut raws = raws.into_iter().enumerate().peekable();
    while raws.peek().is_some() {
        let batch: Vec<(Checkpoint, Vec<u8>)> = raws
            .by_ref()
            .take(most)
            .map(|(i, raw)| {
                let cp = Checkpoint {
                    uid_validity: 1,
                    last_uid: i as u32 + 1,
                };
                (cp, raw)
            })
            .collect();
        pipeline
            .push(async { Ok(Some((prepared(batch).await?, Instant::now()))) })
            .await?;
    }
    pipeline.finish().await?;
    let rate = emails as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

/// A batch parsed as the IMAP side parses it, then rendered as its chat
/// posts would be.
async fn prepared(batch: Vec<(Checkpoint, Vec<u8>)>) -> Result<Vec<Fetched>, IngestError> {
    let fetched = parse_fetched(batch).await?;
    Ok(tokio::task::spawn_blocking(move || {
        for mail in &fetched {
            std::hint::black_box(mail.parsed.view());
        }
        fetched
    })
    .await?)
}

/// The ingest figure on a fresh PostgreSQL database (MAILROOM_TEST_PG_URL's
/// server, as the tests use), dropped afterwards.
pub async fn ingest_postgres(emails: usize) -> anyhow::Result<f64> {
    use sqlx::Connection;
    use sqlx::Executor;
    let pg_admin = std::env::var("MAILROOM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pg_db = format!("mailroom_bench_{}", hex(4));
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_admin)
        .await
        .context("PostgreSQL")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {pg_db}")))
        .await?;
    let base = pg_admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(pg_admin.clone());
    let rate = ingest(&format!("{base}/{pg_db}"), emails).await;
    let _ = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"
        )))
        .await;
    rate
}
