//! The Matrix bridge's commands, invites, attachments from the thread,
//! room aliases, and claims during bursts, against a real Synapse.

use super::*;

#[tokio::test]
async fn reactions_and_commands_drive_the_ticket_and_answer_clearly() {
    let w = World::new().await;
    let run = w.start(w.settings(0, "")).await;
    let root = w
        .email("cmd1@example.net", "Commands", "Testing commands.")
        .await;
    let alice_id = w.alice.user_id.to_string();
    let store = run.store.clone();
    let state = || {
        let store = store.clone();
        async move { ticket_state(store.as_ref()).await }
    };

    // Claim by reaction, unclaim by redacting that reaction.
    let reaction = w.alice.react(&w.room, &root, "👀").await;
    wait_for("claimed", WAIT, || async {
        (state().await.status() == Status::Claimed).then_some(())
    })
    .await;
    w.alice
        .room(&w.room)
        .redact(&reaction, None, None)
        .await
        .expect("redact");
    wait_for("unclaimed by redaction", WAIT, || async {
        (state().await == TicketState::Open).then_some(())
    })
    .await;

    // The pending emoji, then a command reopening it.
    w.alice.react(&w.room, &root, "⏳").await;
    wait_for("pending", WAIT, || async {
        (state().await.status() == Status::Pending).then_some(())
    })
    .await;
    w.alice.say_in_thread(&w.room, &root, "!reopen").await;
    wait_for("reopened", WAIT, || async {
        (state().await == TicketState::Open).then_some(())
    })
    .await;

    // Assign, tags, history, help; a bad command gets its usage; unknown !words are talk.
    w.alice
        .say_in_thread(&w.room, &root, &format!("!assign {}", w.bob.user_id))
        .await;
    let bob_id = w.bob.user_id.to_string();
    wait_for("assigned to bob", WAIT, || async {
        matches!(state().await, TicketState::Claimed { by } if by.as_str() == bob_id).then_some(())
    })
    .await;
    w.alice
        .say_in_thread(&w.room, &root, "!tag vip billing")
        .await;
    w.alice.say_in_thread(&w.room, &root, "!assign").await;
    wait_event(&w.alice, &w.room, "the usage answer", |e| {
        in_thread_of(e, &root) && body(e).contains("Usage: !assign")
    })
    .await;
    w.alice
        .say_in_thread(&w.room, &root, "!important: internal remark")
        .await;
    w.alice.say_in_thread(&w.room, &root, "!history").await;
    let history = wait_event(&w.alice, &w.room, "the history", |e| {
        in_thread_of(e, &root) && body(e).starts_with("History of #1")
    })
    .await;
    for needle in [
        "created", "claim", "unclaim", "pending", "reopen", "assign", "tag vip",
    ] {
        assert!(
            body(&history).contains(needle),
            "{needle} not in {}",
            body(&history)
        );
    }
    w.alice.say_in_thread(&w.room, &root, "!help").await;
    wait_event(&w.alice, &w.room, "the help", |e| {
        in_thread_of(e, &root) && body(e).contains("!undo")
    })
    .await;
    let t = run
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        t.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        vec!["billing", "vip"]
    );
    let notices = w
        .alice
        .events(&w.room)
        .await
        .into_iter()
        .filter(|e| sender(e) == w.bot.0 && body(e).contains("important"))
        .count();
    assert_eq!(notices, 0, "unknown !words are internal talk, not errors");

    // A template reply (bob owns the ticket now, so alice must force it).
    w.bob
        .say_in_thread(&w.room, &root, "!template refund name=Carol")
        .await;
    wait_event(&w.alice, &w.room, "the missing-variable answer", |e| {
        in_thread_of(e, &root) && body(e).contains("needs amount")
    })
    .await;
    w.bob
        .say_in_thread(
            &w.room,
            &root,
            "!template refund name=Carol amount=\"42 EUR\"",
        )
        .await;
    let got = wait_for("the template reply", WAIT, || async {
        let m = fetch_all(w.stack, &w.customer, "INBOX").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    let text = parse_email(&got[0].raw).text;
    assert!(
        text.contains("Hello Carol") && text.contains("refunded 42 EUR"),
        "{text}"
    );

    // Room-level commands answer in the room.
    let mut content = RoomMessageEventContent::text_plain("!mailroom list");
    content.relates_to = None;
    w.alice.room(&w.room).send(content).await.unwrap();
    wait_event(&w.alice, &w.room, "the list", |e| {
        sender(e) == w.bot.0
            && e["content"]["m.relates_to"].is_null()
            && body(e).contains("#1")
            && body(e).contains("Commands")
    })
    .await;
    w.alice
        .room(&w.room)
        .send(RoomMessageEventContent::text_plain("!mailroom show 1"))
        .await
        .unwrap();
    wait_event(&w.alice, &w.room, "the show", |e| {
        sender(e) == w.bot.0
            && e["content"]["m.relates_to"].is_null()
            && body(e).contains("Customer:")
    })
    .await;
    let _ = alice_id;
    run.stop().await;
}

#[tokio::test]
async fn invites_to_rooms_that_are_not_configured_are_declined() {
    let w = World::new().await;
    let run = w.start(w.settings(1, "")).await;
    w.email("inv1@example.net", "Invites", "Hi").await;
    let other = w
        .alice
        .create_room(&[&w.bot.0], false)
        .await
        .room_id()
        .to_owned();
    let bot: OwnedUserId = w.bot.0.parse().unwrap();
    wait_for("the bot to decline", WAIT, || async {
        w.alice
            .client
            .sync_once(SyncSettings::default().timeout(Duration::from_millis(200)))
            .await
            .ok()?;
        let member = w
            .alice
            .room(&other)
            .get_member_no_sync(&bot)
            .await
            .ok()
            .flatten()?;
        (*member.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Leave)
            .then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn reply_attach_sends_the_files_posted_in_the_thread() {
    use matrix_sdk::attachment::AttachmentConfig;
    use matrix_sdk::room::reply::{EnforceThread, Reply};
    use matrix_sdk::ruma::events::room::message::{AddMentions, ReplyWithinThread};
    let w = World::new().await;
    let run = w.start(w.settings(0, "")).await;
    let root = w
        .email("att1@example.net", "Need the form", "Please send the form.")
        .await;
    w.alice.react(&w.room, &root, "🙋").await;
    let mut config = AttachmentConfig::new();
    config.reply = Some(Reply {
        event_id: root.clone(),
        enforce_thread: EnforceThread::Threaded(ReplyWithinThread::No),
        add_mentions: AddMentions::No,
    });
    w.alice
        .room(&w.room)
        .send_attachment(
            "form.pdf",
            &"application/pdf".parse().unwrap(),
            b"%PDF-1.4 the form".to_vec(),
            config,
        )
        .await
        .expect("upload");
    // Give the bot a moment to see the file before the command.
    let store = run.store.clone();
    let thread = mailroom::domain::chat::ChatThread {
        platform: mailroom::domain::chat::Platform::Matrix,
        room: w.room.to_string(),
        thread_ref: root.to_string(),
    };
    wait_for("the file recorded", WAIT, || {
        let store = store.clone();
        let thread = thread.clone();
        async move { (!store.chat_files(&thread, 0).await.unwrap().is_empty()).then_some(()) }
    })
    .await;
    w.alice
        .say_in_thread(&w.room, &root, "!reply --attach Here is the form.")
        .await;
    let got = wait_for("the reply with the file", WAIT, || async {
        let m = fetch_all(w.stack, &w.customer, "INBOX").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_one_attachment(&got[0].raw, "form.pdf", b"%PDF-1.4 the form");
    // Nothing new since that reply: a second --attach is refused.
    w.alice
        .say_in_thread(&w.room, &root, "!reply --attach again")
        .await;
    wait_event(&w.alice, &w.room, "the refusal", |e| {
        in_thread_of(e, &root) && body(e).contains("no files were posted")
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn a_room_alias_works_and_a_new_database_with_the_same_device_still_posts() {
    let mut w = World::new().await;
    let alias_name = format!("support-{}", random_hex(4));
    let alias: matrix_sdk::ruma::OwnedRoomAliasId =
        format!("#{alias_name}:localhost").parse().unwrap();
    w.alice
        .client
        .create_room_alias(&alias, &w.room)
        .await
        .expect("alias");
    let text = w.settings_text(1, "").replace(
        &format!("matrix_room = \"{}\"", w.room),
        &format!("matrix_room = \"{alias}\""),
    );
    assert!(text.contains(alias.as_str()));
    let run = w.start(w.parse(&text)).await;
    w.email("alias1@example.net", "Via alias", "One").await;
    run.stop().await;

    // Same bot device (state_dir kept), brand-new database: job ids start
    // again at 1, yet nothing may be mistaken for the earlier posts.
    w.db = TestDb::sqlite();
    let text = w.settings_text(1, "").replace(
        &format!("matrix_room = \"{}\"", w.room),
        &format!("matrix_room = \"{alias}\""),
    );
    let run = w.start(w.parse(&text)).await;
    w.email("alias2@example.net", "After a new database", "Two")
        .await;
    let roots: Vec<String> = bot_roots(&w).await;
    // The new database imports the whole folder (initial_sync = "all"), so
    // the first mail is posted again for it: three roots, none swallowed.
    assert_eq!(roots.len(), 3, "{roots:#?}");
    assert_eq!(roots.iter().filter(|r| r.contains("Via alias")).count(), 2);
    assert_eq!(
        roots
            .iter()
            .filter(|r| r.contains("After a new database"))
            .count(),
        1
    );
    run.stop().await;
}

/// The edit that puts "Claimed by <who>" on a root.
pub(super) fn claimed_edit(e: &Value, root: &OwnedEventId, who: &str) -> bool {
    e["content"]["m.relates_to"]["rel_type"] == "m.replace"
        && e["content"]["m.relates_to"]["event_id"] == root.as_str()
        && e["content"]["m.new_content"]["body"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("Claimed by {who}"))
}

#[tokio::test]
async fn claims_during_a_burst_of_posts_and_after_it_are_acted_on() {
    let w = World::new().await;
    let run = w.start(w.settings(1, "")).await;
    const N: usize = 40;
    w.burst(N, "pace", "Paced mail").await;
    // The bot is posting a burst: it polls instead of long-polling, and it
    // ended the long-poll it had open through its own account data.
    let first = w.root("Paced mail 00").await;
    w.alice.react(&w.room, &first, "🙋").await;
    let alice_id = w.alice.user_id.to_string();
    wait_event(&w.alice, &w.room, "the claim made during the burst", |e| {
        claimed_edit(e, &first, &alice_id)
    })
    .await;
    let roots = wait_for("every root posted", WAIT, || async {
        let roots = bot_roots(&w).await;
        (roots.len() >= N).then_some(roots)
    })
    .await;
    assert_eq!(roots.len(), N, "each email posted exactly once");
    let bot = Client::builder()
        .homeserver_url(&Synapse::get().url)
        .build()
        .await
        .expect("client");
    bot.matrix_auth()
        .login_username(&w.bot.0, &w.bot.1)
        .send()
        .await
        .expect("bot login");
    let pace = bot
        .account()
        .fetch_account_data(matrix_sdk::ruma::events::GlobalAccountDataEventType::from(
            "io.mailroom.sync_pace",
        ))
        .await
        .expect("account data");
    assert!(
        pace.is_some(),
        "the burst ended the bot's long-poll through its account data"
    );
    // Past the burst the bot long-polls again, and still acts on claims.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let last = w.root(&format!("Paced mail {:02}", N - 1)).await;
    w.bob.react(&w.room, &last, "🙋").await;
    let bob_id = w.bob.user_id.to_string();
    wait_event(&w.alice, &w.room, "the claim made after the burst", |e| {
        claimed_edit(e, &last, &bob_id)
    })
    .await;
    run.stop().await;
}
