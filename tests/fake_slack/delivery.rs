//! Getting envelopes to the app: Socket Mode (one connection per envelope,
//! round-robin, redelivery until acknowledged) or Events API HTTP POSTs
//! (signed, retried on errors and timeouts).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Inner;
use super::state::ConnCmd;
use super::util::{form_encode, sign, unix_now, uuid};

/// Slack redelivers an unacknowledged event at most three more times.
pub(crate) const MAX_RETRIES: u32 = 3;
/// How long an envelope waits for a Socket Mode connection before it is dropped.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Kind {
    /// Events API event (`events_api` envelope / POST /slack/events); retried.
    Event,
    /// Slash command (`slash_commands` / POST /slack/commands); never retried:
    /// Slack shows the user "operation_timeout" instead.
    Command,
    /// Interactivity payload (`interactive` / POST /slack/interactive); never retried.
    Interactive { accepts_response: bool },
}

pub(crate) type Done = oneshot::Sender<Result<Value, String>>;

pub(crate) struct Envelope {
    pub id: String,
    pub kind: Kind,
    pub payload: Value,
    pub attempt: u32,
    pub retry_reason: &'static str,
    /// When it entered the outbox (for QUEUE_WAIT).
    pub queued: Instant,
    pub done: Option<Done>,
}

pub(crate) struct Inflight {
    pub env: Envelope,
    pub deadline: Instant,
}

impl Envelope {
    fn frame(&self) -> String {
        match self.kind {
            Kind::Event => json!({
                "envelope_id": self.id,
                "payload": self.payload,
                "type": "events_api",
                "accepts_response_payload": false,
                "retry_attempt": self.attempt,
                "retry_reason": self.retry_reason
            }),
            Kind::Command => json!({
                "envelope_id": self.id,
                "payload": self.payload,
                "type": "slash_commands",
                "accepts_response_payload": true
            }),
            Kind::Interactive { accepts_response } => json!({
                "envelope_id": self.id,
                "payload": self.payload,
                "type": "interactive",
                "accepts_response_payload": accepts_response
            }),
        }
        .to_string()
    }

    fn finish(mut self, result: Result<Value, String>) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(result);
        }
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Event => "event",
        Kind::Command => "slash command",
        Kind::Interactive { .. } => "interactive payload",
    }
}

