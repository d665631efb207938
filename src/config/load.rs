//! Reading a file into [`Settings`] with every problem found. The document
//! is read until nothing is left to adjust: a secret's `KEY_env` or
//! `KEY_file`, which no section knows, becomes `KEY` (so each section only
//! declares `KEY`), and a missing key gets a stand-in, so the keys after it
//! are read too (serde stops a table at its first missing key).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Settings;
use crate::domain::settings::{Found, collecting};

/// The span of a stand-in: what is found wrong there is not reported.
const STAND_IN: Range<usize> = usize::MAX..usize::MAX;

pub(super) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `mailbox[1].smtp.port`; empty for the file itself.
    pub path: String,
    pub message: String,
    /// The key's line, or for a missing key its table's.
    pub line: Option<usize>,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>, line: Option<usize>) -> Self {
        let (path, message) = (path.into(), message.into());
        Problem {
            path,
            message,
            line,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.as_str() {
            "" => f.write_str(&self.message)?,
            path => write!(f, "{path}: {}", self.message)?,
        }
        match self.line {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        let s = if n == 1 { "" } else { "s" };
        writeln!(f, "{}: {n} problem{s}", self.file.display())?;
        self.problems.iter().try_for_each(|p| writeln!(f, "  {p}"))
    }
}

/// The problems so far, and every key path in the file with its value's span.
pub(super) struct Check {
    problems: Vec<Problem>,
    spans: Vec<(String, Range<usize>)>,
}

impl Check {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message, None));
    }

    /// No problem under `path` so far: rules between its values may be checked.
    pub(super) fn clean(&self, path: &str) -> bool {
        !self.problems.iter().any(|p| is_under(&p.path, path))
    }

    /// The file gives `path`, right or wrong.
    pub(super) fn given(&self, path: &str) -> bool {
        self.spans.iter().any(|(p, _)| p == path)
    }

    /// The innermost key whose value has this span.
    fn path_of(&self, span: &Range<usize>) -> String {
        let found = self.spans.iter().rev().find(|(_, s)| s == span);
        found.map(|(p, _)| p.clone()).unwrap_or_default()
    }
}

/// `path` is `table` or a key inside it.
fn is_under(path: &str, table: &str) -> bool {
    path.strip_prefix(table)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn join(table: &str, key: &str) -> String {
    match table {
        "" => key.to_owned(),
        t => format!("{t}.{key}"),
    }
}

pub(super) fn load(path: &Path, env: Env) -> Result<Settings, ConfigErrors> {
    let errors = |problems| ConfigErrors {
        file: path.to_owned(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        errors(vec![Problem::new(
            "",
            format!("cannot read the file: {e}"),
            None,
        )])
    })?;
    parse(&text, env).map_err(errors)
}

pub(super) fn parse(text: &str, env: Env) -> Result<Settings, Vec<Problem>> {
    let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let mut doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map(|s| format!("line {}: ", line_of(s.start)));
        let message = format!("{}not valid TOML: {}", at.unwrap_or_default(), e.message());
        vec![Problem::new("", message, None)]
    })?;
    let mut c = Check {
        problems: Vec::new(),
        spans: vec![(String::new(), doc.span())],
    };
    for (key, value) in doc.get_ref() {
        index(&mut c.spans, key.get_ref().to_string(), value);
    }
    // A key's path → the `KEY_env` or `KEY_file` that became it.
    let mut renamed = BTreeMap::new();
    let mut missing = Vec::new();
    let (mut settings, found, unknown) = loop {
        let mut unknown = Vec::new();
        let (settings, mut found) = collecting(|| {
            let de = toml::de::Deserializer::from(doc.clone());
            serde_ignored::deserialize(de, |path| unknown.push(key_path(&path)))
        });
        let settings: Result<Settings, ()> =
            settings.map_err(|e| found.push((doc.span(), e.message().to_owned())));
        found.retain(|(span, _)| *span != STAND_IN);
        if missing.len() > 100
            || !(secrets(doc.get_mut(), &unknown, env, &mut c, &mut renamed)
                || stand_in(doc.get_mut(), &found, &c, &mut missing))
        {
            break (settings.ok(), found, unknown);
        }
    };
    for path in unknown {
        c.problem(renamed.get(&path).unwrap_or(&path), "unknown key");
    }
    for (span, message) in missing.into_iter().chain(found) {
        let (path, line) = (c.path_of(&span), Some(line_of(span.start)));
        c.problems.push(match missing_key(&message) {
            Some(key) => Problem::new(join(&path, key), "missing (required)", line),
            None => Problem::new(path, message, line),
        });
    }
    if let Some(s) = settings.as_mut() {
        s.settle(&mut c);
    }
    let Check {
        mut problems,
        spans,
    } = c;
    for p in problems.iter_mut().filter(|p| p.line.is_none()) {
        let table = spans.iter().filter(|(k, _)| is_under(&p.path, k));
        p.line = table
            .max_by_key(|(k, _)| k.len())
            .map(|(_, s)| line_of(s.start));
    }
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    match settings {
        Some(s) if problems.is_empty() => Ok(s),
        _ => Err(problems),
    }
}

