//! The `mailroom` binary: check-config, migrate, tickets.

use std::process::Command;

use crate::common::{TestDb, Writer, config, run_ok, start, support_mailbox, wait_for};
use mailroom::store::{TicketFilter, TicketStore};

fn mailroom() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.env_remove("MAILROOM_CONFIG");
    c
}

const EXAMPLE_ENV: [(&str, &str); 6] = [
    ("MAILROOM_SUPPORT_IMAP_PASSWORD", "imap-secret-123"),
    ("MAILROOM_SUPPORT_SMTP_PASSWORD", "smtp-secret-456"),
    ("MAILROOM_MATRIX_PASSWORD", "matrix-secret-789"),
    ("MAILROOM_SLACK_BOT_TOKEN", "xoxb-secret"),
    ("MAILROOM_SLACK_APP_TOKEN", "xapp-secret"),
    ("MAILROOM_SLACK_SIGNING_SECRET", "signing-secret"),
];

#[test]
fn check_config_accepts_the_commented_example() {
    let out = mailroom()
        .args(["check-config", "bot-config/mailroom.example.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(EXAMPLE_ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
    assert!(stdout.contains("1 mailbox (support)"), "{stdout}");
    for (_, secret) in EXAMPLE_ENV {
        assert!(!stdout.contains(secret), "a secret reached the output");
    }
}

#[test]
fn check_config_without_the_secrets_names_each_missing_variable() {
    let out = mailroom()
        .args(["check-config", "bot-config/mailroom.example.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "mailbox[0].imap.password_env",
        "mailbox[0].smtp.password_env",
        "matrix.password_env",
        "slack.bot_token_env",
    ] {
        assert!(stderr.contains(path), "{path} not named in:\n{stderr}");
    }
}

#[test]
fn check_config_reports_every_broken_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[database]
url = "sqlite://state/x.db"
pool = 3

[[mailbox]]
name = "support"
address = "support@example.com"
display_name = "Support"
  [mailbox.imap]
  host = "imap.example.com"
  password = "p"
  [mailbox.smtp]
  host = "smtp.example.com"

[[mailbox]]
name = "sales"
address = "sales@@example.com"
display_name = "Sales"
  [mailbox.imap]
  host = "imap.example.com"
  tls = "maybe"
  password = "p"
  [mailbox.smtp]
  host = "smtp.example.com"
  port = 99999
  sent_folder = 3

[reactions]
close = []
"#,
    )
    .unwrap();
    let out = mailroom().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "database.pool: unknown key",
        "mailbox[1].address:",
        "mailbox[1].imap.tls: expected \"implicit\", \"starttls\" or \"none\"",
        "mailbox[1].smtp.port: expected 1-65535",
        "mailbox[1].smtp.sent_folder: expected a string",
        "reactions.close: must list at least one value",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(stderr.contains("6 problems"), "{stderr}");
}

#[test]
fn check_config_names_five_different_mistakes_with_paths_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.toml");
    std::fs::write(
        &path,
        r#"[database]
url = "sqlite://state/x.db"
colour = "blue"

[[mailbox]]
name = "support"
address = "support@example.com"
  [mailbox.imap]
  host = "imap.example.com"
  idle = "yes"
  password = "p"
  password_env = "MAILROOM_TEST_IMAP"
  [mailbox.smtp]
  host = "smtp.example.com"
  port = 70000
"#,
    )
    .unwrap();
    let out = mailroom().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 problems"), "{stderr}");
    for needle in [
        "database.colour: unknown key (line 3)",
        "mailbox[0].display_name: missing (required) (line 5)",
        "mailbox[0].imap.idle: expected a boolean, found a string (line 10)",
        "mailbox[0].imap.password: give only one of password, password_env (line 11)",
        "mailbox[0].smtp.port: expected 1-65535 (line 15)",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check-config", "--help"],
        vec!["migrate", "--help"],
        vec!["tickets", "--help"],
        vec!["tickets", "list", "--help"],
        vec!["tickets", "show", "--help"],
        vec!["tickets", "export", "--help"],
        vec!["tickets", "reply", "--help"],
        vec!["tickets", "claim", "--help"],
        vec!["tickets", "close", "--help"],
        vec!["outbox", "list", "--help"],
    ] {
        let out = mailroom().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn tickets_list_show_and_export_read_the_store() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let settings = config(stack, &support, &db, stack.smtp_port, "");
    let app = start(settings, &db).await;
    Writer::new(stack, &support, "carol@customer.example")
        .writes(
            "cli1@customer.example",
            "From the CLI",
            "From here on, a line that needs quoting in mbox.",
        )
        .await;
    let store = app.store.clone();
    wait_for("the ticket", std::time::Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            (store
                .list_tickets(&TicketFilter::default())
                .await
                .unwrap()
                .len()
                == 1)
                .then_some(())
        }
    })
    .await;
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{}\"\n[[mailbox]]\nname = \"support\"\naddress = \"{}\"\ndisplay_name = \"S\"\n[mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n",
            db.url_text, support.address
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = run_ok(
            mailroom().arg("--config").arg(&cfg).args(args),
            &format!("{args:?}"),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["tickets", "list", "--status", "open"]);
    assert!(
        list.contains("From the CLI")
            && list.contains("carol@customer.example")
            && list.contains("1 ticket"),
        "{list}"
    );
    assert!(run(&["tickets", "list", "--status", "closed"]).contains("0 tickets"));
    let show = run(&["tickets", "show", "1"]);
    assert!(
        show.contains("Open · unclaimed")
            && show.contains("created")
            && show.contains("<cli1@customer.example>"),
        "{show}"
    );
    let mbox = run(&["tickets", "export", "#1", "--format", "mbox"]);
    assert!(mbox.starts_with("From carol@customer.example "), "{mbox}");
    assert!(mbox.contains("\n>From here on"), "mboxrd quoting: {mbox}");
    let out_dir = dir.path().join("eml");
    let eml = run(&[
        "tickets",
        "export",
        "1",
        "--format",
        "eml",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    let file = eml.lines().next().unwrap();
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains("Message-ID: <cli1@customer.example>")
    );
    let missing = mailroom()
        .arg("--config")
        .arg(&cfg)
        .args(["tickets", "show", "99"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no ticket #99"));
    let _ = std::fs::remove_dir_all(&out_dir);
    let s: &dyn TicketStore = &db.store().await;
    assert_eq!(
        s.list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_sqlite_database_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    std::fs::write(
        &cfg,
        "[database]\nurl = \"sqlite://state/new.db\"\n[[mailbox]]\nname = \"support\"\naddress = \"s@example.com\"\ndisplay_name = \"S\"\n[mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n",
    )
    .unwrap();
    run_ok(
        mailroom()
            .arg("--config")
            .arg(&cfg)
            .arg("migrate")
            .current_dir(dir.path()),
        "mailroom migrate",
    );
    let db = dir.path().join("state/new.db");
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn database_commands_need_no_server_secrets_but_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    std::fs::write(
        &cfg,
        "[database]\nurl = \"sqlite://state/x.db\"\n[[mailbox]]\nname = \"support\"\naddress = \"s@example.com\"\ndisplay_name = \"S\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\npassword_env = \"MAILROOM_TEST_UNSET_IMAP\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n\
         [mailbox.chat]\nmatrix_room = \"!room\"\n[matrix]\nhomeserver = \"http://127.0.0.1:1\"\nuser_id = \"@bot:localhost\"\npassword_env = \"MAILROOM_TEST_UNSET_MX\"\n",
    )
    .unwrap();
    let out = run_ok(
        mailroom()
            .arg("--config")
            .arg(&cfg)
            .args(["tickets", "list"])
            .current_dir(dir.path()),
        "mailroom",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 tickets"));
    let run = mailroom()
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("MAILROOM_TEST_UNSET_IMAP") && stderr.contains("MAILROOM_TEST_UNSET_MX"),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mailroom.toml");
    // IMAP on a closed port: run logs its start and the failed connection, then retries.
    std::fs::write(
        &cfg,
        "[database]\nurl = \"sqlite://state/x.db\"\n[[mailbox]]\nname = \"support\"\naddress = \"s@example.com\"\ndisplay_name = \"S\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\npassword = \"secret-imap-pw\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n",
    )
    .unwrap();
    let mut child = mailroom()
        .arg("--config")
        .arg(&cfg)
        .args(["--log-format", "json", "run"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let done = line.contains("reconnecting");
        lines.push(line);
        if done || lines.len() > 50 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("reconnecting")),
        "{lines:#?}"
    );
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
        assert!(
            !l.contains("secret-imap-pw"),
            "a secret reached the log: {l}"
        );
    }
}
