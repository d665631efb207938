//! The rules of OAuth2 mailboxes: `auth = "oauth2"` needs its
//! `[mailbox.oauth2]` section and no passwords; providers fill their
//! defaults; and `[secrets] key` must seal the tokens when any mailbox
//! signs in with OAuth2.

use serde::Deserialize;

use super::{Check, Settings};
use crate::domain::settings::{Secret, lenient};
use crate::mail::oauth::{AuthMethod, Provider, SealKey};
use crate::mail::settings::MailboxSettings;

/// What an unset `*_env` variable reads as for commands that only use the
/// database ([`Settings::load_offline`]).
pub const OFFLINE_PLACEHOLDER: &str = "<unset: offline command>";

/// `[secrets]`: `key`, `key_env` or `key_file`: 32 random bytes, base64
/// (`head -c 32 /dev/urandom | base64`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretsSettings {
    #[serde(default, deserialize_with = "lenient")]
    key: Option<Secret>,
    /// The key, checked; set by the load when `key` is given and readable.
    #[serde(skip)]
    pub seal_key: Option<SealKey>,
}

pub(super) fn settle_mailbox(m: &mut MailboxSettings, at: &dyn Fn(&str) -> String, c: &mut Check) {
    let given = |c: &Check, key: &str| {
        ["", "_env", "_file"]
            .iter()
            .map(|suffix| format!("{key}{suffix}"))
            .find(|k| c.given(&at(k)))
    };
    match m.auth {
        AuthMethod::Password => {
            if m.imap.password.expose().is_empty() && c.given(&at("imap")) && c.clean(&at("imap")) {
                c.problem(
                    at("imap.password"),
                    "missing: give password, password_env or password_file (or auth = \"oauth2\")",
                );
            }
            if c.given(&at("oauth2")) {
                c.problem(
                    at("oauth2"),
                    "set, but auth is \"password\": add auth = \"oauth2\" or remove it",
                );
            }
        }
        AuthMethod::Oauth2 => {
            for key in ["imap.password", "smtp.password"] {
                if let Some(k) = given(c, key) {
                    c.problem(
                        at(&k),
                        "not used with auth = \"oauth2\" (the mailbox logs in with a token): remove it",
                    );
                }
            }
            let Some(o) = m.oauth2.as_mut() else {
                if !c.given(&at("oauth2")) {
                    c.problem(
                        at("oauth2"),
                        "missing: auth = \"oauth2\" needs a [mailbox.oauth2] section",
                    );
                }
                return;
            };
            if !c.clean(&at("oauth2")) {
                return;
            }
            if o.tenant.is_some() && o.provider != Provider::Microsoft {
                c.problem(
                    at("oauth2.tenant"),
                    "only used with provider = \"microsoft\"",
                );
            }
            for key in o.fill_defaults() {
                c.problem(
                    at(&format!("oauth2.{key}")),
                    "missing: required with provider = \"custom\"",
                );
            }
            if o.login_user.trim().is_empty() {
                o.login_user = m.address.as_str().to_owned();
            }
        }
    }
}

pub(super) fn settle_secrets(s: &mut Settings, c: &mut Check) {
    let wanted = s.mailboxes.iter().any(|m| m.auth == AuthMethod::Oauth2);
    match s.secrets.key.take() {
        Some(key) if key.expose() == OFFLINE_PLACEHOLDER => {}
        Some(key) => match SealKey::parse(key.expose()) {
            Ok(k) => s.secrets.seal_key = Some(k),
            Err(e) => c.problem("secrets.key", e),
        },
        None if wanted && c.clean("secrets") => c.problem(
            "secrets.key",
            "missing: a mailbox uses auth = \"oauth2\", so give key_env or key_file \
             (32 random bytes, base64: `head -c 32 /dev/urandom | base64`) to encrypt its tokens",
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::tests::assert_problems;
    use crate::mail::oauth::{Flow, Provider};

    fn env(k: &str) -> Option<String> {
        match k {
            "KEY" => Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
            "SECRET" => Some("client-secret-value".into()),
            _ => None,
        }
    }

    const OAUTH: &str = r#"
[database]
url = "sqlite://state/mailroom.db"

[secrets]
key_env = "KEY"

[[mailbox]]
name = "support"
address = "support@example.com"
display_name = "Example Support"
auth = "oauth2"
  [mailbox.oauth2]
  provider = "microsoft"
  client_id = "00000000-0000-0000-0000-000000000001"
  login_user = "alice@example.com"
  [mailbox.imap]
  host = "outlook.office365.com"
  [mailbox.smtp]
  host = "smtp.office365.com"
"#;

    #[test]
    fn an_oauth2_mailbox_needs_no_password_and_gets_its_providers_defaults() {
        let s = Settings::parse(OAUTH, &env).unwrap_or_else(|p| panic!("{p:#?}"));
        let o = s.mailboxes[0].oauth2.as_ref().unwrap();
        assert_eq!(o.provider, Provider::Microsoft);
        assert_eq!(o.tenant.as_deref(), Some("organizations"));
        assert_eq!(
            o.token_url,
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        assert_eq!(o.flow(), Flow::Device);
        assert_eq!(o.login_user, "alice@example.com");
        assert_eq!(s.mailboxes[0].imap.username, "support@example.com");
        assert!(s.secrets.seal_key.is_some());
        assert!(!format!("{s:?}").contains("MDEy"), "the key is redacted");
    }

    #[test]
    fn every_wrong_oauth2_key_is_named() {
        let bad = OAUTH
            .replace("[secrets]\nkey_env = \"KEY\"\n", "")
            .replace("provider = \"microsoft\"", "provider = \"custom\"\n  tenant = \"not a tenant\"\n  client_secret_env = \"SECRET\"")
            .replace("host = \"outlook.office365.com\"", "host = \"outlook.office365.com\"\n  password = \"x\"")
            .replace("host = \"smtp.office365.com\"", "host = \"smtp.office365.com\"\n  password_env = \"SECRET\"");
        assert_problems(
            &bad,
            &env,
            &[
                "mailbox[0].oauth2.tenant: expected a tenant id",
                "mailbox[0].imap.password: not used with auth = \"oauth2\"",
                "mailbox[0].smtp.password_env: not used with auth = \"oauth2\"",
                "secrets.key: missing",
            ],
        );
        let custom = OAUTH.replace("provider = \"microsoft\"", "provider = \"custom\"");
        assert_problems(
            &custom,
            &env,
            &[
                "mailbox[0].oauth2.token_url: missing: required with provider = \"custom\"",
                "mailbox[0].oauth2.device_authorization_url: missing",
                "mailbox[0].oauth2.scopes: missing",
            ],
        );
        let short = OAUTH.replace("key_env = \"KEY\"", "key = \"c2hvcnQ=\"");
        let text = Settings::parse(&short, &env).unwrap_err();
        assert_eq!(text[0].path, "secrets.key");
        assert!(text[0].message.contains("got 5 bytes"), "{text:?}");
        let no_section = OAUTH.replace("[mailbox.oauth2]", "[mailbox.unused]");
        let text: Vec<String> = Settings::parse(&no_section, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[0].oauth2: missing")),
            "{text:#?}"
        );
    }

    #[test]
    fn a_password_mailbox_still_needs_its_password() {
        let pw = OAUTH.replace("auth = \"oauth2\"", "auth = \"password\"");
        let text: Vec<String> = Settings::parse(&pw, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[0].imap.password: missing")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[0].oauth2: set, but auth is \"password\"")),
            "{text:#?}"
        );
    }
}
