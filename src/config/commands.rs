//! `[commands]`: how chat commands behave, whatever the platform.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How chat commands behave, whatever the platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CommandSettings {
    /// A reply waits this long before it is sent; `!undo` cancels it meanwhile.
    #[serde(
        rename = "undo_secs",
        deserialize_with = "super::de::secs::<0, 3600, _>"
    )]
    pub undo_window: Duration,
    /// Where `!template NAME` finds `NAME.md`.
    #[serde(deserialize_with = "super::de::lenient")]
    pub templates_dir: PathBuf,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            undo_window: Duration::from_secs(10),
            templates_dir: PathBuf::from("bot-config/templates"),
        }
    }
}
