//! Who may import whom among the library's parts, checked on the source
//! itself. The rules are [`RULES`] below: the domain is pure and imports no
//! other part; chat and mail import the domain only, and so does the store;
//! ops is handed handles and never imports the bridge; no two parts import
//! each other.
//!
//! Every file under `src/` (the library; `main.rs` and `src/bin/` are
//! separate crates on top of it) is read, comments and literals are blanked
//! out, and every path that reaches another top-level part is found: `use`
//! lines, grouped and multi-line `use crate::{a::x, b::y}`, `super::super::…`
//! (resolved against the file's module, inline `mod` blocks included) and
//! fully qualified `crate::x::y` written inline. Each one breaking a rule is
//! reported as `file:line: rule`; then the parts' imports are checked for
//! cycles.
//!
//! Text, not `syn`: a few hundred lines that need no new dependency, and
//! the test of the test below keeps them honest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Each top-level part, the parts it may import, and the rule as reported.
/// A part missing here fails the check: a new part needs a rule.
const RULES: &[(&str, &[&str], &str)] = &[
    ("domain", &[], "domain imports no other part"),
    ("chat", &["domain"], "chat and mail import domain only"),
    ("mail", &["domain"], "chat and mail import domain only"),
    ("store", &["domain"], "store imports domain only"),
    (
        "ops",
        &["domain", "store"],
        "ops imports domain and the store's vocabulary only; it is handed handles, never the bridge",
    ),
    (
        "web",
        &["domain", "store"],
        "web imports domain and the store only; it is handed handles, never the bridge",
    ),
    (
        "config",
        &["domain", "chat", "mail", "store", "ops", "web"],
        "config imports domain and the parts whose settings it gathers, never bridge or cli",
    ),
    (
        "bridge",
        &["domain", "chat", "mail", "store", "ops", "web", "config"],
        "bridge imports every part but cli",
    ),
    (
        "cli",
        &[
            "domain", "chat", "mail", "store", "ops", "web", "config", "bridge",
        ],
        "cli may import every part",
    ),
];

/// Imports the rules above forbid but the tree still has, each with its
/// reason. Entries come off as the code they excuse is changed; an entry no
/// longer needed is pointed out on stderr.
const TRANSITIONAL: &[(&str, &str, &str)] = &[];

/// Crates that do I/O; the domain stays pure of them.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio_util",
    "tokio_rustls",
    "tokio_tungstenite",
    "sqlx",
    "async_imap",
    "imap",
    "lettre",
    "matrix_sdk",
    "slack_morphism",
    "reqwest",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "axum",
    "rustls",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// One reference from a file to another top-level part.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    line: usize,
    part: String,
}

/// What one file references: other parts, and external crates by name.
#[derive(Debug, Default)]
struct Refs {
    imports: Vec<Import>,
    /// `(line, crate)` for paths whose first segment is an I/O crate.
    crates: Vec<(usize, String)>,
    /// Lines with a glob of the crate root (`use crate::*`), which names no part.
    root_globs: Vec<usize>,
}

