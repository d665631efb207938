//! Replicas as real `mailroom run` processes: a second one on a SQLite
//! file is refused naming the holder; kill -9 of a replica on PostgreSQL
//! moves its mailbox to another process within 10 s (the time is printed);
//! a replica restarted after kill -9 under the same name takes its dead
//! predecessor's lease at once, one under another name waits for expiry.

use std::time::{Duration, Instant};

use mailroom::store::ClusterStore;
use mailroom::store::sql::SqlStore;

use crate::common::*;
use crate::replicas::{TAKEOVER_LIMIT, holders};

/// A `mailroom run` child process, killed if the test ends early.
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn spawn(config: &std::path::Path, log: &std::path::Path) -> Daemon {
        let out = std::fs::File::create(log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("MAILROOM_CONFIG")
            .env("MAILROOM_LOG", "info,sqlx=warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start mailroom");
        Daemon {
            child,
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = poll_every(
            "mailroom exits after SIGTERM",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let s = self.child.try_wait().expect("try_wait");
                async move { s }
            },
        )
        .await;
        assert!(status.success(), "exit {status}; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn mailroom(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MAILROOM_CONFIG")
        .output()
        .expect("run mailroom")
}

#[tokio::test]
async fn a_second_mailroom_run_on_one_sqlite_file_is_refused_naming_the_holder() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mailroom.toml");
    let text = mailbox_section(stack, &support, &db, stack.smtp_port, "  timeout_secs = 5");
    std::fs::write(&config, text).expect("config");
    let first = Daemon::spawn(&config, &dir.path().join("first.log"));
    let DatabaseUrlPath(path) = sqlite_path(&db);
    let pid = first.pid();
    poll_every(
        "the first mailroom holds the database",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            (mailroom::store::sql::lock::SqliteLock::holder(&path).ok()? == Some(pid)).then_some(())
        },
    )
    .await;

    let second = mailroom(&config, &["run"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second run started: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(
        stderr.contains("single") || stderr.contains("one mailroom at a time"),
        "{stderr}"
    );

    // Reading commands still run, and status names the holder.
    let status = mailroom(&config, &["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(out.contains("single-process"), "{out}");
    assert!(out.contains(&format!("mailroom pid {pid} holds")), "{out}");
    let list = mailroom(&config, &["tickets", "list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );

    // The first one is unaffected: it still ingests (and, being fully up,
    // stops cleanly on SIGTERM).
    let writer = Writer::new(stack, &support, "carol@example.net");
    writer
        .writes(
            &format!("single-{}@example.net", random_hex(4)),
            "Hello",
            "Hi",
        )
        .await;
    let reader = db.store().await;
    wait_tickets(&reader, 1).await;
    reader.close().await;
    first.stop().await;
    let status = mailroom(&config, &["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("no mailroom process holds"), "{out}");
}

struct DatabaseUrlPath(std::path::PathBuf);

fn sqlite_path(db: &TestDb) -> DatabaseUrlPath {
    match &db.url {
        mailroom::store::settings::DatabaseUrl::Sqlite { path: Some(p) } => {
            DatabaseUrlPath(p.clone())
        }
        other => panic!("not a SQLite file: {other:?}"),
    }
}

#[tokio::test]
async fn kill9_of_a_replica_process_moves_its_mailbox_to_another_within_10s() {
    let (stack, support) = support_mailbox();
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mailroom.toml");
    // The default heartbeat (2 s) and lease (6 s): the figure measured here
    // is what an operator gets.
    let text = mailbox_section(stack, &support, &db, stack.smtp_port, "  timeout_secs = 5");
    std::fs::write(&config, text).expect("config");
    let observer = db.store().await;
    let resource = "mailbox:support".to_owned();
    let replica_of = |pid: u32| {
        let observer = &observer;
        async move {
            let st = observer.cluster_status().await.ok()?;
            st.replicas
                .iter()
                .find(|r| r.pid == pid)
                .map(|r| r.id.as_str().to_owned())
        }
    };

    let first = Daemon::spawn(&config, &dir.path().join("first.log"));
    let first_id = poll_every(
        "the first replica owns the mailbox",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let id = replica_of(first.pid()).await?;
            (holders(&observer).await.get(&resource) == Some(&id)).then_some(id)
        },
    )
    .await;
    let second = Daemon::spawn(&config, &dir.path().join("second.log"));
    let second_id = poll_every(
        "the second replica registers",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { replica_of(second.pid()).await },
    )
    .await;
    // One mailbox, two replicas: the first keeps it.
    assert_eq!(holders(&observer).await.get(&resource), Some(&first_id));
    let status = mailroom(&config, &["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains(&first_id) && out.contains(&second_id), "{out}");
    assert!(out.contains("mailbox:support"), "{out}");

    let killed = Instant::now();
    first.kill9();
    poll_every(
        "the second replica takes the mailbox",
        TAKEOVER_LIMIT,
        Duration::from_millis(50),
        || async { (holders(&observer).await.get(&resource) == Some(&second_id)).then_some(()) },
    )
    .await;
    let took = killed.elapsed();
    eprintln!("takeover after kill -9 of a replica process: {took:?}");
    assert!(
        took < TAKEOVER_LIMIT,
        "took {took:?}; log:\n{}",
        second.log()
    );

    // Ingest goes on under the new owner.
    let writer = Writer::new(stack, &support, "carol@example.net");
    writer
        .writes(
            &format!("after-kill-{}@example.net", random_hex(4)),
            "Still there?",
            "Hello",
        )
        .await;
    wait_tickets(&observer, 1).await;
    second.stop().await;
    observer.close().await;
    db.cleanup().await;
}

/// Kills the process holding the mailbox (kill -9), starts a replacement
/// named `name` at once, and returns how long after the kill the
/// replacement held the lease and how long until a mail appended right
/// after the kill was a ticket. `tickets` is the count before.
async fn kill_and_restart(
    old: Daemon,
    config: &std::path::Path,
    log: &std::path::Path,
    observer: &SqlStore,
    writer: &Writer<'_>,
    tickets: usize,
) -> (Daemon, Duration, Duration) {
    let resource = "mailbox:support".to_owned();
    let killed = Instant::now();
    old.kill9();
    let new = Daemon::spawn(config, log);
    writer
        .writes(
            &format!("after-restart-{}@example.net", random_hex(4)),
            // A subject of its own: the same one from the same sender
            // would be a follow-up, not a new ticket.
            &format!("Back yet? ({})", random_hex(3)),
            "Hello",
        )
        .await;
    let pid = new.pid();
    poll_every(
        "the restarted replica takes the mailbox",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            let st = observer.cluster_status().await.ok()?;
            let id = st.replicas.iter().find(|r| r.pid == pid)?.id.clone();
            (holders(observer).await.get(&resource) == Some(&id.as_str().to_owned())).then_some(())
        },
    )
    .await;
    let lease = killed.elapsed();
    while ticket_count(observer).await <= tickets {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the mail sent after the kill is not a ticket; log:\n{}",
            new.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (new, lease, killed.elapsed())
}

#[tokio::test]
async fn a_replica_restarted_after_kill9_takes_its_dead_predecessor_s_leases_at_once() {
    let (stack, support) = support_mailbox();
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A long lease makes the difference plain: waiting for expiry takes
    // about 10-12 s, taking over from a dead predecessor no lease time.
    let config_named = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let text = format!(
            "{}\n[cluster]\nheartbeat_secs = 2\nlease_ttl_secs = 12\nreplica_name = \"{name}\"\n",
            mailbox_section(stack, &support, &db, stack.smtp_port, "  timeout_secs = 5")
        );
        std::fs::write(&path, text).expect("config");
        path
    };
    let (a, b) = (config_named("web-a"), config_named("web-b"));
    let observer = db.store().await;
    let writer = Writer::new(stack, &support, "carol@example.net");
    let first = Daemon::spawn(&a, &dir.path().join("first.log"));
    let pid = first.pid();
    poll_every(
        "the first replica owns the mailbox",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let st = observer.cluster_status().await.ok()?;
            let id = st.replicas.iter().find(|r| r.pid == pid)?.id.clone();
            (holders(&observer).await.get("mailbox:support") == Some(&id.as_str().to_owned()))
                .then_some(())
        },
    )
    .await;

    // Before: a replacement under another name is not the dead one's
    // successor and waits for the lease to expire.
    let (second, other_lease, other_mail) = kill_and_restart(
        first,
        &b,
        &dir.path().join("second.log"),
        &observer,
        &writer,
        0,
    )
    .await;
    // After: restarted under the same name on the same host, the old PID
    // gone: it frees its predecessor's leases and takes them at once.
    let (third, same_lease, same_mail) = kill_and_restart(
        second,
        &b,
        &dir.path().join("third.log"),
        &observer,
        &writer,
        1,
    )
    .await;
    eprintln!(
        "restart after kill -9 (heartbeat 2 s, lease 12 s): another name: lease {other_lease:?}, mail {other_mail:?}; \
         same name: lease {same_lease:?}, mail {same_mail:?}"
    );
    assert!(
        other_lease >= Duration::from_secs(8),
        "a replica of another name waited for expiry: {other_lease:?}"
    );
    assert!(
        same_lease < Duration::from_secs(6),
        "the same name took over at once: {same_lease:?}; log:\n{}",
        third.log()
    );
    assert!(
        third.log().contains("dead predecessor"),
        "the log says why:\n{}",
        third.log()
    );
    // The predecessor's row is gone; the other name's dead row stays
    // (it is nobody's predecessor) until pruned.
    let st = observer.cluster_status().await.expect("status");
    let named = |n: &str| -> Vec<u32> {
        st.replicas
            .iter()
            .filter(|r| r.name == n)
            .map(|r| r.pid)
            .collect()
    };
    assert_eq!(named("web-b"), vec![third.pid()], "{:?}", st.replicas);
    assert_eq!(named("web-a").len(), 1, "{:?}", st.replicas);
    third.stop().await;
    observer.close().await;
    db.cleanup().await;
}
