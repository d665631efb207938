//! `[reactions]`: which emoji claim, close or park a ticket.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer};

use super::Check;
use super::de::{Key, checked};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReactionSettings {
    #[serde(deserialize_with = "emoji")]
    pub claim: Vec<String>,
    #[serde(deserialize_with = "emoji")]
    pub close: Vec<String>,
    #[serde(deserialize_with = "emoji")]
    pub pending: Vec<String>,
}

impl Default for ReactionSettings {
    fn default() -> Self {
        ReactionSettings {
            claim: vec!["🙋".into(), "👀".into()],
            close: vec!["✅".into()],
            pending: vec!["⏳".into()],
        }
    }
}

checked!(
    /// A reaction: `:shortcode:` entries become their emoji, so one list
    /// serves Matrix (emoji keys) and Slack (names); custom emoji stay `:name:`.
    Emoji(String), |e| match e.trim() {
        "" => Err("expected a non-empty string".into()),
        e => Ok(crate::domain::command::reaction_key(e)),
    }
);

/// A non-empty list of emoji.
#[derive(Default)]
struct Emojis(Vec<String>);

impl<'de> Deserialize<'de> for Emojis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<Key<Emoji>>::deserialize(d)?;
        if list.is_empty() {
            return Err(serde::de::Error::custom("must list at least one value"));
        }
        Ok(Emojis(
            list.into_iter().filter_map(|e| Some(e.get()?.0)).collect(),
        ))
    }
}

fn emoji<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    super::de::lenient::<Emojis, D>(d).map(|e| e.0)
}

impl ReactionSettings {
    /// An emoji may do one thing only.
    pub(super) fn check(&self, c: &mut Check) {
        let mut seen = BTreeSet::new();
        for (key, list) in [
            ("claim", &self.claim),
            ("close", &self.close),
            ("pending", &self.pending),
        ] {
            for e in list {
                if !seen.insert(e) {
                    c.problem(
                        format!("reactions.{key}"),
                        format!("{e} is mapped to more than one action"),
                    );
                }
            }
        }
    }
}
