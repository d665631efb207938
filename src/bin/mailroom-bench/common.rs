//! What every stage uses: the stack's ports, throwaway mail and Matrix
//! users, a sample email, a scratch directory.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mailroom::domain::settings::Secret;
use mailroom::mail::settings::{ImapSettings, TlsMode};
use matrix_sdk::Client;

pub struct Env {
    repo: std::path::PathBuf,
    stack_dir: std::path::PathBuf,
    pub imap_port: u16,
    pub smtp_port: u16,
    pub synapse: String,
}

pub fn env() -> anyhow::Result<Env> {
    let repo = std::env::current_dir()?;
    let stack_dir = std::env::var("MAILROOM_STACK_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| repo.join(".stack"));
    let text = std::fs::read_to_string(stack_dir.join("stack.env")).with_context(|| {
        format!(
            "{}: run scripts/stack up",
            stack_dir.join("stack.env").display()
        )
    })?;
    let get = |k: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")).map(str::to_owned))
            .ok_or_else(|| anyhow!("{k} missing from stack.env"))
    };
    Ok(Env {
        imap_port: get("MAILROOM_IMAP_PORT")?.parse()?,
        smtp_port: get("MAILROOM_SMTP_PORT")?.parse()?,
        synapse: get("MAILROOM_SYNAPSE_URL")?,
        repo,
        stack_dir,
    })
}

pub fn hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs a scripts/stack or synapse.sh helper.
pub fn sh(env: &Env, script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(&env.repo)
        .env("STATE", &env.stack_dir)
        .env("REPO", &env.repo)
        .env("MAILROOM_STACK_DIR", &env.stack_dir)
        .output()?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn mail_user(env: &Env, prefix: &str) -> anyhow::Result<(String, String)> {
    let address = format!("{prefix}-{}@example.com", hex(5));
    let password = format!("pw-{}", hex(6));
    sh(
        env,
        "scripts/stack add-user \"$0\" \"$1\" >/dev/null 2>&1",
        &[&address, &password],
    )?;
    Ok((address, password))
}

/// `count` mail users at once (`{prefix}{i:03}-…@example.com`): one
/// `scripts/stack add-user` call, which waits for Dovecot once rather than
/// up to a second per user.
pub fn mail_users(env: &Env, prefix: &str, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let users: Vec<(String, String)> = (0..count)
        .map(|i| {
            (
                format!("{prefix}{i:03}-{}@example.com", hex(4)),
                format!("pw-{}", hex(6)),
            )
        })
        .collect();
    let args: Vec<&str> = users
        .iter()
        .flat_map(|(a, p)| [a.as_str(), p.as_str()])
        .collect();
    // stderr is kept: `sh` shows it when the script fails.
    sh(
        env,
        "scripts/stack add-user \"$0\" \"$@\" >/dev/null",
        &args,
    )?;
    Ok(users)
}

pub fn matrix_user(env: &Env, prefix: &str) -> anyhow::Result<(String, String)> {
    let name = format!("{prefix}-{}", hex(4));
    let password = format!("{name}-pw");
    sh(
        env,
        "source scripts/lib/synapse.sh && synapse_register \"$0\" \"$1\" >/dev/null",
        &[&name, &password],
    )?;
    Ok((format!("@{name}:localhost"), password))
}

pub async fn login(env: &Env, user: &(String, String)) -> anyhow::Result<Client> {
    let c = Client::builder()
        .homeserver_url(&env.synapse)
        .build()
        .await?;
    c.matrix_auth()
        .login_username(&user.0, &user.1)
        .send()
        .await?;
    Ok(c)
}

pub fn imap_settings(env: &Env, user: &(String, String)) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port: env.imap_port,
        tls: TlsMode::None,
        username: user.0.clone(),
        password: Secret::new(user.1.clone()),
        folder: "INBOX".into(),
        ca_file: None,
        idle: true,
        poll_interval: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(600),
        sent_folder: None,
        watch_sent: true,
    }
}

pub fn mail(from: &str, to: &str, id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Bench <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nmy order {id} has not arrived yet. Could you check?\r\n\r\n-- \r\nBench\r\n"
    )
    .into_bytes()
}

/// `[database]` (SQLite in `dir`) and one `[[mailbox]]` on the stack for
/// `support`, importing all mail, posting to `chat` (a `[mailbox.chat]` line).
/// The bench's bursts come from one sender: the loop guard is raised out
/// of their way.
pub fn mailbox_toml(
    env: &Env,
    support: &(String, String),
    dir: &std::path::Path,
    chat: &str,
) -> String {
    format!(
        "[database]\nurl = \"sqlite://{db}\"\n[[mailbox]]\nname = \"support\"\naddress = \"{addr}\"\ndisplay_name = \"Bench\"\ninitial_sync = \"all\"\n\
         loop_guard = {{ max_messages = 1000000 }}\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\npassword = \"{pw}\"\n\
         [mailbox.chat]\n{chat}\n",
        db = dir.join("bench.db").display(),
        addr = support.0,
        imap = env.imap_port,
        smtp = env.smtp_port,
        pw = support.1,
    )
}

pub fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mailroom-bench-{}", hex(4)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
