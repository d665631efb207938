//! Raw bytes as a mail in the shared mailbox: parse, then render for both
//! chats the way the outbox does. Nothing may panic, and what is rendered
//! must fit the platforms' limits (a post the server refuses is a lost ticket).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom::chat::TicketCard;
use mailroom::chat::slack::render as slack;
use mailroom::domain::ids::{Agent, TicketId};
use mailroom::domain::ticket::TicketState;
use mailroom::mail::parse::{attachment_bytes, parse_email};

fuzz_target!(|raw: &[u8]| {
    let parsed = parse_email(raw);
    assert_eq!(parsed.size, raw.len());
    let view = parsed.view();
    let state = TicketState::Open;
    let card = TicketCard {
        ticket: TicketId::new(1),
        mailbox_display_name: "Support",
        state: &state,
        tags: vec![],
    };
    let owner = Agent::parse("@alice:example.org").ok();

    let root = mailroom::chat::matrix::root_content(&card, &view);
    let follow = mailroom::chat::matrix::follow_up_content(&view, owner.as_ref());
    for content in [root, follow] {
        let bytes = serde_json::to_vec(&content).map(|v| v.len()).unwrap_or(0);
        // Synapse refuses events over 65,536 bytes.
        assert!(bytes < 64 * 1024, "Matrix event of {bytes} bytes");
    }

    let (text, blocks) = slack::root_message(&card, &view);
    let (follow_text, follow_blocks) = slack::follow_up_message(&view, Some("slack:U1"));
    for (text, blocks) in [(text, blocks), (follow_text, follow_blocks)] {
        assert!(
            text.chars().count() <= 4_000,
            "Slack text of {} chars",
            text.len()
        );
        let blocks = blocks.as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(blocks.len() <= 50, "{} Slack blocks", blocks.len());
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(
                    t.chars().count() <= slack::SECTION_CHARS,
                    "section too long"
                );
            }
        }
    }

    // Attachment numbering agrees between the listing and the export.
    if parsed.attachments.len() < 64 {
        for i in 0..parsed.attachments.len() {
            assert!(
                attachment_bytes(raw, i).is_some(),
                "attachment {i} has no bytes"
            );
        }
    }
});
