use super::*;
use crate::domain::ids::EmailAddress;
use proptest::prelude::*;

fn trimmed(text: &str) -> Trimmed {
    trim_reply(text)
}

// --- trim_reply: quotes -------------------------------------------------

#[test]
fn trailing_quote_with_attribution_is_removed() {
    let t = trimmed(
        "Thanks, that fixed it.\n\nOn Mon, 3 Jun 2024 at 10:00, Bob <b@x.example> wrote:\n> Try restarting.\n> \n> Bob\n",
    );
    assert_eq!(t.body, "Thanks, that fixed it.");
    assert!(t.quoted_trimmed);
    assert!(!t.signature_trimmed);
}

#[test]
fn trailing_quote_without_attribution_is_removed() {
    let t = trimmed("Yes please.\n\n> Shall we ship it?\n>> earlier\n");
    assert_eq!(t.body, "Yes please.");
    assert!(t.quoted_trimmed);
}

#[test]
fn wrapped_attribution_is_removed_whole() {
    let t = trimmed(
        "Sounds good.\n\nOn Mon, 3 Jun 2024 at 10:00, Bob Example\n<bob@example.com> wrote:\n\n> hello\n",
    );
    assert_eq!(t.body, "Sounds good.");
    assert!(t.quoted_trimmed);
}

#[test]
fn non_english_attributions_are_removed() {
    for attribution in [
        "Am 03.06.2024 um 10:00 schrieb Bob Example <bob@example.com>:",
        "Le lun. 3 juin 2024 à 10:00, Bob Example <bob@example.com> a écrit :",
        "Le lun. 3 juin 2024 à 10:00, Bob <bob@example.com> a écrit\u{a0}:",
        "El lun, 3 jun 2024 a las 10:00, Bob Example (<bob@example.com>) escribió:",
        "Op ma 3 jun. 2024 om 10:00 schreef Bob <bob@example.com>:",
    ] {
        let t = trimmed(&format!("Danke!\n\n{attribution}\n> Hallo\n> Welt\n"));
        assert_eq!(t.body, "Danke!", "attribution {attribution:?}");
        assert!(t.quoted_trimmed);
    }
}

#[test]
fn non_english_wrapped_attribution_is_removed() {
    let t = trimmed(
        "Merci.\n\nLe lun. 3 juin 2024 à 10:00, Bob Example\n<bob@example.com> a écrit :\n> Bonjour\n",
    );
    assert_eq!(t.body, "Merci.");
}

#[test]
fn interleaved_reply_keeps_inline_quotes_and_drops_trailing_ones() {
    let text = "On Mon, Bob wrote:\n> Is it broken?\nYes.\n\n> Since when?\nSince Monday.\n\n> Regards\n> Bob\n";
    let t = trimmed(text);
    assert_eq!(
        t.body,
        "On Mon, Bob wrote:\n> Is it broken?\nYes.\n\n> Since when?\nSince Monday."
    );
    assert!(t.quoted_trimmed);
}

#[test]
fn a_line_starting_with_gt_inside_text_is_kept() {
    let text = "We counted\n> 5 items\nin the parcel, expected 7.";
    let t = trimmed(text);
    assert_eq!(t.body, text);
    assert!(!t.quoted_trimmed);
}

#[test]
fn a_mail_that_is_only_a_quote_trims_to_nothing() {
    let t = trimmed("On Mon, Bob wrote:\n> hello\n");
    assert_eq!(t.body, "");
    assert!(t.quoted_trimmed);
}

#[test]
fn outlook_original_message_block_is_removed() {
    let t = trimmed(
        "Please see below.\r\n\r\n-----Original Message-----\r\nFrom: Bob\r\nSent: Monday\r\nSubject: x\r\n\r\nold text\r\n",
    );
    assert_eq!(t.body, "Please see below.");
    assert!(t.quoted_trimmed);
}

#[test]
fn outlook_header_block_is_removed() {
    let t = trimmed(
        "Approved.\n\nFrom: Bob Example <bob@example.com>\nSent: Monday, June 3, 2024 10:00 AM\nTo: Support <support@example.com>\nSubject: Refund\n\nCan I get a refund?\n",
    );
    assert_eq!(t.body, "Approved.");
    assert!(t.quoted_trimmed);
}

