//! `[chat]`: posting, whatever the platform.

use serde::Deserialize;

/// Chat posting, whatever the platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Attachments up to this size are uploaded into the thread; larger ones
    /// are listed with their name, type and size.
    #[serde(rename = "max_attachment_mb", deserialize_with = "mib")]
    pub max_attachment_bytes: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_attachment_bytes: 10 * 1024 * 1024,
        }
    }
}

fn mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    super::de::int::<0, 1024, u64, D>(d).map(|mb| mb * 1024 * 1024)
}
