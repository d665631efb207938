//! The overview's filter: one mailbox, one teammate, one tag (GET
//! parameters `mailbox`, `person`, `tag`), checked against what there is,
//! how durations are counted (`hours`: elapsed or business hours), and the
//! links on the page that choose it.

use super::WebHandles;
use crate::domain::analytics::Hours;
use crate::domain::ids::{Agent, MailboxName, Tag};
use crate::store::StoreError;
use crate::store::analytics::{PeriodKind, Scope};

/// Which tickets the overview is about: all, or one mailbox's (its days
/// counted in its own zone), one teammate's, one tag's, or a mix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverviewFilter {
    pub mailbox: Option<MailboxName>,
    pub person: Option<Agent>,
    pub tag: Option<Tag>,
    /// Durations in elapsed time (the default) or in each mailbox's
    /// business hours (`[mailbox.business_hours]`).
    pub hours: Hours,
}

impl OverviewFilter {
    /// The filter as given in a request (`mailbox`, `person`, `tag`; empty
    /// is none). A value that names nothing here is an error naming it and
    /// what there is: the mailboxes configured, the people who own or
    /// owned a ticket, the tags in use.
    pub async fn parse(
        h: &WebHandles,
        mailbox: Option<&str>,
        person: Option<&str>,
        tag: Option<&str>,
        hours: Option<&str>,
    ) -> Result<Result<OverviewFilter, String>, StoreError> {
        let mut f = OverviewFilter::default();
        if let Some(x) = given(hours) {
            match Hours::parse(x) {
                Some(x) => f.hours = x,
                None => {
                    return Ok(Err(format!(
                        "hours: {x:?} is neither \"wall\" (elapsed time) nor \"business\" (business hours)"
                    )));
                }
            }
        }
        if let Some(m) = given(mailbox) {
            match MailboxName::parse(m)
                .ok()
                .filter(|m| h.zones.contains_key(m))
            {
                Some(m) => f.mailbox = Some(m),
                None => {
                    let known: Vec<String> = h.zones.keys().map(|m| m.to_string()).collect();
                    return Ok(Err(format!(
                        "mailbox: there is no mailbox {m:?} (the mailboxes are {})",
                        known.join(", ")
                    )));
                }
            }
        }
        let (people, tags) = match (given(person), given(tag)) {
            (None, None) => return Ok(Ok(f)),
            _ => h.store.owners_and_tags().await?,
        };
        if let Some(p) = given(person) {
            match people.iter().find(|a| a.as_str() == p) {
                Some(a) => f.person = Some(a.clone()),
                None => {
                    return Ok(Err(format!(
                        "person: {p:?} owns no ticket (the people are {})",
                        list(people.iter().map(|a| a.to_string()))
                    )));
                }
            }
        }
        if let Some(t) = given(tag) {
            match tags.iter().find(|x| x.as_str() == t) {
                Some(x) => f.tag = Some(x.clone()),
                None => {
                    return Ok(Err(format!(
                        "tag: no ticket carries the tag {t:?} (the tags are {})",
                        list(tags.iter().map(|x| x.to_string()))
                    )));
                }
            }
        }
        Ok(Ok(f))
    }

    /// The filter as query parameters (`mailbox=…&person=…`), "" for none.
    pub fn query(&self) -> String {
        let pairs: Vec<(&str, String)> = [
            ("mailbox", self.mailbox.as_ref().map(|m| m.to_string())),
            ("person", self.person.as_ref().map(|p| p.to_string())),
            ("tag", self.tag.as_ref().map(|t| t.to_string())),
            (
                "hours",
                (self.hours != Hours::Wall).then(|| self.hours.as_str().to_owned()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    pub(super) fn scope(&self) -> Scope {
        Scope {
            mailboxes: self.mailbox.iter().cloned().collect(),
            person: self.person.clone(),
            tag: self.tag.clone(),
        }
    }

    /// "mailbox support, tag billing"; "" for everything.
    pub(super) fn label(&self) -> String {
        let parts: Vec<String> = [
            self.mailbox.as_ref().map(|m| format!("mailbox {m}")),
            self.person.as_ref().map(|p| format!("person {p}")),
            self.tag.as_ref().map(|t| format!("tag {t}")),
            (self.hours == Hours::Business).then(|| "business hours".to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect();
        parts.join(", ")
    }
}

/// A parameter's value, if one was given (blank is none).
fn given(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    match v.is_empty() {
        true => "none yet".to_owned(),
        false => v.join(", "),
    }
}

/// One choice of a filter: its label and the query that chooses it (the
/// period and the other filters kept).
#[derive(Debug, Clone)]
pub struct Choice {
    pub label: String,
    pub query: String,
    pub here: bool,
}

/// A filter's choices ("all" first), as links on the page.
#[derive(Debug, Clone)]
pub struct FilterRow {
    pub id: &'static str,
    pub name: &'static str,
    pub choices: Vec<Choice>,
}

pub(super) async fn filter_rows(
    h: &WebHandles,
    kind: PeriodKind,
    f: &OverviewFilter,
) -> Result<Vec<FilterRow>, StoreError> {
    let (people, tags) = h.store.owners_and_tags().await?;
    let with = |change: &dyn Fn(&mut OverviewFilter)| {
        let mut g = f.clone();
        change(&mut g);
        let q = g.query();
        let here = g == *f;
        let query = match q.is_empty() {
            true => format!("period={kind}"),
            false => format!("period={kind}&{q}"),
        };
        (query, here)
    };
    let row = |id: &'static str,
               name: &'static str,
               values: Vec<String>,
               set: &dyn Fn(&mut OverviewFilter, Option<&str>)| {
        let mut choices = Vec::new();
        let (query, here) = with(&|g| set(g, None));
        choices.push(Choice {
            label: "all".into(),
            query,
            here,
        });
        for v in values {
            let (query, here) = with(&|g| set(g, Some(&v)));
            choices.push(Choice {
                label: v.clone(),
                query,
                here,
            });
        }
        FilterRow { id, name, choices }
    };
    let hours = FilterRow {
        id: "filter-hours",
        name: "Durations",
        choices: [
            (Hours::Wall, "elapsed"),
            (Hours::Business, "business hours"),
        ]
        .into_iter()
        .map(|(x, label)| {
            let (query, here) = with(&|g| g.hours = x);
            Choice {
                label: label.to_owned(),
                query,
                here,
            }
        })
        .collect(),
    };
    Ok(vec![
        row(
            "filter-mailbox",
            "Mailbox",
            h.zones.keys().map(|m| m.to_string()).collect(),
            &|g, v| g.mailbox = v.and_then(|v| MailboxName::parse(v).ok()),
        ),
        row(
            "filter-person",
            "Person",
            people.iter().map(|a| a.to_string()).collect(),
            &|g, v| g.person = v.and_then(|v| Agent::parse(v).ok()),
        ),
        row(
            "filter-tag",
            "Tag",
            tags.iter().map(|t| t.to_string()).collect(),
            &|g, v| g.tag = v.and_then(|v| Tag::parse(v).ok()),
        ),
        hours,
    ])
}
