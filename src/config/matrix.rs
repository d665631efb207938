//! `[matrix]`: the bot's Matrix account.

use std::path::PathBuf;

use serde::Deserialize;

use super::Check;
use super::de::{HttpUrl, Int, Key, checked, want};
use super::secret::Secret;

#[derive(Debug, Clone)]
pub struct MatrixSettings {
    pub homeserver: String,
    pub user_id: String,
    pub auth: MatrixAuth,
    pub state_dir: PathBuf,
    /// Room power level needed to claim, reply or change a ticket.
    pub min_power_level: i64,
    pub device_name: String,
}

#[derive(Debug, Clone)]
pub enum MatrixAuth {
    Password(Secret),
    AccessToken(Secret),
}

checked!(
    /// A Matrix user id.
    UserId(String), |u| want(u.starts_with('@') && u.contains(':'), u, |u| format!("expected @user:server, got {u:?}"))
);

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct MatrixFile {
    homeserver: Key<HttpUrl>,
    user_id: Key<UserId>,
    password_env: Key<String>,
    access_token_env: Key<String>,
    state_dir: Key<PathBuf>,
    min_power_level: Key<Int<-1_000_000, 1_000_000>>,
    device_name: Key<String>,
}

impl MatrixFile {
    pub(super) fn settle(self, c: &mut Check) -> Option<MatrixSettings> {
        let homeserver = c.need(self.homeserver, "matrix.homeserver");
        let user_id = c.need(self.user_id, "matrix.user_id");
        let auth = match (self.password_env, self.access_token_env) {
            (var, Key::Absent) if var.given() => {
                c.env("matrix.password_env", var).map(MatrixAuth::Password)
            }
            (Key::Absent, var) if var.given() => c
                .env("matrix.access_token_env", var)
                .map(MatrixAuth::AccessToken),
            (Key::Absent, Key::Absent) => {
                c.problem(
                    "matrix.password_env",
                    "missing: give password_env or access_token_env",
                );
                None
            }
            _ => {
                c.problem("matrix", "give password_env or access_token_env, not both");
                None
            }
        };
        Some(MatrixSettings {
            homeserver: homeserver?.0,
            user_id: user_id?.0,
            auth: auth?,
            state_dir: self.state_dir.or("state/matrix".into()),
            min_power_level: self.min_power_level.num_or(0),
            device_name: self.device_name.or("mailroom".into()),
        })
    }
}
