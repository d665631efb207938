//! `users.getPresence` and `dnd.info`, in Slack's documented shapes
//! (<https://api.slack.com/methods/users.getPresence>,
//! <https://api.slack.com/methods/dnd.info>), and the test controls that
//! set what they answer. Everyone is "active" with DND off until told.

use serde_json::{Value, json};

use super::util::unix_micros;
use super::web::{ApiError, Params, err};
use super::{FakeSlack, Inner};

/// What the fake says of one user's availability.
#[derive(Debug, Clone, Default)]
pub(crate) struct Availability {
    pub away: bool,
    /// Snoozed notifications (DND turned on by hand) for this many more seconds.
    pub snooze_secs: Option<i64>,
}

impl FakeSlack {
    /// `users.getPresence` answers "away" (`true`) or "active" for `user`.
    pub fn set_away(&self, user: &str, away: bool) {
        self.inner
            .lock()
            .availability
            .entry(user.to_owned())
            .or_default()
            .away = away;
        self.inner.touched();
    }

    /// `dnd.info` answers snoozed for the next `secs` seconds (`None`: DND off).
    pub fn set_snooze(&self, user: &str, secs: Option<i64>) {
        self.inner
            .lock()
            .availability
            .entry(user.to_owned())
            .or_default()
            .snooze_secs = secs;
        self.inner.touched();
    }
}

impl Inner {
    pub(crate) fn presence_api(&self, method: &str, p: &Params) -> Result<Value, ApiError> {
        let st = self.lock();
        let user = p.str("user").ok_or_else(|| err("user_not_found"))?;
        if !st.users.contains_key(&user) {
            return Err(err("user_not_found"));
        }
        let a = st.availability.get(&user).cloned().unwrap_or_default();
        let now = (unix_micros() / 1_000_000) as i64;
        Ok(match method {
            "users.getPresence" => json!({
                "presence": if a.away { "away" } else { "active" },
                "online": !a.away,
                "auto_away": a.away,
                "manual_away": false,
                "connection_count": 1,
                "last_activity": now - if a.away { 1800 } else { 10 }
            }),
            _ => match a.snooze_secs {
                Some(secs) => json!({
                    "dnd_enabled": true,
                    "next_dnd_start_ts": now + 86_400,
                    "next_dnd_end_ts": now + 90_000,
                    "snooze_enabled": true,
                    "snooze_endtime": now + secs,
                    "snooze_remaining": secs
                }),
                None => json!({
                    "dnd_enabled": false,
                    "next_dnd_start_ts": 1,
                    "next_dnd_end_ts": 1,
                    "snooze_enabled": false
                }),
            },
        })
    }
}
