//! `[mailbox.auth_results]` and `[mailbox.loop_guard]`: whose
//! Authentication-Results to believe, and when a sender is a mail loop.
//! The rules themselves are pure, in `domain::authres` and
//! `domain::hygiene`; these are their settings as the file gives them.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::authres::Trusted;
use crate::domain::hygiene::LoopLimit;
use crate::domain::settings::{int, lenient, list};

/// `[mailbox.auth_results]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthResultsSettings {
    /// The authserv-ids whose topmost `Authentication-Results` header is
    /// believed. Not given: chosen by the IMAP host (see [`Self::trusted`]).
    #[serde(default, deserialize_with = "ids")]
    pub trusted_authserv_ids: Option<Vec<String>>,
    /// Believe a topmost header without an authserv-id (Microsoft 365
    /// writes its own so). Not given: chosen by the IMAP host.
    #[serde(default, deserialize_with = "lenient")]
    pub trust_unnamed: Option<bool>,
}

fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let ids: Vec<String> = list(d)?;
    Ok(Some(
        ids.into_iter()
            .map(|i| i.trim().to_ascii_lowercase())
            .filter(|i| !i.is_empty())
            .collect(),
    ))
}

impl AuthResultsSettings {
    /// Whom to believe. Unset keys follow the provider the IMAP host
    /// names, because only a provider's own receiving servers are sure to
    /// put their header on top of whatever a sender forged: Gmail and
    /// Google Workspace (`imap.gmail.com`) write `mx.google.com`; Microsoft
    /// 365 (`outlook.office365.com`) writes no authserv-id. Any other server
    /// is trusted only when named here, since mailroom cannot know whether
    /// it adds a header at all (if it does not, the topmost one is the
    /// sender's).
    pub fn trusted(&self, imap_host: &str) -> Trusted {
        let host = imap_host.trim_end_matches('.').to_ascii_lowercase();
        let google = host == "imap.gmail.com" || host.ends_with(".google.com");
        let microsoft = host == "outlook.office365.com"
            || host.ends_with(".outlook.com")
            || host.ends_with(".office365.com");
        let ids = match &self.trusted_authserv_ids {
            Some(ids) => ids.clone(),
            None if google => vec!["mx.google.com".to_owned()],
            None => Vec::new(),
        };
        Trusted::new(ids, self.trust_unnamed.unwrap_or(microsoft))
    }
}

/// `[mailbox.loop_guard]`: `max_messages` mails from one sender within
/// `window_minutes` are normal; more is a loop. The default, 20 in 10
/// minutes, is far above what a person writes (a customer sending a few
/// screenshots one mail each stays well under it) and far below what an
/// auto-responder ping-pong or a bounce storm produces; a loop's mail is
/// still stored and the room is told, so a limit met by a person hides
/// nothing for good.
#[derive(Debug, Clone, Deserialize)]
pub struct LoopGuardSettings {
    #[serde(default = "twenty", deserialize_with = "int::<1, 1_000_000, u32, _>")]
    pub max_messages: u32,
    #[serde(default = "ten", deserialize_with = "int::<1, 1440, u32, _>")]
    pub window_minutes: u32,
}

fn twenty() -> u32 {
    20
}
fn ten() -> u32 {
    10
}

impl Default for LoopGuardSettings {
    fn default() -> Self {
        LoopGuardSettings {
            max_messages: twenty(),
            window_minutes: ten(),
        }
    }
}

impl LoopGuardSettings {
    pub fn limit(&self) -> LoopLimit {
        LoopLimit {
            max_messages: self.max_messages.max(1),
            window: Duration::from_secs(60 * u64::from(self.window_minutes.max(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_follows_the_provider_unless_set() {
        let unset = AuthResultsSettings::default();
        assert_eq!(
            unset.trusted("imap.gmail.com"),
            Trusted::new(["mx.google.com".to_owned()], false)
        );
        assert_eq!(
            unset.trusted("outlook.office365.com"),
            Trusted::new([], true)
        );
        assert!(unset.trusted("mail.example.com").is_empty());
        let set = AuthResultsSettings {
            trusted_authserv_ids: Some(vec!["mx.example.com".into()]),
            trust_unnamed: Some(false),
        };
        assert_eq!(
            set.trusted("outlook.office365.com"),
            Trusted::new(["mx.example.com".to_owned()], false)
        );
    }
}