#[test]
fn outlook_header_block_with_date_and_bold_labels_is_removed() {
    let t = trimmed("Ok.\n\n**From:** Bob\n**Date:** Monday\n**Subject:** Refund\n\nold\n");
    assert_eq!(t.body, "Ok.");
}

#[test]
fn outlook_underscore_separator_is_removed() {
    let t = trimmed(
        "Done.\n\nGet Outlook for iOS\n________________________________\nFrom: Bob <bob@example.com>\nSent: Monday\nTo: x\nSubject: y\n\nold\n",
    );
    assert_eq!(t.body, "Done.");
    assert!(t.quoted_trimmed);
    assert!(t.signature_trimmed);
}

#[test]
fn a_lone_from_line_is_not_an_outlook_block() {
    let text = "From: the warehouse we got a call.\nIt was about the order.";
    assert_eq!(trimmed(text).body, text);
}

// --- trim_reply: signatures ---------------------------------------------

#[test]
fn rfc3676_signature_is_removed() {
    let t = trimmed("Hi,\nthe invoice is attached.\n\n-- \nAlice Example\nACME Support\n");
    assert_eq!(t.body, "Hi,\nthe invoice is attached.");
    assert!(t.signature_trimmed);
    assert!(!t.quoted_trimmed);
}

#[test]
fn bare_double_dash_signature_is_removed() {
    let t = trimmed("Hi\n--\nAlice\n");
    assert_eq!(t.body, "Hi");
    assert!(t.signature_trimmed);
}

#[test]
fn signature_and_quote_together_are_removed() {
    let t = trimmed(
        "Fixed now.\n\n-- \nAlice\n\nOn Mon, 3 Jun 2024 at 10:00, Bob <b@x.example> wrote:\n> broken\n",
    );
    assert_eq!(t.body, "Fixed now.");
    assert!(t.quoted_trimmed);
    assert!(t.signature_trimmed);
}

#[test]
fn quote_above_a_signature_is_removed_too() {
    let t = trimmed("Fixed now.\n\n> broken\n\n-- \nAlice\n");
    assert_eq!(t.body, "Fixed now.");
    assert!(t.quoted_trimmed);
    assert!(t.signature_trimmed);
}

#[test]
fn signature_separator_on_the_first_line_is_kept() {
    let text = "-- \nAlice Example\nACME Support";
    let t = trimmed(text);
    assert_eq!(t.body, text);
    assert!(!t.signature_trimmed);
    let t = trimmed("\n\n-- \nAlice");
    assert_eq!(t.body, "\n\n-- \nAlice");
}

#[test]
fn mobile_signatures_are_removed() {
    for sig in [
        "Sent from my iPhone",
        "Sent from my Android",
        "Get Outlook for iOS",
        "Get Outlook for Android",
        "Sent from my Samsung Galaxy smartphone.",
    ] {
        let t = trimmed(&format!("On my way.\n\n{sig}\n\n"));
        assert_eq!(t.body, "On my way.", "signature {sig:?}");
        assert!(t.signature_trimmed);
    }
}

#[test]
fn mobile_signature_above_an_apple_quote_is_removed() {
    let t = trimmed(
        "Sure.\n\nSent from my iPhone\n\n> On 3 Jun 2024, at 10:00, Bob <b@x.example> wrote:\n> \n> hi\n",
    );
    assert_eq!(t.body, "Sure.");
    assert!(t.quoted_trimmed && t.signature_trimmed);
}

#[test]
fn a_mobile_signature_alone_is_kept() {
    assert_eq!(trimmed("Sent from my iPhone").body, "Sent from my iPhone");
}

#[test]
fn inner_structure_is_kept_and_trailing_blank_lines_go() {
    let t = trimmed("Line one\n\n\nLine two\n  indented\n\n\n\n");
    assert_eq!(t.body, "Line one\n\n\nLine two\n  indented");
    assert!(!t.quoted_trimmed && !t.signature_trimmed);
}

