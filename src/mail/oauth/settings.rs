//! `[mailbox.oauth2]`: who the mailbox signs in with and where its tokens
//! come from. Per-provider defaults (endpoints, scopes, flow) are filled in
//! by the load's cross-field pass (`config::oauth`), so after a load every
//! URL here is set and `scopes` is not empty.

use serde::{Deserialize, Deserializer};

use crate::domain::settings::{Secret, http_url, lenient, port, read, text, want};
use crate::mail::auth::SaslPreference;

/// How a mailbox logs in (`auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `imap.password` and `smtp.password`.
    #[default]
    Password,
    /// An OAuth2 grant made by `mailroom auth login`.
    Oauth2,
}

/// Whose authorization server issues the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Google Workspace / Gmail.
    Google,
    /// Microsoft 365 (Entra ID).
    Microsoft,
    /// Any RFC 6749 server: every URL must be given.
    #[default]
    Custom,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Custom => "custom",
        }
    }
}

/// How `mailroom auth login` signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// RFC 8628: a code to enter on another device's browser.
    Device,
    /// Authorization code with PKCE and a loopback redirect (RFC 7636,
    /// RFC 8252); Google's device flow refuses the Gmail scope.
    Browser,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthSettings {
    #[serde(deserialize_with = "lenient")]
    pub provider: Provider,
    #[serde(deserialize_with = "client_id")]
    pub client_id: String,
    /// `client_secret`, `client_secret_env` or `client_secret_file`; `None`:
    /// a public client (Microsoft's device flow needs no secret).
    #[serde(default, deserialize_with = "lenient")]
    pub client_secret: Option<Secret>,
    /// Microsoft's directory: a tenant GUID or domain, or `organizations`
    /// (the default), `common`, `consumers`.
    #[serde(default, deserialize_with = "tenant")]
    pub tenant: Option<String>,
    /// Not given: the provider's scopes for IMAP, SMTP and a refresh token.
    #[serde(default, deserialize_with = "scopes")]
    pub scopes: Vec<String>,
    #[serde(default, deserialize_with = "url")]
    pub token_url: String,
    #[serde(default, deserialize_with = "url")]
    pub device_authorization_url: String,
    #[serde(default, deserialize_with = "url")]
    pub authorization_url: String,
    /// RFC 7009 token revocation, used by `auth logout`; Microsoft has none.
    #[serde(default, deserialize_with = "url")]
    pub revocation_url: String,
    /// The account that signs in; not given: the mailbox's address. For a
    /// Microsoft 365 shared mailbox, the delegate with Full Access.
    #[serde(default, deserialize_with = "lenient")]
    pub login_user: String,
    #[serde(default, deserialize_with = "lenient")]
    pub mechanism: SaslPreference,
    /// Not given: `browser` for Google, `device` otherwise.
    #[serde(default, deserialize_with = "lenient")]
    pub flow: Option<Flow>,
    /// The loopback port the browser flow listens on; not given: any free port.
    #[serde(default, deserialize_with = "redirect_port")]
    pub redirect_port: u16,
}

impl OAuthSettings {
    /// The flow `auth login` uses.
    pub fn flow(&self) -> Flow {
        self.flow.unwrap_or(match self.provider {
            Provider::Google => Flow::Browser,
            Provider::Microsoft | Provider::Custom => Flow::Device,
        })
    }