/// `src/chat/slack/intake.rs` → `["chat", "slack", "intake"]`;
/// `src/chat/mod.rs` → `["chat"]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_prefix("src/").unwrap_or(rel);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// The source with comments, strings and char literals blanked to spaces
/// (newlines kept, so lines still count right).
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == 'r'
            && (i == 0 || !ident(at(i - 1)) || (at(i - 1) == 'b' && (i < 2 || !ident(at(i - 2)))))
            && (at(i + 1) == '"' || at(i + 1) == '#')
            && {
                let mut k = i + 1;
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"…", r#"…"#, br"…".
            out.push(' ');
            i += 1;
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(i) == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() {
                match c[i] {
                    '\\' => {
                        out.push(' ');
                        blank(&mut out, at(i + 1));
                        i += 2;
                    }
                    '"' => {
                        out.push(' ');
                        i += 1;
                        break;
                    }
                    ch => {
                        blank(&mut out, ch);
                        i += 1;
                    }
                }
            }
        } else if at(i) == '\'' && (at(i + 1) == '\\' || (at(i + 2) == '\'' && at(i + 1) != '\'')) {
            // A char literal ('x', '\n', '\u{1F4E8}'); a lifetime has no closing quote.
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (n, line) in src.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            if ch.is_whitespace() {
                i += 1;
            } else if ch.is_alphanumeric() || ch == '_' {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    text: c[start..i].iter().collect(),
                    line: n + 1,
                });
            } else if ch == ':' && c.get(i + 1) == Some(&':') {
                out.push(Token {
                    text: "::".into(),
                    line: n + 1,
                });
                i += 2;
            } else {
                out.push(Token {
                    text: ch.to_string(),
                    line: n + 1,
                });
                i += 1;
            }
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Every reference in one file (`rel`: its path from the repository root).
fn references(rel: &str, src: &str) -> Refs {
    let toks = tokens(&blank_comments_and_literals(src));
    let text = |k: usize| toks.get(k).map(|t| t.text.as_str()).unwrap_or("");
    let file_module = module_path(rel);
    let mut refs = Refs::default();
    // Inline `mod name {` blocks open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match text(i) {
            "{" => {
                depth += 1;
                i += 1;
                continue;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            "mod" if is_ident(text(i + 1)) && text(i + 2) == "{" => {
                inline.push((text(i + 1).to_owned(), depth));
                i += 2;
                continue;
            }
            _ => {}
        }
        let starts_path = i == 0 || text(i - 1) != "::";
        // `::tokio::…`, `use ::sqlx;`: a leading `::` names an external crate.
        let global = i >= 1
            && text(i - 1) == "::"
            && (i < 2 || !is_ident(text(i - 2)) || text(i - 2) == "use");
        let word = text(i);
        if (starts_path || global) && IO_CRATES.contains(&word) {
            let used = global || text(i + 1) == "::" || (i >= 1 && text(i - 1) == "use");
            if used && (i < 1 || text(i - 1) != ".") {
                refs.crates.push((toks[i].line, word.to_owned()));
            }
        }
        if !starts_path || !matches!(word, "crate" | "super" | "self") || text(i + 1) != "::" {
            i += 1;
            continue;
        }
        // Resolve the path's leading `crate` / `self` / `super`s.
        let mut module: Vec<String> = file_module.clone();
        module.extend(inline.iter().map(|(m, _)| m.clone()));
        let mut resolved: Vec<String> = match word {
            "crate" => Vec::new(),
            "self" => module.clone(),
            _ => {
                module.pop();
                module.clone()
            }
        };
        let mut k = i + 1;
        while text(k) == "::" && text(k + 1) == "super" {
            resolved.pop();
            k += 2;
        }
        // The first segment below the root names the part.
        if resolved.is_empty() {
            if text(k) == "::" && is_ident(text(k + 1)) && text(k + 1) != "self" {
                refs.imports.push(Import {
                    line: toks[k + 1].line,
                    part: text(k + 1).to_owned(),
                });
            } else if text(k) == "::" && text(k + 1) == "{" {
                // `crate::{a::x, b::{y, z}}`: the first segment of each item.
                let mut level = 0usize;
                let mut expect_item = true;
                let mut j = k + 2;
                while j < toks.len() {
                    match text(j) {
                        "{" => level += 1,
                        "}" if level == 0 => break,
                        "}" => level -= 1,
                        "," if level == 0 => expect_item = true,
                        t if expect_item && level == 0 => {
                            if is_ident(t) && t != "self" {
                                refs.imports.push(Import {
                                    line: toks[j].line,
                                    part: t.to_owned(),
                                });
                            }
                            expect_item = false;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                // Past the group's closing brace (its opening one was skipped too).
                k = j + 1;
            } else if text(k) == "::" && text(k + 1) == "*" {
                refs.root_globs.push(toks[k + 1].line);
            }
        } else {
            refs.imports.push(Import {
                line: toks[i].line,
                part: resolved[0].clone(),
            });
        }
        i = k.max(i + 1);
    }
    refs
}

fn rule(part: &str) -> Option<(&'static [&'static str], &'static str)> {
    RULES
        .iter()
        .find(|(p, ..)| *p == part)
        .map(|(_, allowed, why)| (*allowed, *why))
}

fn transitional(from: &str, to: &str) -> bool {
    TRANSITIONAL.iter().any(|(f, t, _)| *f == from && *t == to)
}

/// The part a library file belongs to: `src/chat/slack/mod.rs` → `chat`.
fn part_of(rel: &str) -> String {
    module_path(rel).into_iter().next().unwrap_or_default()
}

/// The rules one file breaks, and the parts it imports (for the cycle check).
fn check_file(rel: &str, src: &str) -> (Vec<Violation>, Vec<(String, usize)>) {
    let part = part_of(rel);
    let refs = references(rel, src);
    let mut broken = Vec::new();
    let v = |line: usize, message: String| Violation {
        file: rel.to_owned(),
        line,
        message,
    };
    let Some((allowed, why)) = rule(&part) else {
        broken.push(v(
            1,
            format!("{part} is a part with no rule; add it to RULES in tests/it/architecture.rs"),
        ));
        return (broken, Vec::new());
    };
    let mut edges = Vec::new();
    for Import { line, part: to } in &refs.imports {
        if *to == part {
            continue;
        }
        edges.push((to.clone(), *line));
        if !allowed.contains(&to.as_str()) && !transitional(&part, to) {
            broken.push(v(*line, format!("{part} may not import {to} ({why})")));
        }
    }
    for line in &refs.root_globs {
        broken.push(v(
            *line,
            format!("{part} globs the crate root, which names no part; import parts by name"),
        ));
    }
    if part == "domain" {
        for (line, krate) in &refs.crates {
            broken.push(v(
                *line,
                format!("domain may not use {krate} (domain is pure: no I/O crates)"),
            ));
        }
    }
    (broken, edges)
}

/// Cycles among the parts, each named once with where its imports are.
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().insert(to.as_str());
    }
    // The path from `from` to `to`, if there is one (breadth first: shortest).
    let path = |from: &str, to: &str| -> Option<Vec<String>> {
        let mut came: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for &m in next.get(n).into_iter().flatten() {
                if m == to {
                    let mut p = vec![m.to_owned(), n.to_owned()];
                    let mut at = n;
                    while at != from {
                        at = came[at];
                        p.push(at.to_owned());
                    }
                    p.reverse();
                    return Some(p);
                }
                if m != from && !came.contains_key(m) {
                    came.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        None
    };
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for part in next.keys() {
        let Some(cycle) = path(part, part) else {
            continue;
        };
        let members: BTreeSet<String> = cycle.iter().cloned().collect();
        if !seen.insert(members) {
            continue;
        }
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let at = &edges[&(w[0].clone(), w[1].clone())];
                format!("{} → {} at {at}", w[0], w[1])
            })
            .collect();
        out.push(format!(
            "cycle: {} (no two parts may import each other: {})",
            cycle.join(" → "),
            hops.join("; ")
        ));
    }
    out
}

