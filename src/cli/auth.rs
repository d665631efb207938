//! `mailroom auth`: sign an OAuth2 mailbox in (device flow or browser with
//! PKCE), show each grant's state, sign out.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{load, load_offline, open_store};
use crate::bridge::now_ms;
use crate::bridge::oauth::store_sign_in;
use crate::config::Settings;
use crate::domain::ids::MailboxName;
use crate::mail::oauth::browser::{self, BrowserError};
use crate::mail::oauth::device::{self, DeviceError, Progress};
use crate::mail::oauth::{AuthMethod, Flow, TokenClient, client};
use crate::mail::settings::MailboxSettings;
use crate::store::TicketStore;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign a mailbox in with OAuth2 and store its grant (encrypted). A
    /// running daemon picks it up by itself.
    Login {
        #[arg(long)]
        mailbox: String,
    },
    /// Each OAuth2 mailbox's grant: account, scopes, token expiry, last
    /// refresh and error.
    Status,
    /// Forget a mailbox's grant (and revoke it at the provider when it can).
    Logout {
        #[arg(long)]
        mailbox: String,
    },
}

fn oauth_mailbox<'s>(settings: &'s Settings, name: &str) -> anyhow::Result<&'s MailboxSettings> {
    let parsed =
        MailboxName::parse(name).map_err(|e| anyhow::anyhow!("--mailbox {name}: {}", e.reason))?;
    let Some(m) = settings.mailbox(&parsed) else {
        let names: Vec<&str> = settings.mailboxes.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "--mailbox {name}: no such mailbox in the configuration (there are: {})",
            names.join(", ")
        );
    };
    if m.auth != AuthMethod::Oauth2 || m.oauth2.is_none() {
        bail!(
            "--mailbox {name}: the mailbox logs in with a password; set auth = \"oauth2\" and [mailbox.oauth2] first"
        );
    }
    Ok(m)
}

pub async fn run(config: &std::path::Path, cmd: AuthCommand) -> anyhow::Result<i32> {
    match cmd {
        AuthCommand::Login { mailbox } => {
            let settings = load(config)?;
            let m = oauth_mailbox(&settings, &mailbox)?;
            let store = open_store(&settings).await?;
            let r = login(&settings, m, &store).await;
            store.close().await;
            r
        }
        AuthCommand::Status => {
            let settings = load_offline(config)?;
            let store = open_store(&settings).await?;
            let r = status(&settings, &store, &mut std::io::stdout().lock()).await;
            store.close().await;
            r.map(|_| 0)
        }
        AuthCommand::Logout { mailbox } => {
            let settings = load(config)?;
            let m = oauth_mailbox(&settings, &mailbox)?;
            let store = open_store(&settings).await?;
            let r = logout(&settings, m, &store).await;
            store.close().await;
            r.map(|_| 0)
        }
    }
}

async fn login(
    settings: &Settings,
    m: &MailboxSettings,
    store: &dyn TicketStore,
) -> anyhow::Result<i32> {
    let Some(o) = &m.oauth2 else { return Ok(2) };
    let client = TokenClient::new(o);
    let name = &m.name;
    println!(
        "Signing in mailbox {name} ({}) as {} with {}.",
        m.address,
        o.login_user,
        o.provider.as_str()
    );
    let tokens = match o.flow() {
        Flow::Device => {
            let result = device::sign_in(&client, |p| match p {
                Progress::Code(a) => {
                    println!(
                        "To sign in, open {} and enter the code {}",
                        a.verification_uri, a.user_code
                    );
                    if let Some(complete) = &a.verification_uri_complete {
                        println!("(or open {complete})");
                    }
                    println!(
                        "Sign in as {}. Waiting for approval (the code expires in {} s)…",
                        o.login_user, a.expires_in
                    );
                    let _ = std::io::stdout().flush();
                }
                Progress::SlowDown(every) => {
                    println!(
                        "The provider asked to poll less often; now every {} s.",
                        every.as_secs()
                    );
                }
            })
            .await;
            match result {
                Ok(t) => t,
                Err(e) => {
                    let message = match &e {
                        DeviceError::Client(e) => client::client_fix(e, o),
                        other => other.to_string(),
                    };
                    eprintln!("auth login --mailbox {name}: {message}");
                    return Ok(1);
                }
            }
        }
        Flow::Browser => {
            let pending = browser::start(&client, &o.login_user).await?;
            println!(
                "Open this address in a browser and sign in as {}:\n\n  {}\n",
                o.login_user, pending.url
            );
            println!(
                "Waiting for the browser to come back to {}. If the browser runs on another \
                 machine, paste the address it ends on here and press Enter.",
                pending.redirect_uri
            );
            let _ = std::io::stdout().flush();
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            match pending.finish(&client, stdin).await {
                Ok(t) => t,
                Err(BrowserError::Token(e))
                    if e.code() == Some(&client::ProviderError::InvalidClient) =>
                {
                    eprintln!("auth login --mailbox {name}: {}", client::client_fix(&e, o));
                    return Ok(1);
                }
                Err(e) => {
                    eprintln!("auth login --mailbox {name}: {e}");
                    return Ok(1);
                }
            }
        }
    };
    // A tenant admin may withhold a permission: the provider then grants
    // less than was asked, and says so in the answer's `scope`. Such a grant
    // would fail later, at the first login or send; refuse it now, by name.
    let missing = tokens
        .scope
        .as_deref()
        .map(|granted| missing_scopes(&o.scopes, granted))
        .unwrap_or_default();
    if !missing.is_empty() {
        eprintln!(
            "auth login --mailbox {name}: the provider did not grant {} (asked for in \
             mailbox.oauth2.scopes; granted: {}). Without it mailroom cannot read or send \
             this mailbox's mail: have the app's API permissions granted (admin consent) \
             and run `mailroom auth login --mailbox {name}` again. Nothing was stored.",
            missing.join(", "),
            tokens.scope.as_deref().unwrap_or_default()
        );
        return Ok(1);
    }
    let grant = store_sign_in(store, settings.secrets.seal_key.as_ref(), m, &tokens)
        .await
        .with_context(|| format!("storing the grant of mailbox {name}"))?;
    println!(
        "Signed in: mailbox {name} as {}; scopes: {}. A running mailroom uses it within seconds.",
        grant.account, grant.scopes
    );
    Ok(0)
}

