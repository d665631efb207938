//! What Slack tells mailroom: Events API callbacks, `/mailroom` commands
//! and interactions (the "Reply by email" shortcut and its dialog), over
//! Socket Mode or signed HTTP requests. Both transports end in [`Intake`],
//! which turns Slack's payloads into [`ChatEvent`]s and decides nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::render::read_markup;
use super::{Client, SlackChat, agent, board};
use crate::chat::settings::SlackMode;
use crate::chat::{ChatError, ChatEvent};
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::command::ThreadCommand;

/// The message shortcut's callback id (see `bot-config/slack-app-manifest.yml`).
pub const REPLY_SHORTCUT: &str = "mailroom_reply";
/// The dialog's callback id.
const REPLY_VIEW: &str = "mailroom_reply_view";
const DRAFT_BLOCK: &str = "draft";
const DRAFT_ACTION: &str = "text";
const TEMPLATE_BLOCK: &str = "template";
const TEMPLATE_ACTION: &str = "name";

/// Turns Slack payloads into chat events.
pub struct Intake {
    chat: Arc<SlackChat>,
    events: mpsc::UnboundedSender<ChatEvent>,
}

impl Intake {
    pub fn new(chat: Arc<SlackChat>, events: mpsc::UnboundedSender<ChatEvent>) -> Intake {
        Intake { chat, events }
    }

    fn emit(&self, ev: ChatEvent) {
        if self.events.send(ev).is_err() {
            tracing::warn!("slack: event dropped, the bridge has stopped");
        }
    }

    /// An Events API callback: messages, thread replies, files, reactions.
    pub fn push(&self, cb: SlackPushEventCallback) {
        let event_id = cb.event_id.to_string();
        match cb.event {
            SlackEventCallbackBody::Message(m) => self.message(m, &event_id),
            SlackEventCallbackBody::ReactionAdded(r) => {
                self.reaction(&r.user, &r.reaction, &r.item, true, event_id)
            }
            SlackEventCallbackBody::ReactionRemoved(r) => {
                self.reaction(&r.user, &r.reaction, &r.item, false, event_id)
            }
            SlackEventCallbackBody::AppHomeOpened(h) if h.tab.as_deref() == Some("home") => {
                if let Some(agent) = agent(&h.user.0) {
                    self.emit(ChatEvent::HomeOpened {
                        platform: Platform::Slack,
                        agent,
                        event_ref: event_id,
                    });
                }
            }
            _ => {}
        }
    }

    fn reaction(
        &self,
        user: &SlackUserId,
        name: &SlackReactionName,
        item: &SlackReactionsItem,
        added: bool,
        event_ref: String,
    ) {
        let SlackReactionsItem::Message(msg) = item else {
            return;
        };
        let (Some(channel), Some(agent)) = (&msg.origin.channel, agent(&user.0)) else {
            return;
        };
        if user.0 == self.chat.bot_user() {
            return;
        }
        self.emit(ChatEvent::Reaction {
            thread: thread(&channel.0, &msg.origin.ts.0),
            agent,
            key: name.0.clone(),
            added,
            event_ref,
        });
    }

