//! A TCP forwarder in front of a real server (Dovecot, Synapse) that a test
//! can cut and restore: the server stays real, only the path to it breaks.
//! Shared by the `it` and `chaos` test binaries (`#[path]`-included).
//!
//! `cut` drops every forwarded connection and closes the listening port, so
//! new connections are refused — what a client sees when the server is down
//! or its host unreachable. `restore` opens the same port again.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Cuttable {
    pub port: u16,
    target: u16,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: Mutex<Option<AbortHandle>>,
    /// Bytes forwarded from the server to clients (to cut mid-transfer).
    downstream: Arc<std::sync::atomic::AtomicU64>,
}

impl Cuttable {
    pub async fn start(target: u16) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let c = Cuttable {
            port,
            target,
            conns: Arc::default(),
            accept: Mutex::new(None),
            downstream: Arc::default(),
        };
        c.serve(listener);
        c
    }

    fn serve(&self, listener: TcpListener) {
        let (conns, target, down) = (self.conns.clone(), self.target, self.downstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let down = down.clone();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let (mut ir, mut iw) = inbound.into_split();
                        let (mut or, mut ow) = outbound.into_split();
                        let up = tokio::io::copy(&mut ir, &mut ow);
                        let back = async {
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                                let n = match or.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if iw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                                down.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                            }
                        };
                        tokio::select! {
                            _ = up => {}
                            _ = back => {}
                        }
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        *self.accept.lock().unwrap() = Some(accept);
    }

    /// Bytes the server has sent to clients through the forwarder so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.downstream.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every connection and closes the port (new connections are refused).
    pub fn cut(&self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Opens the port again (bounded retry: the closed socket may linger briefly).
    pub async fn restore(&self) {
        if self.accept.lock().unwrap().is_some() {
            return;
        }
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot reopen forwarder port {}: {e}", self.port),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.cut();
    }
}