#[test]
fn hostile_alternation_is_trimmed_in_linear_time() {
    // One rescan per removed line would make this take minutes.
    let mut text = String::from("Real text.\n");
    for _ in 0..100_000 {
        text.push_str("> q\nSent from my iPhone\n");
    }
    let t = trimmed(&text);
    assert_eq!(t.body, "Real text.");
    assert!(t.quoted_trimmed && t.signature_trimmed);
}

#[test]
fn crlf_text_is_trimmed_like_lf_text() {
    let t = trimmed("Thanks\r\n\r\nOn Mon, Bob wrote:\r\n> hi\r\n");
    assert_eq!(t.body, "Thanks");
}

// --- unflow --------------------------------------------------------------

#[test]
fn unflow_joins_soft_breaks() {
    assert_eq!(
        unflow("This is a \nlong paragraph.\nNext line.\n", false),
        "This is a long paragraph.\nNext line.\n"
    );
}

#[test]
fn unflow_delsp_removes_the_marker_space() {
    assert_eq!(
        unflow("Zusammen \ngeschrieben\n", true),
        "Zusammengeschrieben\n"
    );
    assert_eq!(
        unflow("Zusammen \ngeschrieben\n", false),
        "Zusammen geschrieben\n"
    );
}

#[test]
fn unflow_removes_space_stuffing() {
    assert_eq!(
        unflow(" From here\n >not a quote\n", false),
        "From here\n>not a quote\n"
    );
}

#[test]
fn unflow_joins_quoted_lines_only_at_the_same_depth() {
    let text = "> quoted \n> more\n>> deeper \n> back\nown \ntext";
    assert_eq!(
        unflow(text, false),
        "> quoted more\n>> deeper \n> back\nown text"
    );
}

#[test]
fn unflow_never_joins_the_signature_separator() {
    assert_eq!(unflow("Bye \n-- \nAlice\n", false), "Bye \n-- \nAlice\n");
    assert_eq!(
        unflow("Bye\n-- \nAlice \nExample", false),
        "Bye\n-- \nAlice Example"
    );
}

#[test]
fn unflow_normalises_crlf() {
    assert_eq!(unflow("a \r\nb\r\n", false), "a b\n");
}

// --- preview and view ----------------------------------------------------

#[test]
fn preview_takes_the_first_line_and_cuts() {
    assert_eq!(
        preview("\n\n  Hello   there,\tfriend \nsecond", 100),
        "Hello there, friend"
    );
    assert_eq!(preview("Hello there, friend", 11), "Hello there…");
    assert_eq!(preview("Hello there", 6), "Hello…");
    assert_eq!(preview("ééééé", 3), "ééé…");
    assert_eq!(preview("", 10), "");
    assert_eq!(preview("   \n  ", 10), "");
}

fn party(address: &str) -> Party {
    Party::new(None, EmailAddress::parse(address).unwrap())
}

#[test]
fn view_uses_the_trimmed_body() {
    let v = EmailView::new(
        party("bob@example.com"),
        vec![party("support@example.com")],
        vec![],
        "Re: hi".into(),
        Some(1_717_408_800),
        "Thanks!\n\n-- \nBob\n".into(),
        vec![],
        vec![],
    );
    assert_eq!(v.body, "Thanks!");
    assert!(v.signature_trimmed);
    assert_eq!(v.full_text, "Thanks!\n\n-- \nBob\n");
}

#[test]
fn view_of_a_pure_quote_shows_the_full_text() {
    let v = EmailView::new(
        party("bob@example.com"),
        vec![],
        vec![],
        "Fwd".into(),
        None,
        "On Mon, Ann wrote:\n> the original\n".into(),
        vec![],
        vec!["n".into()],
    );
    assert_eq!(v.body, "On Mon, Ann wrote:\n> the original");
    assert!(!v.quoted_trimmed && !v.signature_trimmed);
    assert_eq!(v.notes, vec!["n".to_owned()]);
}

// --- properties ------------------------------------------------------------