    fn message(&self, m: SlackMessageEvent, event_id: &str) {
        // Edits, deletions, joins and bots' posts are not teammates talking.
        match m.subtype {
            None | Some(SlackMessageEventType::FileShare) => {}
            Some(_) => return,
        }
        if m.sender.bot_id.is_some() {
            return;
        }
        let (Some(user), Some(channel)) = (&m.sender.user, &m.origin.channel) else {
            return;
        };
        if user.0 == self.chat.bot_user() {
            return;
        }
        let Some(agent) = agent(&user.0) else { return };
        let ts = &m.origin.ts.0;
        let root = m
            .origin
            .thread_ts
            .as_ref()
            .map(|t| t.0.as_str())
            .filter(|t| t != ts);
        let content = m.content.unwrap_or_else(SlackMessageContent::new);
        let text = content.text.as_deref().map(read_markup).unwrap_or_default();
        match root {
            Some(root) => {
                let thread = thread(&channel.0, root);
                for (i, f) in content.files.iter().flatten().enumerate() {
                    let Some(source) = f.url_private_download.as_ref().or(f.url_private.as_ref())
                    else {
                        continue;
                    };
                    let name = f
                        .name
                        .clone()
                        .or_else(|| f.title.clone())
                        .unwrap_or_else(|| format!("file-{}", f.id));
                    self.emit(ChatEvent::ThreadFile {
                        thread: thread.clone(),
                        agent: agent.clone(),
                        file: SharedFile {
                            name,
                            content_type: f
                                .mimetype
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_else(|| "application/octet-stream".into()),
                            size: 0,
                            source: source.to_string(),
                        },
                        event_ref: format!("{event_id}/file{i}"),
                    });
                }
                if !text.trim().is_empty() {
                    self.emit(ChatEvent::ThreadMessage {
                        thread,
                        agent,
                        text,
                        event_ref: event_id.to_owned(),
                    });
                }
            }
            None if !text.trim().is_empty() => self.emit(ChatEvent::RoomMessage {
                platform: Platform::Slack,
                room: channel.0.clone(),
                agent,
                text,
                event_ref: event_id.to_owned(),
            }),
            None => {}
        }
    }

    /// `/mailroom …`: handed to the bridge, answered through `response_url`.
    pub fn command(&self, c: SlackCommandEvent) {
        let Some(agent) = agent(&c.user_id.0) else {
            return;
        };
        self.emit(ChatEvent::Command {
            platform: Platform::Slack,
            room: c.channel_id.0,
            agent,
            text: c.text.as_deref().map(read_markup).unwrap_or_default(),
            respond_to: c.response_url.0.to_string(),
            event_ref: format!("command/{}", c.trigger_id.0),
        });
    }

    /// The shortcut opens the reply dialog; its submission becomes a reply.
    /// Returns what to answer Slack with (`None`: a plain acknowledgement).
    pub async fn interaction(&self, ev: SlackInteractionEvent) -> Option<Value> {
        match ev {
            SlackInteractionEvent::MessageAction(a) if a.callback_id.0 == REPLY_SHORTCUT => {
                let (Some(channel), Some(message)) = (&a.channel, &a.message) else {
                    return None;
                };
                let root = message
                    .origin
                    .thread_ts
                    .as_ref()
                    .unwrap_or(&message.origin.ts);
                let view = reply_view(&channel.id.0, &root.0, &self.template_names());
                if let Err(e) = self
                    .chat
                    .call(
                        "views.open",
                        &json!({"trigger_id": a.trigger_id.0, "view": view}),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "slack: could not open the reply dialog");
                }
                None
            }
            SlackInteractionEvent::BlockActions(a) => {
                self.board_action(a);
                None
            }
            SlackInteractionEvent::ViewSubmission(s)
                if modal(&s.view)
                    .and_then(|m| m.callback_id.as_ref())
                    .map(|c| c.0.as_str())
                    == Some(REPLY_VIEW) =>
            {
                self.reply_submitted(s)
            }
            _ => None,
        }
    }

    /// A press of a board button (App Home): the thread command it stands
    /// for, as if typed in the ticket's thread. "Open thread" is a link
    /// Slack opens itself; its press is only acknowledged.
    fn board_action(&self, a: SlackInteractionBlockActionsEvent) {
        let Some(agent) = a.user.as_ref().and_then(|u| agent(&u.id.0)) else {
            return;
        };
        for (i, action) in a.actions.iter().flatten().enumerate() {
            let Some(text) = board::command_for(&action.action_id.0) else {
                continue;
            };
            let Some(thread) = action.value.as_deref().and_then(board::thread_of) else {
                tracing::warn!(action = %action.action_id.0, "slack: a board button without its thread");
                continue;
            };
            self.emit(ChatEvent::ButtonCommand {
                thread,
                agent: agent.clone(),
                text: text.to_owned(),
                event_ref: format!("action/{}/{i}", a.trigger_id.0),
            });
        }
    }

    fn template_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.chat.templates_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".md"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.truncate(100); // a static select holds at most 100 options
        names
    }

    fn reply_submitted(&self, s: SlackInteractionViewSubmissionEvent) -> Option<Value> {
        let agent = agent(&s.user.id.0)?;
        let meta: Value = modal(&s.view)
            .and_then(|m| m.private_metadata.as_deref())
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        let (Some(channel), Some(ts)) = (meta["channel"].as_str(), meta["ts"].as_str()) else {
            return Some(errors(
                DRAFT_BLOCK,
                "This dialog lost track of its thread; open it again.",
            ));
        };
        let values = s.view.state_params.state.as_ref().map(|st| &st.values);
        let value = |block: &str, action: &str| {
            values
                .and_then(|v| v.get(&SlackBlockId(block.into())))
                .and_then(|b| b.get(&SlackActionId(action.into())))
        };
        let draft = value(DRAFT_BLOCK, DRAFT_ACTION)
            .and_then(|v| v.value.clone())
            .unwrap_or_default();
        let template = value(TEMPLATE_BLOCK, TEMPLATE_ACTION)
            .and_then(|v| v.selected_option.as_ref())
            .map(|o| o.value.clone());
        let command = match (draft.trim().is_empty(), template) {
            (false, None) => ThreadCommand::Reply {
                text: draft.trim().to_owned(),
                force: false,
                attach: false,
            },
            (true, Some(name)) => ThreadCommand::Template {
                name,
                vars: Default::default(),
            },
            (false, Some(_)) => {
                return Some(errors(
                    TEMPLATE_BLOCK,
                    "Send either the draft or a template, not both.",
                ));
            }
            (true, None) => return Some(errors(DRAFT_BLOCK, "Write a reply or pick a template.")),
        };
        self.emit(ChatEvent::ThreadAction {
            thread: thread(channel, ts),
            agent,
            command,
            event_ref: format!("view/{}", s.view.state_params.id.0),
        });
        None
    }
}

