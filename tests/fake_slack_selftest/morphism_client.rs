//! slack-morphism itself (Web API client and Socket Mode listener) against the fake.

use super::*;

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let state = state.read().await;
    if let Some(tx) = state.get_user_state::<mpsc::UnboundedSender<SlackPushEventCallback>>() {
        let _ = tx.send(event);
    }
    Ok(())
}

/// slack-morphism itself (Web API client and Socket Mode listener) against the fake.
#[tokio::test]
async fn slack_morphism_client_and_listener() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = Arc::new(SlackClient::new(
        SlackClientHyperConnector::with_connector(connector).with_slack_api_url(&s.api_url()),
    ));
    let bot_token = SlackApiToken::new(s.bot_token().to_string().into());
    let session = client.open_session(&bot_token);

    let me = session.auth_test().await.unwrap();
    assert_eq!(me.user_id.to_string(), s.bot_user_id());
    let posted = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.support.clone().into(),
            SlackMessageContent::new().with_text("New mail".into()),
        ))
        .await
        .unwrap();
    match session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.random.clone().into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await
    {
        Err(SlackClientError::ApiError(e)) => assert_eq!(e.code, "not_in_channel"),
        other => panic!("{other:?}"),
    }
    s.inject_429("chat.postMessage", 1, 2);
    match session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.support.clone().into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await
    {
        Err(SlackClientError::RateLimitError(e)) => assert_eq!(e.retry_after, Some(2 * SECOND)),
        other => panic!("{other:?}"),
    }
    let user = session
        .users_info(&SlackApiUsersInfoRequest::new(t.alice.clone().into()))
        .await
        .unwrap();
    assert_eq!(user.user.name.as_deref(), Some("alice"));
    let members = session
        .conversations_members(
            &SlackApiConversationsMembersRequest::new().with_channel(t.support.clone().into()),
        )
        .await
        .unwrap();
    assert_eq!(members.members.len(), 3);

    let url = session
        .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
            "notes.txt".into(),
            5,
        ))
        .await
        .unwrap();
    session
        .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
            url.upload_url,
            b"hello".to_vec(),
            "text/plain".into(),
        ))
        .await
        .unwrap();
    session
        .files_complete_upload_external(
            &SlackApiFilesCompleteUploadExternalRequest::new(vec![SlackApiFilesComplete::new(
                url.file_id,
            )])
            .with_channel_id(t.support.clone().into())
            .with_thread_ts(posted.ts.clone()),
        )
        .await
        .unwrap();
    let thread = s.thread(&t.support, posted.ts.as_ref());
    assert_eq!(thread[1].files[0].data, b"hello");

    let (tx, mut rx) = mpsc::unbounded_channel::<SlackPushEventCallback>();
    let env =
        Arc::new(SlackClientEventsListenerEnvironment::new(client.clone()).with_user_state(tx));
    let callbacks = SlackSocketModeListenerCallbacks::new().with_push_events(on_push);
    let listener = SlackClientSocketModeListener::new(
        // (the second connection would otherwise start 5 s after the first)
        &SlackClientSocketModeConfig::new().with_initial_backoff_in_seconds(0),
        env,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(s.app_token().to_string().into()))
        .await
        .unwrap();
    listener.start().await;
    s.wait_until("the listener's connections", 5 * SECOND, |s| {
        s.socket_connections_open() == 2
    })
    .await
    .unwrap();
    let ts = s
        .post_message(&t.alice, &t.support, Some(posted.ts.as_ref()), "via socket")
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(3 * SECOND, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let SlackEventCallbackBody::Message(m) = event.event
            && m.origin.ts.to_string() == ts
        {
            break;
        }
    }
    listener.shutdown().await;
}