/// The scopes asked for that the provider's `granted` list lacks. OpenID
/// Connect's own scopes (`openid`, `email`, `profile`, `offline_access`) are
/// left out: providers answer them in other spellings or not at all
/// (Google writes `email` as `…/auth/userinfo.email`, Microsoft leaves out
/// `offline_access`), and none of them carries mail access.
fn missing_scopes(requested: &[String], granted: &str) -> Vec<String> {
    const OIDC: [&str; 4] = ["openid", "email", "profile", "offline_access"];
    let granted: Vec<&str> = granted.split_whitespace().collect();
    requested
        .iter()
        .filter(|s| !OIDC.contains(&s.as_str()))
        .filter(|s| !granted.iter().any(|g| g.eq_ignore_ascii_case(s)))
        .cloned()
        .collect()
}

fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let at = jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
    let left = (ms - now_ms()) / 1000;
    let rel = if left >= 0 {
        format!("in {left} s")
    } else {
        format!("{} s ago", -left)
    };
    format!("{} ({rel})", at.unwrap_or_default())
}

pub async fn status(
    settings: &Settings,
    store: &dyn TicketStore,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let oauth: Vec<&MailboxSettings> = settings
        .mailboxes
        .iter()
        .filter(|m| m.auth == AuthMethod::Oauth2)
        .collect();
    if oauth.is_empty() {
        writeln!(out, "no mailbox uses auth = \"oauth2\"")?;
    }
    for m in oauth {
        let Some(g) = store.grant(&m.name).await? else {
            writeln!(
                out,
                "{}: not signed in (run `mailroom auth login --mailbox {}`)",
                m.name, m.name
            )?;
            continue;
        };
        let state = match g.refused_told_at_ms {
            Some(_) => format!(
                "REFUSED by the provider; run `mailroom auth login --mailbox {}`",
                m.name
            ),
            None => "signed in".into(),
        };
        writeln!(out, "{}: {state}", m.name)?;
        writeln!(out, "  account:        {}", g.account)?;
        writeln!(out, "  scopes:         {}", g.scopes)?;
        writeln!(out, "  access expires: {}", when(g.access_expires_at_ms))?;
        writeln!(out, "  last refresh:   {}", when(g.refreshed_at_ms))?;
        writeln!(out, "  signed in:      {}", when(Some(g.created_at_ms)))?;
        let error = g
            .last_error
            .map(|e| format!("{e} ({})", when(g.last_error_at_ms)));
        writeln!(out, "  last error:     {}", error.as_deref().unwrap_or("-"))?;
    }
    Ok(())
}

async fn logout(
    settings: &Settings,
    m: &MailboxSettings,
    store: &dyn TicketStore,
) -> anyhow::Result<()> {
    let name = &m.name;
    let Some(g) = store.grant(name).await? else {
        println!("mailbox {name} was not signed in");
        return Ok(());
    };
    // Best effort: the grant is forgotten here whatever the provider says.
    if let (Some(o), Some(key)) = (&m.oauth2, &settings.secrets.seal_key) {
        let client = TokenClient::new(o);
        match key.open(&g.refresh_token, name.as_str()) {
            Ok(token) => match client.revoke(&token, "refresh_token").await {
                Ok(true) => println!("revoked at the provider"),
                Ok(false) => println!(
                    "{} has no revocation endpoint: the grant stays valid there until it expires \
                     or is revoked in the account's settings",
                    o.provider.as_str()
                ),
                Err(e) => {
                    println!("could not revoke at the provider ({e}); forgetting it here anyway")
                }
            },
            Err(e) => println!("could not revoke at the provider ({e}); forgetting it here anyway"),
        }
    }
    store.delete_grant(name, now_ms()).await?;
    println!(
        "mailbox {name} is signed out; a running mailroom stops using it at the next token refresh"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::missing_scopes;

    fn asked(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_withheld_mail_scope_is_named_and_oidc_scopes_are_not() {
        let microsoft = asked(&[
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
            "openid",
            "email",
        ]);
        let all = "https://outlook.office.com/IMAP.AccessAsUser.All \
                   https://outlook.office.com/SMTP.Send";
        assert!(missing_scopes(&microsoft, all).is_empty());
        assert_eq!(
            missing_scopes(
                &microsoft,
                "https://outlook.office.com/IMAP.AccessAsUser.All"
            ),
            ["https://outlook.office.com/SMTP.Send"]
        );
        let google = asked(&["https://mail.google.com/", "openid", "email"]);
        let answer =
            "https://mail.google.com/ openid https://www.googleapis.com/auth/userinfo.email";
        assert!(missing_scopes(&google, answer).is_empty());
        assert_eq!(
            missing_scopes(&google, "openid"),
            ["https://mail.google.com/"]
        );
    }
}
