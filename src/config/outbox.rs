//! `[outbox]`: how sends are retried.

use std::time::Duration;

use serde::Deserialize;

use super::Check;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    /// Sends are tried this many times on transient failures before giving up.
    #[serde(deserialize_with = "super::de::int::<1, 1000, _, _>")]
    pub max_attempts: u32,
    #[serde(
        rename = "retry_initial_secs",
        deserialize_with = "super::de::secs::<1, 3600, _>"
    )]
    pub retry_initial: Duration,
    #[serde(
        rename = "retry_max_secs",
        deserialize_with = "super::de::secs::<1, 86_400, _>"
    )]
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_attempts: 12,
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
        }
    }
}

impl OutboxSettings {
    pub(super) fn check(&self, c: &mut Check) {
        if self.retry_max < self.retry_initial && c.clean("outbox") {
            c.problem(
                "outbox.retry_max_secs",
                "must be at least retry_initial_secs",
            );
        }
    }
}