impl Inner {
    /// Hands `payload` to the app the way the current mode does; the receiver
    /// yields the acknowledgement's payload (socket) or response body (HTTP).
    pub(crate) fn deliver(
        self: &Arc<Self>,
        kind: Kind,
        payload: Value,
    ) -> oneshot::Receiver<Result<Value, String>> {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            id: uuid(),
            kind,
            payload,
            attempt: 0,
            retry_reason: "",
            queued: Instant::now(),
            done: Some(tx),
        };
        let events_url = self.lock().events_url.clone();
        match events_url {
            None => {
                self.lock().outbox.push_back(env);
                self.dispatch.notify_one();
            }
            Some(base) => {
                let inner = self.clone();
                let cancel = self.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = inner.deliver_http(base, env) => {}
                    }
                });
            }
        }
        rx
    }

    /// Delivers an event whose acknowledgement nobody awaits (bot echoes etc.).
    pub(crate) fn emit_event(self: &Arc<Self>, event: Value) {
        let payload = self.event_callback(event);
        drop(self.deliver(Kind::Event, payload));
    }

    /// Socket Mode: moves envelopes from the outbox to connections and
    /// redelivers the ones not acknowledged in time.
    pub(crate) async fn run_dispatcher(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.dispatch.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            self.dispatch_once();
        }
    }

    fn dispatch_once(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        let expired: Vec<String> = st
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(f) = st.inflight.remove(&id) else {
                continue;
            };
            let mut env = f.env;
            if env.kind == Kind::Event && env.attempt < MAX_RETRIES {
                env.attempt += 1;
                env.retry_reason = "timeout";
                env.queued = now;
                st.outbox.push_back(env);
            } else {
                let msg = format!(
                    "{} {} not acknowledged within {:?} (attempt {})",
                    describe(env.kind),
                    env.id,
                    self.opts.ack_timeout,
                    env.attempt
                );
                env.finish(Err(msg));
            }
        }
        if st.conns.is_empty() {
            let (stale, keep): (Vec<Envelope>, Vec<Envelope>) = st
                .outbox
                .drain(..)
                .partition(|e| now.duration_since(e.queued) >= QUEUE_WAIT);
            st.outbox.extend(keep);
            for env in stale {
                let msg = format!(
                    "{} {} dropped: no Socket Mode connection for {QUEUE_WAIT:?}",
                    describe(env.kind),
                    env.id
                );
                env.finish(Err(msg));
            }
            return;
        }
        while !st.conns.is_empty() {
            let Some(env) = st.outbox.pop_front() else {
                break;
            };
            let ids: Vec<u64> = st.conns.keys().copied().collect();
            let conn = ids[st.round_robin % ids.len()];
            st.round_robin = st.round_robin.wrapping_add(1);
            let sent = st.conns[&conn].send(ConnCmd::Frame(env.frame())).is_ok();
            if !sent {
                st.conns.remove(&conn);
                st.outbox.push_front(env);
                continue;
            }
            let deadline = now + self.opts.ack_timeout;
            st.inflight
                .insert(env.id.clone(), Inflight { env, deadline });
        }
    }

    /// A text frame from a Socket Mode connection: an acknowledgement.
    pub(crate) fn on_socket_text(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(id) = v.get("envelope_id").and_then(Value::as_str) else {
            return;
        };
        let payload = v.get("payload").cloned().unwrap_or(Value::Null);
        let found = self.lock().inflight.remove(id);
        if let Some(f) = found {
            f.env.finish(Ok(payload));
        }
        self.touched();
    }

    /// Events API mode: signed POSTs to the app's request URLs.
    async fn deliver_http(self: Arc<Self>, base: String, env: Envelope) {
        let (path, body, content_type) = match env.kind {
            Kind::Event => ("/slack/events", env.payload.to_string(), "application/json"),
            Kind::Command => {
                let pairs: Vec<(String, String)> = env
                    .payload
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    "/slack/commands",
                    form_encode(&pairs),
                    "application/x-www-form-urlencoded",
                )
            }
            Kind::Interactive { .. } => (
                "/slack/interactive",
                form_encode(&[("payload", env.payload.to_string())]),
                "application/x-www-form-urlencoded",
            ),
        };
        let retries = if env.kind == Kind::Event {
            MAX_RETRIES
        } else {
            0
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut reason = "";
        let mut last_error = String::new();
        for attempt in 0..=retries {
            let ts = unix_now();
            let mut req = self
                .http
                .post(&url)
                .timeout(self.opts.ack_timeout)
                .header("Content-Type", content_type)
                .header("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
                .header("X-Slack-Request-Timestamp", ts.to_string())
                .header("X-Slack-Signature", sign(&self.signing_secret, ts, &body))
                .body(body.clone());
            if attempt > 0 {
                req = req
                    .header("X-Slack-Retry-Num", attempt.to_string())
                    .header("X-Slack-Retry-Reason", reason);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let text = resp.text().await.unwrap_or_default();
                    let value = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    };
                    env.finish(Ok(value));
                    self.touched();
                    return;
                }
                Ok(resp) => {
                    let no_retry = resp
                        .headers()
                        .get("x-slack-no-retry")
                        .and_then(|v| v.to_str().ok())
                        == Some("1");
                    last_error = format!("{url} answered HTTP {}", resp.status().as_u16());
                    reason = "http_error";
                    if no_retry {
                        break;
                    }
                }
                Err(e) if e.is_timeout() => {
                    last_error = format!("{url} did not answer within {:?}", self.opts.ack_timeout);
                    reason = "http_timeout";
                }
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    reason = "connection_failed";
                }
            }
        }
        let kind = describe(env.kind);
        env.finish(Err(format!("{kind} not accepted: {last_error}")));
        self.touched();
    }
}