fn modal(view: &SlackStatefulView) -> Option<&SlackModalView> {
    match &view.view {
        SlackView::Modal(m) => Some(m),
        SlackView::Home(_) => None,
    }
}

fn thread(channel: &str, ts: &str) -> ChatThread {
    ChatThread {
        platform: Platform::Slack,
        room: channel.to_owned(),
        thread_ref: ts.to_owned(),
    }
}

fn errors(block: &str, message: &str) -> Value {
    json!({"response_action": "errors", "errors": {block: message}})
}

/// The "Reply by email" dialog for the thread rooted at `ts`.
fn reply_view(channel: &str, ts: &str, templates: &[String]) -> Value {
    let mut blocks = vec![
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Sent to the customer *from the shared address*, with the same checks as `!reply` (claimed by someone else, newer mail). Talk in the thread stays internal."}
        }),
        json!({
            "type": "input",
            "block_id": DRAFT_BLOCK,
            "optional": true,
            "label": {"type": "plain_text", "text": "Reply (Markdown)"},
            "element": {
                "type": "plain_text_input",
                "action_id": DRAFT_ACTION,
                "multiline": true,
                "max_length": 3000
            }
        }),
    ];
    if !templates.is_empty() {
        let options: Vec<Value> = templates
            .iter()
            .map(|t| json!({"text": {"type": "plain_text", "text": t}, "value": t}))
            .collect();
        blocks.push(json!({
            "type": "input",
            "block_id": TEMPLATE_BLOCK,
            "optional": true,
            "label": {"type": "plain_text", "text": "…or a template"},
            "element": {
                "type": "static_select",
                "action_id": TEMPLATE_ACTION,
                "placeholder": {"type": "plain_text", "text": "Pick a template"},
                "options": options
            }
        }));
    }
    json!({
        "type": "modal",
        "callback_id": REPLY_VIEW,
        "title": {"type": "plain_text", "text": "Reply by email"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json!({"channel": channel, "ts": ts}).to_string(),
        "blocks": blocks
    })
}

