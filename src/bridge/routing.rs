//! Routing at ingest: a new ticket's first mail through the configured
//! rules ([`crate::domain::routing`]), made concrete for the platforms it is
//! posted to; and the same walk explained, for `mailroom rules test`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Settings;
use crate::domain::chat::Platform;
use crate::domain::ids::{EmailAddress, MailboxName};
use crate::domain::routing::{MailFacts, Route, Verdict, explain, route};
use crate::mail::parse::InboundEmail;

use super::App;

/// What rules look at in a parsed mail.
pub fn mail_facts<'a>(
    parsed: &'a InboundEmail,
    mailbox: &'a MailboxName,
    shared: &'a EmailAddress,
) -> MailFacts<'a> {
    MailFacts {
        mailbox,
        shared,
        from: &parsed.from.address,
        recipients: parsed
            .to
            .iter()
            .chain(parsed.cc.iter())
            .map(|p| &p.address)
            .collect(),
        subject: &parsed.subject,
        body: &parsed.text,
        has_attachment: parsed.attachments.iter().any(|a| !a.inline),
    }
}

/// The platforms a ticket is posted to: the mailbox's, plus any a rule
/// sends it to, of those running.
fn platforms(app: &App, mailbox: &MailboxName, route: &Route) -> Vec<Platform> {
    let mut out = app.platforms_for(mailbox);
    for p in route.rooms.keys() {
        if app.chats.contains_key(p) && !out.contains(p) {
            out.push(*p);
        }
    }
    out
}

impl App {
    /// What the rules decide for a new ticket of `mailbox` opened by
    /// `parsed`, and where it is posted.
    /// `unavailable`: people the chat platforms report away
    /// ([`App::unavailable_people`]), skipped by a pool's pick.
    pub fn route_new(
        &self,
        mailbox: &MailboxName,
        shared: &EmailAddress,
        parsed: &InboundEmail,
        unavailable: &BTreeMap<String, String>,
    ) -> (Route, Vec<Platform>) {
        let rules = &self.settings.rules;
        let routing = route(rules, &mail_facts(parsed, mailbox, shared));
        // Which id a person is assigned under depends on the platforms,
        // which depend on the rooms the rules chose: decide rooms first.
        let draft = Route {
            rooms: routing.rooms.clone(),
            ..Route::default()
        };
        let post_to = platforms(self, mailbox, &draft);
        let mut route = routing.resolve(&post_to);
        // No rule assigned it: the mailbox's own pool, if it has one.
        if route.owner.is_none() && route.auto.is_none() && route.mark.is_none() {
            route.auto = self
                .settings
                .assign_pools
                .get(mailbox)
                .map(|pool| pool.auto_for(&post_to));
        }
        if let Some(auto) = &mut route.auto {
            for c in &auto.candidates {
                if let Some(why) = unavailable.get(&c.name) {
                    auto.unavailable.insert(c.name.clone(), why.clone());
                }
            }
        }
        (route, post_to)
    }
}

/// The mailbox a mail was sent to: the first whose address (or a plus
/// variant) is in To or Cc, else the first configured.
pub fn mailbox_of<'s>(settings: &'s Settings, parsed: &InboundEmail) -> Option<&'s MailboxName> {
    let to: Vec<&EmailAddress> = parsed
        .to
        .iter()
        .chain(&parsed.cc)
        .map(|p| &p.address)
        .collect();
    settings
        .mailboxes
        .iter()
        .find(|m| to.iter().any(|a| m.address.is_same_mailbox(a)))
        .or(settings.mailboxes.first())
        .map(|m| &m.name)
}

/// `mailroom rules test`: each rule's verdict on `parsed` as if it arrived
/// in `mailbox`, and what would be done. Reads nothing but its arguments.
pub fn explain_text(settings: &Settings, mailbox: &MailboxName, parsed: &InboundEmail) -> String {
    let mut out = String::new();
    let Some(m) = settings.mailbox(mailbox) else {
        return format!("mailbox {mailbox} is not configured\n");
    };
    let facts = mail_facts(parsed, mailbox, &m.address);
    let (verdicts, routing) = explain(&settings.rules, &facts);
    // `writeln!` into a String cannot fail.
    let _ = writeln!(
        out,
        "mail: from {}, subject {:?}, to mailbox {mailbox}",
        parsed.from.address, parsed.subject
    );
    if settings.rules.is_empty() {
        let _ = writeln!(out, "no [[rule]] in the configuration");
    }
    for (rule, verdict) in settings.rules.iter().zip(&verdicts) {
        let _ = match verdict {
            Verdict::Hit => writeln!(
                out,
                "  HIT   {}{}: {}",
                rule.name,
                if rule.stop { " (stop)" } else { "" },
                rule.then.describe()
            ),
            Verdict::Miss(why) => writeln!(out, "  miss  {}: {why}", rule.name),
            Verdict::NotReached { stopped_by } => writeln!(
                out,
                "  --    {}: not tried, {stopped_by:?} stopped the walk",
                rule.name
            ),
        };
    }
    // Where it would be posted: a rule's room, else the mailbox's.
    let mut post: Vec<String> = Vec::new();
    let mut platforms: Vec<Platform> = Vec::new();
    for (p, room) in [
        (Platform::Matrix, &m.chat.matrix_room),
        (Platform::Slack, &m.chat.slack_channel),
    ] {
        if let Some(r) = routing.rooms.get(&p).or(room.as_ref()) {
            post.push(format!("{} {r}", p.as_str()));
            platforms.push(p);
        }
    }
    let route = routing.resolve(&platforms);
    let _ = writeln!(out, "result:");
    match route.mark {
        Some(mark) => {
            let _ = writeln!(
                out,
                "  kept as {} (ticket status {}), not posted",
                mark.as_str(),
                match mark {
                    crate::domain::routing::Mark::Ignore => "ignored",
                    crate::domain::routing::Mark::Spam => "spam",
                }
            );
        }
        None if post.is_empty() => {
            let _ = writeln!(out, "  posted nowhere (the mailbox has no chat target)");
        }
        None => {
            let _ = writeln!(out, "  post to {}", post.join(" and "));
        }
    }
    let tags: Vec<&str> = route.tags.iter().map(|t| t.as_str()).collect();
    let _ = writeln!(
        out,
        "  tags: {}",
        if tags.is_empty() {
            "none".to_owned()
        } else {
            tags.join(", ")
        }
    );
    let _ = writeln!(out, "  priority: {}", route.priority);
    if route.mark.is_none() {
        let pool = match &route.auto {
            Some(_) => None,
            None => settings.assign_pools.get(mailbox),
        };
        let _ = match (&route.owner, &route.auto, pool) {
            (Some((agent, via)), _, _) => writeln!(out, "  assigned to {agent} ({via})"),
            (None, Some(auto), _) => writeln!(
                out,
                "  auto-assigned in {} ({}) when it arrives",
                auto.pool,
                auto.strategy.words()
            ),
            (None, None, Some(pool)) => writeln!(
                out,
                "  auto-assigned in {} when it arrives",
                pool.describe()
            ),
            (None, None, None) => writeln!(out, "  unassigned"),
        };
    }
    out
}
