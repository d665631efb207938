//! The SMTP fault proxy of the fault suite: an SMTP-aware proxy in front of
//! the stack's real Postfix that answers, for the connections its script
//! names, a command itself or holds back Postfix's answer to the message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::WAIT;
use crate::common::wait_for;

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// Forward everything.
    Pass,
    /// Answer the greeting with this code and close.
    Greeting(u16),
    /// Answer RCPT TO with this code (Postfix never sees it).
    Rcpt(u16),
    /// Answer DATA with this code.
    Data(u16),
    /// Swallow the end of the message, answer this code, and drop the
    /// connection to Postfix mid-DATA, so Postfix discards the message.
    EndOfData(u16),
    /// Forward the message; hold Postfix's answer to it until released.
    HoldEndOfData,
}

fn answer(code: u16, what: &str) -> Vec<u8> {
    let class = code / 100;
    format!("{code} {class}.3.0 fault proxy: {what}\r\n").into_bytes()
}

#[derive(Default)]
struct ProxyState {
    /// Faults for the next connections, in order; `Pass` once empty.
    script: Mutex<VecDeque<Fault>>,
    connections: AtomicU32,
    /// Messages Postfix answered 250 to after the data: what was delivered.
    accepted: AtomicU32,
    /// Faults played.
    faults: AtomicU32,
    /// Postfix answers being held back right now or earlier.
    held: AtomicU32,
    last_fault: Mutex<Option<Instant>>,
}

impl ProxyState {
    fn faulted(&self) {
        self.faults.fetch_add(1, Ordering::SeqCst);
        *self.last_fault.lock().unwrap() = Some(Instant::now());
    }
}

pub(super) struct SmtpProxy {
    port: u16,
    state: Arc<ProxyState>,
    release: watch::Sender<bool>,
    accept: AbortHandle,
}

impl SmtpProxy {
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Scripted faults played so far.
    pub(super) fn faults_played(&self) -> usize {
        self.state.faults.load(Ordering::SeqCst) as usize
    }

    /// Time since the last fault was played (zero if none was).
    pub(super) fn since_last_fault(&self) -> Duration {
        self.state
            .last_fault
            .lock()
            .unwrap()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    pub(super) async fn start(upstream: u16, script: Vec<Fault>) -> SmtpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        state.script.lock().unwrap().extend(script);
        let (release, released) = watch::channel(false);
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let fault = st.script.lock().unwrap().pop_front().unwrap_or(Fault::Pass);
                let (st, released) = (st.clone(), released.clone());
                tokio::spawn(async move {
                    let _ = serve(client, upstream, fault, st, released).await;
                });
            }
        })
        .abort_handle();
        SmtpProxy {
            port,
            state,
            release,
            accept,
        }
    }

    pub(super) fn accepted(&self) -> u32 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    pub(super) fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Lets held answers through (and every later one).
    pub(super) fn release(&self) {
        let _ = self.release.send(true);
    }

    pub(super) async fn wait_held(&self, n: u32) {
        let st = self.state.clone();
        wait_for("Postfix's answer to the message held back", WAIT, || {
            let st = st.clone();
            async move { (st.held.load(Ordering::SeqCst) >= n).then_some(()) }
        })
        .await;
    }
}

impl Drop for SmtpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.release.send(true);
    }
}

/// One SMTP reply (all lines of a multi-line one).
async fn read_reply(r: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if r.read_until(b'\n', &mut out).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = &out[start..];
        if line.len() < 4 || line[3] != b'-' {
            return Ok(out);
        }
    }
}

/// Lock-step relay: one client line, one server reply (lettre does not
/// pipeline), with the connection's fault applied.
async fn serve(
    client: TcpStream,
    upstream: u16,
    fault: Fault,
    st: Arc<ProxyState>,
    mut released: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (cr, mut cw) = client.into_split();
    if let Fault::Greeting(code) = fault {
        st.faulted();
        cw.write_all(&answer(code, "service not available")).await?;
        return cw.shutdown().await;
    }
    let (sr, mut sw) = TcpStream::connect(("127.0.0.1", upstream))
        .await?
        .into_split();
    let (mut cr, mut sr) = (BufReader::new(cr), BufReader::new(sr));
    cw.write_all(&read_reply(&mut sr).await?).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if cr.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = String::from_utf8_lossy(&line[..line.len().min(4)]).to_ascii_uppercase();
        match (fault, verb.as_str()) {
            (Fault::Rcpt(code), "RCPT") => {
                st.faulted();
                cw.write_all(&answer(code, "recipient not taken")).await?;
                continue;
            }
            (Fault::Data(code), "DATA") => {
                st.faulted();
                cw.write_all(&answer(code, "no data now")).await?;
                continue;
            }
            _ => {}
        }
        sw.write_all(&line).await?;
        let reply = read_reply(&mut sr).await?;
        cw.write_all(&reply).await?;
        if verb == "QUIT" {
            return Ok(());
        }
        if verb != "DATA" || !reply.starts_with(b"354") {
            continue;
        }
        // The message, up to the lone dot.
        loop {
            line.clear();
            if cr.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let end = line == b".\r\n";
            if end && let Fault::EndOfData(code) = fault {
                st.faulted();
                cw.write_all(&answer(code, "message not taken")).await?;
                // Dropping `sw` mid-DATA: Postfix discards the message.
                return Ok(());
            }
            sw.write_all(&line).await?;
            if end {
                break;
            }
        }
        let reply = read_reply(&mut sr).await?;
        if reply.starts_with(b"250") {
            st.accepted.fetch_add(1, Ordering::SeqCst);
        }
        if fault == Fault::HoldEndOfData {
            st.held.fetch_add(1, Ordering::SeqCst);
            let _ = tokio::time::timeout(WAIT, released.wait_for(|r| *r)).await;
        }
        cw.write_all(&reply).await?;
    }
}
