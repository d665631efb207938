//! Replicas as real `mailroom run` processes: a second one on a SQLite
//! file is refused naming the holder; kill -9 of a replica on PostgreSQL
//! moves its mailbox to another process within 10 s (the time is printed).

use std::time::{Duration, Instant};

use mailroom::store::ClusterStore;

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