/// Connects the configured transport (so that a bad token or a taken port
/// stops startup), then receives events in a task until `cancel` fires.
pub async fn start(
    chat: Arc<SlackChat>,
    events: mpsc::UnboundedSender<ChatEvent>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ChatError> {
    let settings = chat.settings().clone();
    let intake = Arc::new(Intake::new(chat.clone(), events));
    match settings.mode {
        SlackMode::Socket => {
            let app_token = settings
                .app_token
                .as_ref()
                .ok_or_else(|| ChatError::Permanent {
                    message: "slack.app_token_env: Socket Mode needs an app-level token".into(),
                })?;
            let env = Arc::new(
                SlackClientEventsListenerEnvironment::new(chat.client().clone())
                    .with_error_handler(socket_error)
                    .with_user_state(intake),
            );
            let callbacks = SlackSocketModeListenerCallbacks::new()
                .with_push_events(socket_push)
                .with_command_events(socket_command)
                .with_interaction_events(socket_interaction);
            let listener = SlackClientSocketModeListener::new(
                &SlackClientSocketModeConfig::new(),
                env,
                callbacks,
            );
            listener
                .listen_for(&SlackApiToken::new(app_token.expose().into()))
                .await
                .map_err(|e| super::classify("apps.connections.open", e))?;
            Ok(tokio::spawn(async move {
                listener.start().await;
                tracing::info!("slack: socket mode started");
                cancel.cancelled().await;
                listener.shutdown().await;
            }))
        }
        SlackMode::Events => {
            let secret = settings
                .signing_secret
                .as_ref()
                .ok_or_else(|| ChatError::Permanent {
                    message: "slack.signing_secret_env: the Events API needs the signing secret"
                        .into(),
                })?;
            let state = Arc::new(Http {
                intake,
                verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
                    secret.expose().into(),
                )),
                seen: std::sync::Mutex::default(),
            });
            let app = Router::new()
                .route("/slack/events", post(http_events))
                .route("/slack/commands", post(http_commands))
                .route("/slack/interactive", post(http_interactive))
                .with_state(state);
            let listen = settings.listen;
            let listener =
                tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| ChatError::Permanent {
                        message: format!("slack.listen: cannot listen on {listen}: {e}"),
                    })?;
            tracing::info!(%listen, "slack: events API listening");
            Ok(tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "slack: events API server stopped");
                }
            }))
        }
    }
}

// ---------------------------------------------------------------- Socket Mode

fn socket_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(error = %err, "slack: socket mode");
    HttpStatusCode::OK
}

async fn intake_of(state: &SlackClientEventsUserState) -> Option<Arc<Intake>> {
    state.read().await.get_user_state::<Arc<Intake>>().cloned()
}

async fn socket_push(
    ev: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(intake) = intake_of(&state).await {
        intake.push(ev);
    }
    Ok(())
}