/// Text built from fragments that exercise every rule, joined by LF or CRLF.
fn marker_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("> quoted".to_owned()),
        Just(">".to_owned()),
        Just(">> deeper ".to_owned()),
        Just("-- ".to_owned()),
        Just("--".to_owned()),
        Just("".to_owned()),
        Just("   ".to_owned()),
        Just("On Mon, 3 Jun 2024, Bob <b@x> wrote:".to_owned()),
        Just("On Mon, 3 Jun 2024, Bob".to_owned()),
        Just("<b@x> wrote:".to_owned()),
        Just("Am 3. Juni schrieb Bob:".to_owned()),
        Just("-----Original Message-----".to_owned()),
        Just("________________________________".to_owned()),
        Just("From: Bob".to_owned()),
        Just("Sent: Monday".to_owned()),
        Just("Subject: x".to_owned()),
        Just("Sent from my iPhone".to_owned()),
        Just("Get Outlook for iOS".to_owned()),
        "[a-zA-Zé ]{0,20} ?",
        "\\PC{0,12}",
    ];
    (proptest::collection::vec(fragment, 0..16), any::<bool>())
        .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[\\PC\r\n>\\- ]{0,200}", marker_text()]
}

/// Text without any quote or signature markers: no '>', '-', '_' or ':'
/// (so no attribution or Outlook label can form).
fn plain_text() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-zA-Z0-9 ,.!?éü]{0,40}", 0..12).prop_map(|l| l.join("\n"))
}

proptest! {
    #[test]
    fn trim_never_panics_and_never_grows(text in any_text()) {
        let t = trim_reply(&text);
        prop_assert!(t.body.len() <= text.len());
        prop_assert!(text.starts_with(&t.body));
        let _ = unflow(&text, true);
        let _ = unflow(&text, false);
        let _ = preview(&text, 20);
    }

    #[test]
    fn trimming_is_idempotent(text in any_text()) {
        let once = trim_reply(&text).body;
        let twice = trim_reply(&once);
        prop_assert_eq!(&twice.body, &once);
        prop_assert!(!twice.quoted_trimmed && !twice.signature_trimmed);
    }

    #[test]
    fn plain_text_comes_back_unchanged(text in plain_text()) {
        let t = trim_reply(&text);
        prop_assert_eq!(t.body.as_str(), text.trim_end());
        prop_assert!(!t.quoted_trimmed && !t.signature_trimmed);
    }

    #[test]
    fn unflow_leaves_fixed_unquoted_text_alone(text in plain_text()) {
        // Lines without trailing spaces, leading spaces or '>' are all
        // hard breaks: nothing to join, unstuff or normalise.
        let text: String = text
            .lines()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join("\n");
        prop_assert_eq!(unflow(&text, false), text.clone());
        prop_assert_eq!(unflow(&text, true), text);
    }

    #[test]
    fn preview_is_bounded(text in any_text(), max in 0usize..50) {
        let p = preview(&text, max);
        prop_assert!(p.chars().count() <= max + 1);
        prop_assert!(!p.contains('\n'));
    }
}

#[test]
fn renderings_fall_back_full_plain_minimal_then_stop() {
    let mut seen = vec![Rendering::Full];
    while let Some(next) = seen.last().and_then(|r| r.fallback()) {
        seen.push(next);
    }
    assert_eq!(seen, Rendering::ALL.to_vec());
    let suffixes: std::collections::BTreeSet<_> =
        Rendering::ALL.iter().map(|r| r.key_suffix()).collect();
    assert_eq!(suffixes.len(), 3, "each level is its own request");
    assert_eq!(
        Rendering::Full.key_suffix(),
        "",
        "a full post keeps the job's key"
    );
}

#[test]
fn the_fallback_notice_says_what_is_shown_left_out_and_why() {
    let n = fallback_notice(
        Rendering::Minimal,
        &[
            (Rendering::Full, "M_TOO_LARGE".into()),
            (Rendering::Plain, "M_TOO_LARGE again".into()),
        ],
    );
    assert!(n.contains("as a short card"), "{n}");
    assert!(n.contains("full text is attached as a file"), "{n}");
    assert!(n.contains("• full version refused: M_TOO_LARGE\n"), "{n}");
    assert!(
        n.ends_with("• plain version refused: M_TOO_LARGE again"),
        "{n}"
    );
}
