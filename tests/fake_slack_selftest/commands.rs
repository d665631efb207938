//! Slash commands, shortcuts and views.

use super::*;

#[tokio::test]
async fn commands_shortcuts_and_views() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let (mut ws, _) = open_socket(s).await;

    // Slash command, answered in the acknowledgement.
    let cmd = {
        let (s, alice, support) = (s.clone(), t.alice.clone(), t.support.clone());
        tokio::spawn(async move {
            s.slash_command(&alice, &support, "/mailroom", "claim 42")
                .await
        })
    };
    let env = expect_frame(&mut ws).await;
    let (payload, accepts) = match socket_event(&env) {
        SocketEvent::SlashCommands {
            payload,
            accepts_response_payload,
            ..
        } => (payload, accepts_response_payload),
        other => panic!("{other:?}"),
    };
    assert!(accepts);
    assert_eq!(payload.command.to_string(), "/mailroom");
    assert_eq!(payload.text.as_deref(), Some("claim 42"));
    assert_eq!(payload.user_id.to_string(), t.alice);
    let response_url = payload.response_url.0.to_string();
    let trigger_id = payload.trigger_id.to_string();
    ack(
        &mut ws,
        &env,
        Some(json!({"text": "Working on it", "response_type": "ephemeral"})),
    )
    .await;
    let answer = cmd.await.unwrap().unwrap();
    assert_eq!(answer["text"], json!("Working on it"));
    assert_eq!(s.ephemerals(&t.alice)[0].text, "Working on it");

    // response_url: ephemeral and in_channel answers.
    for (body, status) in [
        (
            json!({"text": "Claimed #42", "response_type": "ephemeral"}),
            200,
        ),
        (
            json!({"text": "Alice claimed #42", "response_type": "in_channel"}),
            200,
        ),
        (json!({"response_type": "ephemeral"}), 400),
    ] {
        let resp = http()
            .post(&response_url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
    }
    assert_eq!(s.ephemerals(&t.alice).len(), 2);
    let posted = s.messages(&t.support);
    assert_eq!(posted.last().unwrap().text, "Alice claimed #42");
    let resp = http()
        .post(format!("{}/nope", response_url.rsplit_once('/').unwrap().0))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // (the in_channel answer is a channel message: its event comes by)
    let echo = expect_frame(&mut ws).await;
    assert!(matches!(
        pushed_event(&echo),
        SlackEventCallbackBody::Message(_)
    ));
    ack(&mut ws, &echo, None).await;

    // views.open with the command's trigger.
    let modal = json!({
        "type": "modal",
        "callback_id": "reply",
        "private_metadata": "ticket-42",
        "title": {"type": "plain_text", "text": "Reply"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [{"type": "input", "block_id": "body", "label": {"type": "plain_text", "text": "Answer"},
                    "element": {"type": "plain_text_input", "action_id": "text", "multiline": true}}]
    });
    let mut bad = modal.clone();
    bad["title"]["text"] = json!("A title longer than 24 chars");
    let a = post_json(
        s,
        "views.open",
        json!({"trigger_id": trigger_id, "view": bad}),
    )
    .await;
    assert_error(&a, "invalid_arguments");
    let mut no_submit = modal.clone();
    no_submit.as_object_mut().unwrap().remove("submit");
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger_id, "view": no_submit}),
        )
        .await,
        "invalid_arguments",
    );
    let a = post_json(
        s,
        "views.open",
        json!({"trigger_id": trigger_id, "view": modal}),
    )
    .await;
    assert_ok(&a);
    let opened: SlackApiViewsOpenResponse = model(&a.body);
    let view_id = opened.view.state_params.id.to_string();
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal}),
        )
        .await,
        "exchanged_trigger_id",
    );
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": "1.2.3", "view": modal}),
        )
        .await,
        "invalid_trigger_id",
    );
    assert_eq!(s.views()[0].user, t.alice);
    assert_eq!(s.views()[0].view_id, view_id);

    // views.update: the hash must be current.
    let hash = a.body["view"]["hash"].as_str().unwrap().to_string();
    let a = post_json(
        s,
        "views.update",
        json!({"view_id": view_id, "hash": hash, "view": modal}),
    )
    .await;
    assert_ok(&a);
    let _: SlackApiViewsUpdateResponse = model(&a.body);
    assert_error(
        &post_json(
            s,
            "views.update",
            json!({"view_id": view_id, "hash": hash, "view": modal}),
        )
        .await,
        "hash_conflict",
    );

    // Message shortcut.
    let target = s.messages(&t.support)[0].ts.clone();
    let shortcut = {
        let (s, bob, support, target) =
            (s.clone(), t.bob.clone(), t.support.clone(), target.clone());
        tokio::spawn(async move {
            s.message_shortcut(&bob, &support, &target, "reply_by_mail")
                .await
        })
    };
    let env = expect_frame(&mut ws).await;
    match socket_event(&env) {
        SocketEvent::Interactive {
            payload: SlackInteractionEvent::MessageAction(a),
            accepts_response_payload,
            ..
        } => {
            assert!(!accepts_response_payload);
            assert_eq!(a.callback_id.to_string(), "reply_by_mail");
            assert_eq!(a.message.unwrap().origin.ts.to_string(), target);
        }
        other => panic!("{other:?}"),
    }
    ack(&mut ws, &env, None).await;
    let trigger = shortcut.await.unwrap().unwrap();
    assert_eq!(env["payload"]["trigger_id"], json!(trigger));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger, "view": modal}),
        )
        .await,
        "expired_trigger_id",
    );

    // View submission with the stored view.
    let values = json!({"body": {"text": {"type": "plain_text_input", "value": "Thanks!"}}});
    let submit = {
        let (s, alice, view_id) = (s.clone(), t.alice.clone(), view_id.clone());
        tokio::spawn(async move { s.submit_view(&alice, &view_id, values).await })
    };
    let env = expect_frame(&mut ws).await;
    match socket_event(&env) {
        SocketEvent::Interactive {
            payload: SlackInteractionEvent::ViewSubmission(v),
            accepts_response_payload,
            ..
        } => {
            assert!(accepts_response_payload);
            assert_eq!(v.view.state_params.id.to_string(), view_id);
            match v.view.view {
                SlackView::Modal(m) => {
                    assert_eq!(
                        m.callback_id.map(|c| c.to_string()).as_deref(),
                        Some("reply")
                    );
                    assert_eq!(m.private_metadata.as_deref(), Some("ticket-42"));
                }
                other => panic!("{other:?}"),
            }
            let values = v.view.state_params.state.unwrap().values;
            assert_eq!(values.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    ack(
        &mut ws,
        &env,
        Some(json!({"response_action": "errors", "errors": {"body": "Too short"}})),
    )
    .await;
    let answer = submit.await.unwrap().unwrap();
    assert_eq!(answer["response_action"], json!("errors"));
    assert!(s.views()[0].is_open(s));
    // Submitted again and accepted: the modal closes.
    let values = json!({"body": {"text": {"type": "plain_text_input", "value": "Thanks a lot!"}}});
    assert!(
        s.submit_view(&t.bob, &view_id, values.clone())
            .await
            .is_err()
    );
    let submit = {
        let (s, alice, view_id, values) =
            (s.clone(), t.alice.clone(), view_id.clone(), values.clone());
        tokio::spawn(async move { s.submit_view(&alice, &view_id, values).await })
    };
    let env = expect_frame(&mut ws).await;
    ack(&mut ws, &env, None).await;
    assert_eq!(submit.await.unwrap().unwrap(), Value::Null);
    assert!(!s.views()[0].is_open(s));
    assert!(s.submit_view(&t.alice, &view_id, values).await.is_err());
    assert_error(
        &post_json(
            s,
            "views.update",
            json!({"view_id": view_id, "view": modal}),
        )
        .await,
        "not_found",
    );
}