/// serde's "missing field `name`".
fn missing_key(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Gives each key reported missing a stand-in, remembering it with its
/// table's span. Returns whether anything changed.
fn stand_in(doc: &mut DeTable, found: &Found, c: &Check, missing: &mut Found) -> bool {
    let mut changed = false;
    for (span, message) in found {
        if let Some(key) = missing_key(message)
            && let Some(t) = table_mut(doc, &c.path_of(span))
            && !t.contains_key(key)
        {
            t.insert(stand_in_key(key, STAND_IN), stand_in_value(""));
            missing.push((span.clone(), message.clone()));
            changed = true;
        }
    }
    changed
}

/// Turns each secret's `KEY_env` or `KEY_file` that no section knows into
/// `KEY`, read from the environment or the file (trailing newline dropped).
/// At most one of `KEY`, `KEY_env` and `KEY_file` may be given. Returns
/// whether anything changed.
fn secrets(
    doc: &mut DeTable,
    unknown: &[String],
    env: Env,
    c: &mut Check,
    renamed: &mut BTreeMap<String, String>,
) -> bool {
    let mut changed = false;
    for u in unknown {
        let (table, key) = u.rsplit_once('.').unwrap_or(("", u));
        let Some(base) = key.strip_suffix("_env").or(key.strip_suffix("_file")) else {
            continue;
        };
        let Some(t) = table_mut(doc, table) else {
            continue;
        };
        // Gone when a sibling was handled first.
        let Some((k, v)) = t.remove_entry(key) else {
            continue;
        };
        changed = true;
        renamed.insert(join(table, base), u.clone());
        let keys = [
            base.to_owned(),
            format!("{base}_env"),
            format!("{base}_file"),
        ];
        let given = keys.iter().map(String::as_str);
        let given: Vec<&str> = given.filter(|g| *g == key || t.contains_key(*g)).collect();
        keys[1..].iter().for_each(|k| drop(t.remove(k.as_str())));
        let value = match (given.len(), v.get_ref()) {
            (1, DeValue::String(name)) => resolve(key, name.as_ref(), env),
            (1, _) => Err("expected a string".into()),
            _ => {
                let message = format!("give only one of {}", given.join(", "));
                c.problem(join(table, base), message);
                Ok(String::new())
            }
        };
        let value = value.map_err(|message| c.problem(u, message));
        if !t.contains_key(base) {
            let key = stand_in_key(base, k.span());
            match value {
                Ok(s) if !s.is_empty() => t.insert(key, Spanned::new(v.span(), string(s))),
                _ => t.insert(key, stand_in_value("<unresolved>")),
            };
        }
    }
    changed
}

fn resolve(key: &str, name: &str, env: Env) -> Result<String, String> {
    if key.ends_with("_env") {
        let value = env(name).filter(|v| !v.is_empty());
        return value.ok_or_else(|| format!("environment variable {name} is not set"));
    }
    match std::fs::read_to_string(name) {
        Ok(s) => Ok(s.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => Err(format!("cannot read {name}: {e}")),
    }
}

fn string<'i>(s: String) -> DeValue<'i> {
    DeValue::String(Cow::Owned(s))
}

fn stand_in_key<'i>(key: &str, span: Range<usize>) -> Spanned<Cow<'i, str>> {
    Spanned::new(span, Cow::Owned(key.to_owned()))
}

fn stand_in_value<'i>(s: &str) -> Spanned<DeValue<'i>> {
    Spanned::new(STAND_IN, string(s.to_owned()))
}

/// The table at `path` (`mailbox[1].imap`; empty: the root).
fn table_mut<'a, 'i>(mut t: &'a mut DeTable<'i>, path: &str) -> Option<&'a mut DeTable<'i>> {
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match seg.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let mut v = t.get_mut(key)?.get_mut();
        if let Some(i) = index {
            let DeValue::Array(a) = v else { return None };
            v = a.get_mut(i)?.get_mut();
        }
        let DeValue::Table(inner) = v else {
            return None;
        };
        t = inner;
    }
    Some(t)
}

/// Adds `path` and every key below it, with their values' spans.
fn index(spans: &mut Vec<(String, Range<usize>)>, path: String, value: &Spanned<DeValue>) {
    spans.push((path.clone(), value.span()));
    match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .for_each(|(k, v)| index(spans, format!("{path}.{}", k.get_ref()), v)),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| index(spans, format!("{path}[{i}]"), v)),
        _ => {}
    }
}

/// `serde_ignored`'s path, as `mailbox[1].smtp.colour`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        // toml's `Spanned`, inside every reader, shows as a key of its own.
        P::Map { parent, key } if key.starts_with("$__serde_spanned") => key_path(parent),
        P::Map { parent, key } => join(&key_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}
