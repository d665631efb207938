//! Text a teammate types: the thread/room command parser, the Slack slash
//! command parser, and Slack's markup read back. Nothing may panic, and what
//! the parsers accept must be safe to act on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom::domain::command::{Parsed, ThreadCommand, parse, parse_slash, unescape_slack};

fuzz_target!(|text: &str| {
    if let Ok(Parsed::Thread(ThreadCommand::Tag(tags) | ThreadCommand::Untag(tags))) = parse(text) {
        // Tags end up in the audit log and the status line: one line each.
        for t in tags {
            assert!(
                !t.as_str().contains(['\r', '\n']),
                "tag with a line break: {t:?}"
            );
        }
    }
    let _ = parse_slash(text);
    let markup = mailroom::chat::slack::render::read_markup(text);
    let _ = parse(&markup);
    let _ = unescape_slack(text);
    // Escaping for mrkdwn leaves no markup characters behind.
    let escaped = mailroom::chat::slack::render::escape(text);
    assert!(!escaped.contains(['<', '>']), "escaped text keeps markup");
});