/// Checks a set of library files (`(path from the repository root, text)`).
/// Returns the rules broken, cycles last.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for (rel, src) in files {
        let (v, out) = check_file(rel, src);
        broken.extend(v);
        for (to, line) in out {
            edges
                .entry((part_of(rel), to))
                .or_insert_with(|| format!("{rel}:{line}"));
        }
    }
    broken.sort();
    let mut out: Vec<String> = broken.iter().map(Violation::to_string).collect();
    out.extend(cycles(&edges));
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's files: `src/` without the crate roots of binaries
/// (`main.rs`, `bin/`) and without `lib.rs`, which only lists the parts.
fn library_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let rel = p
                .strip_prefix(root)
                .expect("under the repository")
                .to_string_lossy()
                .replace('\\', "/");
            let skip = rel == "src/lib.rs" || rel == "src/main.rs" || rel.starts_with("src/bin/");
            (!skip).then(|| {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
                (rel, text)
            })
        })
        .collect()
}

#[test]
fn architecture_parts_import_only_what_the_rules_allow() {
    let files = library_sources();
    assert!(
        files.len() > 20,
        "found only {} files under src/: is CARGO_MANIFEST_DIR right?",
        files.len()
    );
    let broken = check(&files);
    // Allow-list entries nothing needs any more: time to delete them.
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for (rel, src) in &files {
        for Import { part, .. } in references(rel, src).imports {
            used.insert((part_of(rel), part));
        }
    }
    for (from, to, why) in TRANSITIONAL {
        if !used.contains(&((*from).to_owned(), (*to).to_owned())) {
            eprintln!(
                "architecture: {from} no longer imports {to}; delete its TRANSITIONAL entry ({why})"
            );
        }
    }
    assert!(
        broken.is_empty(),
        "{} import rule(s) broken (who may import whom: RULES in tests/it/architecture.rs):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

// The checker itself: each of these would pass silently if the scanner
// missed a form of import.

fn one(rel: &str, src: &str) -> Vec<String> {
    check(&[(rel.to_owned(), src.to_owned())])
}

#[test]
fn architecture_check_names_file_line_and_rule() {
    let src = "//! An adapter.\n\nuse crate::domain::ids::Agent;\nuse crate::store::ChatThread;\n";
    assert_eq!(
        one("src/chat/matrix.rs", src),
        ["src/chat/matrix.rs:4: chat may not import store (chat and mail import domain only)"]
    );
}

#[test]
fn architecture_check_sees_grouped_multiline_and_inline_paths() {
    let src = "use crate::{\n    domain::ids::Agent,\n    bridge::{App, now_ms},\n};\n\
               fn f() {\n    let _ = crate::chat::ChatError::Permanent;\n}\n";
    assert_eq!(
        one("src/store/sql.rs", src),
        [
            "src/store/sql.rs:3: store may not import bridge (store imports domain only)",
            "src/store/sql.rs:6: store may not import chat (store imports domain only)",
        ]
    );
}

#[test]
fn architecture_check_resolves_super_through_files_and_inline_modules() {
    // src/mail/ingest.rs is `mail::ingest`; its `mod tests` one level deeper.
    let src = "use super::imap::Session;\nfn f(_: super::super::store::StoreError) {}\n\
               #[cfg(test)]\nmod tests {\n    use super::super::parse::x;\n    use super::super::super::bridge::App;\n}\n\
               fn g() -> super::super::ops::X {}\n";
    assert_eq!(
        one("src/mail/ingest.rs", src),
        [
            "src/mail/ingest.rs:2: mail may not import store (chat and mail import domain only)",
            "src/mail/ingest.rs:6: mail may not import bridge (chat and mail import domain only)",
            "src/mail/ingest.rs:8: mail may not import ops (chat and mail import domain only)",
        ]
    );
    // From a part's mod.rs one `super` is the root.
    assert_eq!(
        one("src/ops/mod.rs", "use super::bridge::App;\n"),
        [
            "src/ops/mod.rs:1: ops may not import bridge (ops imports domain and the store's vocabulary only; it is handed handles, never the bridge)"
        ]
    );
}

#[test]
fn architecture_check_ignores_comments_strings_and_visibility() {
    let src = "// use crate::store::X;\n/* crate::bridge::App /* nested */ crate::store */\n\
               const S: &str = \"crate::store::X\";\nconst R: &str = r#\"use crate::bridge::App;\"#;\n\
               const C: char = '\"';\nfn f<'a>(x: &'a str) -> &'a str { x }\npub(crate) fn g() {}\n\
               pub(super) fn h() {}\nuse crate::domain::ids::Agent;\n";
    assert_eq!(one("src/chat/mod.rs", src), Vec::<String>::new());
}

#[test]
fn architecture_check_keeps_the_domain_free_of_io_crates_and_parts() {
    let src = "use crate::domain::ids::Agent;\nuse super::email::Party;\nasync fn f() {\n    tokio::task::yield_now().await;\n}\n\
               use ::sqlx;\nfn g(_: crate::config::Settings) {}\n";
    assert_eq!(
        one("src/domain/ticket.rs", src),
        [
            "src/domain/ticket.rs:4: domain may not use tokio (domain is pure: no I/O crates)",
            "src/domain/ticket.rs:6: domain may not use sqlx (domain is pure: no I/O crates)",
            "src/domain/ticket.rs:7: domain may not import config (domain imports no other part)",
        ]
    );
}

#[test]
fn architecture_check_keeps_config_above_the_parts_it_gathers() {
    let src = "use crate::config::Settings;\n";
    assert_eq!(
        one("src/chat/matrix.rs", src),
        ["src/chat/matrix.rs:1: chat may not import config (chat and mail import domain only)"]
    );
    assert_eq!(
        one("src/store/sql.rs", src),
        ["src/store/sql.rs:1: store may not import config (store imports domain only)"]
    );
    let gathers = "use crate::mail::settings::MailboxSettings;\nuse crate::ops::Health;\n";
    assert_eq!(one("src/config/mod.rs", gathers), Vec::<String>::new());
}

#[test]
fn architecture_check_finds_cycles_and_unknown_parts() {
    let files = [
        ("src/bridge/mod.rs", "use crate::ops::http::serve;\n"),
        ("src/ops/http.rs", "\nuse crate::bridge::App;\n"),
        ("src/newpart/mod.rs", "use crate::domain::ids::Agent;\n"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(
        check(&files),
        [
            "src/newpart/mod.rs:1: newpart is a part with no rule; add it to RULES in tests/it/architecture.rs",
            "src/ops/http.rs:2: ops may not import bridge (ops imports domain and the store's vocabulary only; it is handed handles, never the bridge)",
            "cycle: bridge → ops → bridge (no two parts may import each other: bridge → ops at src/bridge/mod.rs:1; ops → bridge at src/ops/http.rs:2)",
        ]
    );
}
