//! A TCP forwarder in front of a real server (Dovecot, Synapse) that a test
//! can cut and restore: the server stays real, only the path to it breaks.
//! Shared by the `it` and `chaos` test binaries (`#[path]`-included).
//!
//! `cut` drops every forwarded connection and closes the listening port, so
//! new connections are refused — what a client sees when the server is down
//! or its host unreachable. `restore` opens the same port again.
//! `cut_after_downstream` arms a cut that fires from inside the forwarding
//! itself once the server has sent that many bytes, to break a transfer
//! midway (e.g. a large IMAP FETCH).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Cuttable {
    pub port: u16,
    inner: Arc<Inner>,
}

struct Inner {
    target: u16,
    conns: Mutex<Vec<AbortHandle>>,
    accept: Mutex<Option<AbortHandle>>,
    /// Bytes forwarded from the server to clients.
    downstream: AtomicU64,
    /// Cut once `downstream` reaches this (u64::MAX: not armed).
    cut_at: AtomicU64,
    cuts: AtomicU64,
}

impl Inner {
    fn cut(&self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
            self.cuts.fetch_add(1, Ordering::SeqCst);
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Cuttable {
    pub async fn start(target: u16) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let c = Cuttable {
            port,
            inner: Arc::new(Inner {
                target,
                conns: Mutex::default(),
                accept: Mutex::default(),
                downstream: AtomicU64::new(0),
                cut_at: AtomicU64::new(u64::MAX),
                cuts: AtomicU64::new(0),
            }),
        };
        serve(&c.inner, listener);
        c
    }

    /// Bytes the server has sent to clients through the forwarder so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.inner.downstream.load(Ordering::SeqCst)
    }

    /// How many times the forwarder was cut (by `cut` or an armed cut).
    pub fn cuts(&self) -> u64 {
        self.inner.cuts.load(Ordering::SeqCst)
    }

    /// Cuts as soon as `more` further bytes have come from the server.
    pub fn cut_after_downstream(&self, more: u64) {
        self.inner
            .cut_at
            .store(self.downstream_bytes() + more, Ordering::SeqCst);
    }

    /// Drops every connection and closes the port (new connections are refused).
    pub fn cut(&self) {
        self.inner.cut();
    }

    /// Opens the port again (bounded retry: the closed socket may linger briefly).
    pub async fn restore(&self) {
        if self.inner.accept.lock().unwrap().is_some() {
            return;
        }
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if start.elapsed() > Duration::from_secs(10) => {
                    panic!("cannot reopen forwarder port {}: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        serve(&self.inner, listener);
    }
}

fn serve(inner: &Arc<Inner>, listener: TcpListener) {
    let i = inner.clone();
    let accept = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let i2 = i.clone();
            let task = tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", i2.target)).await else {
                    return;
                };
                let (mut ir, mut iw) = inbound.into_split();
                let (mut or, mut ow) = outbound.into_split();
                let up = tokio::io::copy(&mut ir, &mut ow);
                let back = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match or.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if iw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let total = i2.downstream.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if total >= i2.cut_at.load(Ordering::SeqCst) {
                            i2.cut_at.store(u64::MAX, Ordering::SeqCst);
                            // Aborts this task too; returning stops it anyway.
                            i2.cut();
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = back => {}
                }
            });
            i.conns.lock().unwrap().push(task.abort_handle());
        }
    })
    .abort_handle();
    *inner.accept.lock().unwrap() = Some(accept);
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.inner.cut();
    }
}
