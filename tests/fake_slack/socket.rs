//! The Socket Mode WebSocket endpoint (the URL apps.connections.open hands out).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Inner;
use super::state::ConnCmd;
use super::util::form_decode;

pub(crate) async fn run_listener(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(handle(inner.clone(), stream));
                }
            }
        }
    }
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = status;
    r
}

#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
async fn handle(inner: Arc<Inner>, stream: TcpStream) {
    let check = inner.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let uri = req.uri();
        if uri.path().trim_end_matches('/') != "/link" {
            return Err(reject(StatusCode::NOT_FOUND, "not found"));
        }
        let query = form_decode(uri.query().unwrap_or(""));
        let ticket = query
            .iter()
            .find(|(k, _)| k == "ticket")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut st = check.lock();
        match st.tickets.get_mut(&ticket) {
            Some(used) if !*used => {
                *used = true;
                Ok(resp)
            }
            Some(_) => Err(reject(StatusCode::UNAUTHORIZED, "ticket already used")),
            None => Err(reject(StatusCode::UNAUTHORIZED, "invalid ticket")),
        }
    };
    let cancel = inner.cancel.clone();
    let accepted = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::accept_hdr_async(stream, callback),
        ) => r,
    };
    let Ok(Ok(mut ws)) = accepted else {
        return;
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, num_connections) = {
        let mut st = inner.lock();
        st.next_conn_id += 1;
        let id = st.next_conn_id;
        st.conns.insert(id, tx);
        st.live_conns.insert(id);
        st.socket_connections_opened += 1;
        (id, st.conns.len())
    };
    let hello = json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "fake-slack",
            "build_number": 1,
            "approximate_connection_time": 3600
        },
        "connection_info": {"app_id": inner.app_id}
    });
    // The hello goes out before any envelope queued for this connection.
    let hello_sent = ws
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_ok();
    inner.touched();
    inner.dispatch.notify_one();

    if hello_sent {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(ConnCmd::Frame(text)) => {
                        if ws.send(WsMessage::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(ConnCmd::Disconnect(reason)) => {
                        let frame = json!({
                            "type": "disconnect",
                            "reason": reason,
                            "debug_info": {"host": "fake-slack"}
                        });
                        let _ = ws.send(WsMessage::Text(frame.to_string().into())).await;
                        let _ = ws
                            .close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
                            .await;
                        // Give the client a moment to answer the close handshake.
                        let until = Instant::now() + Duration::from_secs(1);
                        while let Ok(Some(Ok(msg))) =
                            tokio::time::timeout_at(until.into(), ws.next()).await
                        {
                            if msg.is_close() {
                                break;
                            }
                        }
                        break;
                    }
                    Some(ConnCmd::Drop) | None => break,
                },
                msg = ws.next() => match msg {
                    Some(Ok(WsMessage::Text(text))) => inner.on_socket_text(text.as_str()),
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                    // Pings are answered by tungstenite itself.
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    drop(ws);
    {
        let mut st = inner.lock();
        st.conns.remove(&id);
        st.live_conns.remove(&id);
    }
    inner.touched();
    inner.dispatch.notify_one();
}
