//! `[web]`: where the dashboard is served, the address its sign-in links
//! name, and how long links and sessions last.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::settings::{http_url, lenient, read, secs, socket_addr};

/// The dashboard's settings. Without `listen` there is no dashboard, and
/// `!mailroom dashboard` says so.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebSettings {
    /// Where the dashboard is served; `None`: not served.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// The dashboard shows customers' mail to whoever holds a session: an
    /// address beyond this machine (rather than a TLS proxy in front of a
    /// loopback one) must be asked for explicitly.
    #[serde(deserialize_with = "lenient")]
    pub allow_non_loopback: bool,
    /// The address teammates open, as links name it (`https://mail.example.com/desk`);
    /// by default `http://` + `listen`.
    #[serde(deserialize_with = "http_url")]
    pub public_url: String,
    /// Whether the session cookie is marked `Secure` (sent over HTTPS only);
    /// by default, when `public_url` is `https://`.
    #[serde(deserialize_with = "lenient")]
    pub behind_tls: Option<bool>,
    /// How long a sign-in link may wait before it is opened.
    #[serde(rename = "link_ttl_secs", deserialize_with = "secs::<30, 3600, _>")]
    pub link_ttl: Duration,
    /// How long a browser stays signed in.
    #[serde(
        rename = "session_ttl_secs",
        deserialize_with = "secs::<300, 2_592_000, _>"
    )]
    pub session_ttl: Duration,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: None,
            allow_non_loopback: false,
            public_url: String::new(),
            behind_tls: None,
            link_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    read(d, socket_addr)
}

impl WebSettings {
    /// The base of every link, without a trailing slash.
    pub fn base_url(&self) -> String {
        match (&self.public_url, self.listen) {
            (u, _) if !u.is_empty() => u.clone(),
            (_, Some(addr)) => format!("http://{addr}"),
            (_, None) => String::new(),
        }
    }

    /// Whether the session cookie is `Secure`.
    pub fn secure_cookie(&self) -> bool {
        self.behind_tls
            .unwrap_or_else(|| self.public_url.starts_with("https://"))
    }

    /// The rules between keys, as `(key, problem)`; the config load reports
    /// each under `web.<key>`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !self.allow_non_loopback
        {
            out.push((
                "listen",
                format!(
                    "{addr} is not a loopback address, and the dashboard shows customers' mail: \
                     listen on 127.0.0.1 behind a TLS proxy (and set web.public_url), or set \
                     web.allow_non_loopback = true"
                ),
            ));
        }
        if self.listen.is_none() && !self.public_url.is_empty() {
            out.push((
                "public_url",
                "set, but web.listen is not: the dashboard is not served".to_owned(),
            ));
        }
        if self.public_url.contains(['?', '#']) {
            out.push((
                "public_url",
                "expected a base address without ? or # (links add /login?token=…)".to_owned(),
            ));
        }
        out
    }
}