    /// The scopes as the token endpoint wants them: space-separated.
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    /// Fills the provider's defaults into what the file left out; returns
    /// the keys `custom` must give and did not.
    pub fn fill_defaults(&mut self) -> Vec<&'static str> {
        if self.provider == Provider::Microsoft && self.tenant.is_none() {
            self.tenant = Some("organizations".into());
        }
        let tenant = self.tenant.as_deref().unwrap_or("organizations");
        let ms =
            |path: &str| format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/{path}");
        let (token, device, authorize, revoke, scopes): (String, String, String, String, &[&str]) =
            match self.provider {
                Provider::Microsoft => (
                    ms("token"),
                    ms("devicecode"),
                    ms("authorize"),
                    String::new(),
                    &MICROSOFT_SCOPES,
                ),
                Provider::Google => (
                    "https://oauth2.googleapis.com/token".into(),
                    "https://oauth2.googleapis.com/device/code".into(),
                    "https://accounts.google.com/o/oauth2/v2/auth".into(),
                    "https://oauth2.googleapis.com/revoke".into(),
                    &GOOGLE_SCOPES,
                ),
                Provider::Custom => Default::default(),
            };
        let mut missing = Vec::new();
        for (value, default, key) in [
            (&mut self.token_url, token, "token_url"),
            (
                &mut self.device_authorization_url,
                device,
                "device_authorization_url",
            ),
            (&mut self.authorization_url, authorize, "authorization_url"),
            (&mut self.revocation_url, revoke, "revocation_url"),
        ] {
            if value.is_empty() {
                *value = default;
            }
            let needed = match key {
                "token_url" => true,
                "device_authorization_url" => {
                    self.flow == Some(Flow::Device) || self.flow.is_none()
                }
                "authorization_url" => self.flow == Some(Flow::Browser),
                _ => false,
            };
            if value.is_empty() && needed && self.provider == Provider::Custom {
                missing.push(key);
            }
        }
        if self.scopes.is_empty() {
            self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            if self.scopes.is_empty() {
                missing.push("scopes");
            }
        }
        missing
    }
}

/// Microsoft's IMAP and SMTP AUTH scopes, a refresh token, and who signed in
/// ("Authenticate an IMAP, POP or SMTP connection using OAuth", Microsoft Learn).
pub const MICROSOFT_SCOPES: [&str; 5] = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
    "openid",
    "email",
];

/// Gmail's full-mail scope (IMAP and SMTP) and who signed in; Google returns
/// a refresh token for installed apps without an extra scope.
pub const GOOGLE_SCOPES: [&str; 3] = ["https://mail.google.com/", "openid", "email"];

fn client_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, |s: String| {
        let ok = !s.trim().is_empty() && !s.contains(char::is_whitespace);
        want(ok, s, |_| {
            "expected the application (client) id, without spaces".into()
        })
    })
}

fn url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    http_url(d)
}

fn redirect_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    port(d)
}

fn scopes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = read(d, |l: Vec<String>| {
        let ok = !l.is_empty()
            && l.iter()
                .all(|s| !s.is_empty() && !s.contains(char::is_whitespace));
        want(ok, l, |_| {
            "expected a non-empty list of scopes, one a string, without spaces".into()
        })
    })?;
    Ok(list.unwrap_or_default())
}

/// A tenant GUID, a verified domain, or one of Microsoft's aliases.
pub fn valid_tenant(t: &str) -> bool {
    let guid = t.len() == 36
        && t.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let domain = t.contains('.') && t.split('.').all(label);
    guid || domain || ["organizations", "common", "consumers"].contains(&t)
}

fn tenant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |t: String| {
        want(valid_tenant(&t), Some(t), |_| {
            "expected a tenant id (GUID), a domain such as contoso.onmicrosoft.com, \
             or \"organizations\""
                .into()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_guids_domains_or_aliases() {
        for ok in [
            "organizations",
            "contoso.onmicrosoft.com",
            "example.com",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ] {
            assert!(valid_tenant(ok), "{ok}");
        }
        for bad in [
            "",
            "contoso",
            "a b.com",
            "72f988bf86f141af91ab2d7cd011db47",
            "x/../y.com",
            "-a.com",
        ] {
            assert!(!valid_tenant(bad), "{bad}");
        }
    }

    #[test]
    fn providers_fill_their_endpoints_and_scopes() {
        let mut ms = OAuthSettings {
            provider: Provider::Microsoft,
            tenant: Some("contoso.onmicrosoft.com".into()),
            ..Default::default()
        };
        assert!(ms.fill_defaults().is_empty());
        assert_eq!(
            ms.device_authorization_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"
        );
        assert_eq!(ms.flow(), Flow::Device);
        assert!(ms.scope().contains("offline_access"));
        let mut g = OAuthSettings {
            provider: Provider::Google,
            ..Default::default()
        };
        assert!(g.fill_defaults().is_empty());
        assert_eq!(g.flow(), Flow::Browser);
        assert_eq!(g.token_url, "https://oauth2.googleapis.com/token");
        let mut custom = OAuthSettings::default();
        assert_eq!(
            custom.fill_defaults(),
            ["token_url", "device_authorization_url", "scopes"]
        );
    }
}
