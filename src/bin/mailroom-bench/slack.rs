//! The `slack` stage.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use mailroom::config::Settings;
use mailroom::mail::imap;

use crate::bridge::{start, stop};
use crate::common::{Env, imap_settings, mail, mail_user, mailbox_toml, tempfile_dir};
use crate::fake_slack;

/// When a root message with `subject` first shows in the fake Slack's
/// channel; re-checked on every change there.
pub async fn seen_in(
    slack: fake_slack::FakeSlack,
    channel: String,
    subject: String,
) -> anyhow::Result<Instant> {
    slack
        .wait_until(&subject, Duration::from_secs(60), |s| {
            s.messages(&channel)
                .iter()
                .any(|m| m.thread_ts.is_none() && m.text.contains(&subject))
        })
        .await?;
    Ok(Instant::now())
}

/// APPEND → the ticket's root message in the fake Slack's channel, over
/// Socket Mode, mails at a steady pace under Slack's one post a second.
pub async fn slack_latency(env: &Env, emails: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    let slack = fake_slack::FakeSlack::start(fake_slack::FakeSlackOptions::default()).await;
    let channel = slack.add_channel("support", &[slack.bot_user_id()]);
    let support = mail_user(env, "support")?;
    let dir = tempfile_dir()?;
    let text = format!(
        "{mailbox}[slack]\nbot_token_env = \"BOT\"\napp_token_env = \"APP\"\napi_url = \"{api}\"\n",
        mailbox = mailbox_toml(
            env,
            &support,
            &dir,
            &format!("slack_channel = \"{channel}\"")
        ),
        api = slack.api_url(),
    );
    let (bot, app) = (slack.bot_token().to_owned(), slack.app_token().to_owned());
    let settings = Settings::parse(&text, &move |k| match k {
        "BOT" => Some(bot.clone()),
        "APP" => Some(app.clone()),
        _ => None,
    })
    .map_err(|p| anyhow!("{p:?}"))?;
    let (app, cancel, handles) = start(settings).await?;
    let mut writer = imap::connect_password(&imap_settings(env, &support)).await?;
    writer
        .append(
            "INBOX",
            None,
            None,
            mail("c@bench.example", &support.0, "warm@bench", "Warm-up"),
        )
        .await?;
    seen_in(slack.clone(), channel.clone(), "Warm-up".into()).await?;
    let subjects: Vec<String> = (0..emails).map(|i| format!("Slack {i:04}")).collect();
    let watcher = {
        let (subjects, slack, channel) = (subjects.clone(), slack.clone(), channel.clone());
        tokio::spawn(async move {
            let mut at = Vec::new();
            for s in subjects {
                at.push(seen_in(slack.clone(), channel.clone(), s).await?);
            }
            anyhow::Ok(at)
        })
    };
    let mut sent = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let raw = mail(
            &format!("c{i}@bench.example"),
            &support.0,
            &format!("slack{i}@bench"),
            subject,
        );
        writer.append("INBOX", None, None, raw).await?;
        sent.push(Instant::now());
        tokio::time::sleep(pace).await;
    }
    let seen = watcher.await??;
    imap::logout(writer).await;
    stop(app, cancel, handles).await;
    slack.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(sent
        .iter()
        .zip(seen)
        .map(|(s, at)| at.duration_since(*s).as_secs_f64() * 1000.0)
        .collect())
}
