//! The dashboard's side of the bridge: the handles it is given, and the
//! sign-in links `!mailroom dashboard` (and `mailroom web link`) hand out.

use std::sync::Arc;

use super::App;
use crate::domain::chat::Platform;
use crate::domain::ids::Agent;
use crate::domain::time::Zone;
use crate::web::WebHandles;
use crate::web::auth::{IssueError, issue_link};

impl App {
    /// What the dashboard reads: the store, the clock, the mail parser for
    /// message texts, the mailboxes' time zones (the first mailbox's for
    /// the whole team's days), the SLA policies and calendars, and the
    /// Slack workspace's address for thread links.
    pub fn web_handles(&self) -> WebHandles {
        WebHandles {
            store: self.store.clone(),
            clock: self.clock.clone(),
            settings: Arc::new(self.settings.web.clone()),
            mail_text: Arc::new(|raw: &[u8]| crate::mail::parse::parse_email(raw).text),
            zone: self
                .settings
                .mailboxes
                .first()
                .map_or_else(Zone::system, |m| m.time_zone.clone()),
            zones: self
                .settings
                .mailboxes
                .iter()
                .map(|m| (m.name.clone(), m.time_zone.clone()))
                .collect(),
            sla: Arc::new(self.settings.sla.clone()),
            calendars: Arc::new(self.settings.calendars.clone()),
            slack_workspace: self.slack_workspace(),
        }
    }
}

/// A one-time sign-in link for `agent`, asked for `via` (a platform, `cli`).
pub async fn dashboard_link(app: &App, agent: &Agent, via: &str) -> Result<String, IssueError> {
    issue_link(
        app.store.as_ref(),
        &app.settings.web,
        agent,
        via,
        app.now_ms(),
    )
    .await
}

/// The private answer to `!mailroom dashboard`: the link, or why not.
pub async fn link_answer(app: &App, platform: Platform, agent: &Agent) -> String {
    match dashboard_link(app, agent, platform.as_str()).await {
        Ok(url) => format!(
            "Your dashboard sign-in link (opens once, within {} min): {url}",
            app.settings.web.link_ttl.as_secs().div_ceil(60)
        ),
        Err(IssueError::Disabled) => {
            "The web dashboard is not enabled here (an operator sets [web] listen).".to_owned()
        }
        Err(e) => {
            tracing::error!(error = %e, %agent, "no dashboard link");
            "⚠️ No sign-in link could be made just now; try again shortly.".to_owned()
        }
    }
}