async fn socket_command(
    ev: SlackCommandEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    if let Some(intake) = intake_of(&state).await {
        intake.command(ev);
    }
    // The answer follows through response_url once the bridge has one.
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

async fn socket_interaction(
    ev: SlackInteractionEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let Some(intake) = intake_of(&state).await else {
        return Ok(SlackInteractionResponse::Empty);
    };
    Ok(match intake.interaction(ev).await {
        Some(v) => serde_json::from_value::<SlackViewSubmissionResponse>(v)
            .map(SlackInteractionResponse::ViewSubmission)
            .unwrap_or(SlackInteractionResponse::Empty),
        None => SlackInteractionResponse::Empty,
    })
}

// ---------------------------------------------------------------- Events API

struct Http {
    intake: Arc<Intake>,
    verifier: SlackEventSignatureVerifier,
    /// Signatures accepted within the last [`REPLAY_WINDOW`]: a request
    /// captured and sent again while its timestamp is still fresh carries the
    /// same signature, and is refused. Slack's own retries are new requests,
    /// signed with their own timestamp.
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a timestamp is fresh: slack-morphism's verifier refuses older ones.
const REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60 + 30);

/// Slack's signature over the raw body, a timestamp within 5 minutes, and a
/// signature not seen before.
fn verified(
    http: &Http,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), (StatusCode, &'static str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        tracing::warn!("slack: request without a signature refused");
        return Err((StatusCode::UNAUTHORIZED, "missing signature"));
    };
    http.verifier
        .verify(signature, body, timestamp)
        .map_err(|e| {
            tracing::warn!(error = %e, "slack: request with a bad signature refused");
            (StatusCode::UNAUTHORIZED, "invalid signature")
        })?;
    let now = std::time::Instant::now();
    let mut seen = http.seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() >= 1024 {
        seen.retain(|_, at| now.duration_since(*at) < REPLAY_WINDOW);
    }
    if seen.insert(signature.to_owned(), now).is_some() {
        tracing::warn!("slack: replayed request refused");
        return Err((StatusCode::UNAUTHORIZED, "replayed request"));
    }
    Ok(())
}

fn bad_request(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "slack: unreadable {what}");
    (StatusCode::BAD_REQUEST, format!("unreadable {what}")).into_response()
}

async fn http_events(State(http): State<Arc<Http>>, headers: HeaderMap, body: String) -> Response {
    if let Err(refused) = verified(&http, &headers, &body) {
        return refused.into_response();
    }
    match serde_json::from_str::<SlackPushEvent>(&body) {
        Ok(SlackPushEvent::UrlVerification(v)) => {
            axum::Json(json!({"challenge": v.challenge})).into_response()
        }
        Ok(SlackPushEvent::EventCallback(cb)) => {
            http.intake.push(cb);
            StatusCode::OK.into_response()
        }
        Ok(SlackPushEvent::AppRateLimited(r)) => {
            tracing::warn!(minute = ?r.minute_rate_limited, "slack: Slack is holding back events (app_rate_limited)");
            StatusCode::OK.into_response()
        }
        Err(e) => bad_request("event", e),
    }
}

async fn http_commands(
    State(http): State<Arc<Http>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(refused) = verified(&http, &headers, &body) {
        return refused.into_response();
    }
    match serde_urlencoded::from_str::<SlackCommandEvent>(&body) {
        Ok(c) => {
            http.intake.command(c);
            StatusCode::OK.into_response()
        }
        Err(e) => bad_request("command", e),
    }
}

#[derive(serde::Deserialize)]
struct InteractiveForm {
    payload: String,
}

async fn http_interactive(
    State(http): State<Arc<Http>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(refused) = verified(&http, &headers, &body) {
        return refused.into_response();
    }
    let event = serde_urlencoded::from_str::<InteractiveForm>(&body)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            serde_json::from_str::<SlackInteractionEvent>(&f.payload).map_err(|e| e.to_string())
        });
    match event {
        Ok(ev) => match http.intake.interaction(ev).await {
            Some(answer) => axum::Json(answer).into_response(),
            None => StatusCode::OK.into_response(),
        },
        Err(e) => bad_request("interaction", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialog_fits_slacks_limits() {
        let names: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let v = reply_view("C1", "1.2", &names);
        assert!(v["title"]["text"].as_str().unwrap().chars().count() <= 24);
        assert!(v["private_metadata"].as_str().unwrap().len() <= 3000);
        let meta: Value = serde_json::from_str(v["private_metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta, json!({"channel": "C1", "ts": "1.2"}));
        assert_eq!(
            v["blocks"][2]["element"]["options"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        // Without templates there is no empty picker.
        assert_eq!(
            reply_view("C1", "1.2", &[])["blocks"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // slack-morphism reads it as a modal.
        let parsed: SlackView = serde_json::from_value(v).unwrap();
        assert!(matches!(parsed, SlackView::Modal(_)));
    }
}
