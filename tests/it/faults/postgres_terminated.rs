//! Fault 5 of the suite: PostgreSQL connections terminated (what a restart
//! looks like), and a server of the test's own really stopped.

use super::*;

#[tokio::test]
async fn postgres_connections_terminated_during_ingest_and_replies_lose_and_duplicate_nothing() {
    use sqlx::{Connection, Row};
    let (stack, support, customer) = support_and_customer();
    let n = env_num("MAILROOM_FAULTS_EMAILS", 8) as usize;
    let r = (env_num("MAILROOM_FAULTS_REPLIES", 3) as usize).min(n);
    let storm = Duration::from_secs(env_num("MAILROOM_FAULTS_KILL_SECS", 6));
    let proxy = SmtpProxy::start(stack.smtp_port, vec![]).await;
    let db = Db::Postgres.make().await;
    let run = crate::common::start(
        parse(&config_text(stack, &support, &db, proxy.port(), false)),
        &db,
    )
    .await;
    let name = db.url_text.rsplit('/').next().unwrap().to_owned();

    // The storm: every 250 ms, every connection to the test database is cut.
    let (stop, mut stopped) = watch::channel(false);
    let killer = tokio::spawn(async move {
        let mut admin = sqlx::AnyConnection::connect(&pg_admin_url()).await.unwrap();
        let mut terminated = 0i64;
        let sql = format!(
            "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        );
        loop {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut admin)
                .await
                .unwrap();
            terminated += row.try_get::<i64, _>("n").unwrap();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        terminated
    });
    let storm_start = Instant::now();
    let mut expected = Vec::new();
    for i in 0..n {
        // The first `r` from the customer (they get replies), the rest from others.
        let from = if i < r {
            customer.address.clone()
        } else {
            format!("sender{i}-{}@faults.example", random_hex(3))
        };
        let (mid, raw) = mail(&from, &support.address, "pgkill", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    let tickets = wait_ingested(run.store.as_ref(), &expected[..r]).await;
    let mut replies = Vec::new();
    let mut queue_errors = 0;
    for mid in &expected[..r] {
        // An agent whose command failed tries again; a queued reply is
        // never queued twice because queueing either commits or fails.
        let q = loop {
            match reply(&run, tickets[mid], "Thanks, fixed.").await {
                Ok(q) => break q,
                Err(e) => {
                    queue_errors += 1;
                    assert!(queue_errors < 50, "queueing keeps failing: {e}");
                }
            }
        };
        replies.push(q);
    }
    let until = storm.saturating_sub(storm_start.elapsed());
    tokio::time::sleep(until).await;
    let _ = stop.send(true);
    let terminated = killer.await.unwrap();
    let calm = Instant::now();
    assert!(terminated > 0, "the storm cut connections");

    wait_ingested(run.store.as_ref(), &expected).await;
    let reply_ids = wait_replies_sent(run.store.as_ref(), &replies).await;
    wait_outbox_idle(run.store.as_ref()).await;
    let recovery = calm.elapsed();
    let inbox = wait_copies(stack, &customer, "INBOX", &reply_ids).await;
    let sent = wait_copies(stack, &support, "Sent", &reply_ids).await;
    assert_eq!(proxy.accepted() as usize, r, "each reply handed over once");
    let (lost, mut duplicated) = lost_and_duplicated(run.store.as_ref(), &expected).await;
    duplicated += inbox.iter().map(|c| c - 1).sum::<usize>();
    println!("pg storm: terminated={terminated} queue_errors={queue_errors}");
    report(
        "postgres-terminated",
        Db::Postgres,
        n,
        lost,
        duplicated,
        recovery,
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(sent, vec![1; r]);
    run.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_really_stopped_mid_send_and_mid_ingest_loses_nothing_and_sends_once() {
    let (stack, support, customer) = support_and_customer();
    let n = env_num("MAILROOM_FAULTS_EMAILS", 4) as usize;
    let down = Duration::from_secs(env_num("MAILROOM_FAULTS_PG_DOWN_SECS", 10));
    let pg = PrivatePg::create().await;
    let db = TestDb::postgres_at(&pg.admin_url()).await;
    let proxy = SmtpProxy::start(stack.smtp_port, vec![Fault::HoldEndOfData]).await;
    let run = crate::common::start(
        parse(&config_text(stack, &support, &db, proxy.port(), false)),
        &db,
    )
    .await;

    let (first, raw) = mail(&customer.address, &support.address, "pgdown", 0);
    append(stack, &support, "INBOX", &raw).await;
    let tickets = wait_ingested(run.store.as_ref(), std::slice::from_ref(&first)).await;
    let q = reply(&run, tickets[&first], "Sent while the database is down.")
        .await
        .unwrap();
    proxy.wait_held(1).await;

    pg.stop().await;
    let stopped = Instant::now();
    // Postfix's 250 reaches mailroom while its database is gone.
    proxy.release();
    let mut expected = vec![first];
    for i in 1..n {
        let sender = format!("sender{i}-{}@faults.example", random_hex(3));
        let (mid, raw) = mail(&sender, &support.address, "pgdown", i);
        append(stack, &support, "INBOX", &raw).await;
        expected.push(mid);
    }
    // Fault injection: the server stays down for `down`.
    tokio::time::sleep(down.saturating_sub(stopped.elapsed())).await;
    pg.start().await;
    let back = Instant::now();

    wait_ingested(run.store.as_ref(), &expected).await;
    let store = run.store.clone();
    wait_for("the held reply recorded as sent", WAIT, || async {
        (email_state(store.as_ref(), q.email_id).await == EmailState::Sent).then_some(())
    })
    .await;
    wait_outbox_idle(run.store.as_ref()).await;
    let recovery = back.elapsed();
    let ids = vec![q.message_id.as_str().to_owned()];
    assert_eq!(wait_copies(stack, &support, "Sent", &ids).await, vec![1]);
    assert_eq!(copies(stack, &customer, "INBOX", &ids).await, vec![1]);
    assert_eq!(proxy.accepted(), 1);
    let (lost, duplicated) = lost_and_duplicated(run.store.as_ref(), &expected).await;
    report(
        "postgres-stopped",
        Db::Postgres,
        n,
        lost,
        duplicated,
        recovery,
    );
    assert_eq!((lost, duplicated), (0, 0));
    run.stop().await;
}
