//! The IMAP side of ingest: keep a folder in sync and hand every new message
//! to an [`IngestSink`], in UID order.
//!
//! - Read-only: the folder is EXAMINEd and bodies are fetched with
//!   `BODY.PEEK[]`, so the team's `\Seen` flags never change.
//! - Headers first: one FETCH of sizes for the new UIDs plans body fetches in
//!   batches bounded by bytes, so a backlog costs few round trips and memory
//!   stays bounded whatever the mail sizes.
//! - The checkpoint (UIDVALIDITY, last UID) is written by the sink in the same
//!   transaction as the messages of a fetch batch, so a crash at any point
//!   re-fetches at most the batches in flight (one being stored, the next
//!   being fetched), none of which was stored.
//! - A message over 1 MiB is fetched alone, in pieces, so that it is held
//!   once (see `fetch_in_pieces`).
//! - Stored while the next is fetched: a batch is parsed off the async
//!   threads as soon as it arrives and handed to the sink while the next
//!   FETCH runs and is parsed, so the server's round trip, the parsing and
//!   the store's writes overlap (see [`Pipeline`]). At most one batch waits
//!   to be stored; a failure of either drops only what was not stored.
//! - IDLE when the server has it (re-issued every `idle_timeout`, below
//!   RFC 2177's 29 minutes), polling otherwise; reconnects with exponential
//!   backoff and jitter.
//! - Every pass over the folder is reported to the sink ([`IngestSink::synced`])
//!   and happens at least every `check_every` (IDLE re-issued, or a poll),
//!   even when no mail comes: a quiet mailbox and a dead connection look the
//!   same from inside IDLE, and only a fresh round trip tells them apart.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::UnsolicitedResponse;
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::TryStreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::domain::mailbox::Checkpoint;
use crate::mail::auth::LoginSource;
use crate::mail::imap::{self, COMMAND_TIMEOUT, ImapError, Session, timed};
use crate::mail::parse::{InboundEmail, parse_email};
use crate::mail::settings::{ImapSettings, InitialSync};

/// Where fetched messages go (the bridge's ingest flow, which stores them).
/// Owned here so the IMAP side needs nothing of the store.
#[async_trait]
pub trait IngestSink: Send + Sync {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError>;
    async fn save_checkpoint(&self, cp: Checkpoint) -> Result<(), SinkError>;
    /// Stores messages, each with the checkpoint it advances to (in UID
    /// order), atomically: a fetch batch is one transaction. `fetched` is
    /// when the FETCH that brought them was issued (latency metrics).
    async fn accept(&self, mails: Vec<Fetched>, fetched: Instant) -> Result<(), SinkError>;
    /// Called after each successful pass over the folder (health reporting).
    fn synced(&self) {}
    /// Called when the connection is lost and will be retried.
    fn reconnecting(&self, _error: &IngestError) {}
}

/// Why an [`IngestSink`] could not do what it was asked. The sink says
/// whether trying again may help; its error shows through unchanged
/// (`Display` and `source` are the wrapped error's).
#[derive(Debug)]
pub struct SinkError {
    transient: bool,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl SinkError {
    pub fn new(
        transient: bool,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SinkError {
            transient,
            error: error.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The sink failed to store or to read the checkpoint.
    #[error("storing a message failed: {0}")]
    Sink(#[from] SinkError),
    /// The task parsing a fetched batch did not finish (the runtime is
    /// shutting down); the batch is fetched again.
    #[error("parsing fetched messages stopped: {0}")]
    Parsing(#[from] tokio::task::JoinError),
}

impl IngestError {
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Imap(e) => e.is_transient(),
            IngestError::Sink(e) => e.is_transient(),
            IngestError::Parsing(_) => true,
        }
    }
}

/// A fetched message: its bytes, as parsed, and the checkpoint it advances
/// the folder to.
pub struct Fetched {
    pub checkpoint: Checkpoint,
    pub raw: Vec<u8>,
    pub parsed: InboundEmail,
}

/// Parsing is CPU work (a 200-message batch is milliseconds): it runs on
/// the blocking pool, at most one batch per core at once, so that 200
/// mailboxes fetching together neither stall the async threads nor start
/// a thread each.
static PARSERS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Parses fetched messages off the async threads, in their order.
pub async fn parse_fetched(mails: Vec<(Checkpoint, Vec<u8>)>) -> Result<Vec<Fetched>, IngestError> {
    // The semaphore is never closed, so a permit always comes.
    let _permit = PARSERS.acquire().await.ok();
    let parsed = tokio::task::spawn_blocking(move || {
        mails
            .into_iter()
            .map(|(checkpoint, raw)| {
                let parsed = parse_email(&raw);
                Fetched {
                    checkpoint,
                    raw,
                    parsed,
                }
            })
            .collect()
    })
    .await?;
    Ok(parsed)
}

/// Fetched batches on their way to the sink: each is stored while the next
/// is fetched and parsed. Holds at most one batch not yet handed over.
/// (Public for the bench's `ingest` stage, which drives it without IMAP.)
pub struct Pipeline<'a> {
    sink: &'a dyn IngestSink,
    waiting: Option<(Vec<Fetched>, Instant)>,
}

impl<'a> Pipeline<'a> {
    pub fn new(sink: &'a dyn IngestSink) -> Self {
        Pipeline {
            sink,
            waiting: None,
        }
    }

    /// Runs `fetch` (the next batch) while the waiting batch is stored;
    /// what it brings waits in turn. A storing failure wins over a fetching
    /// one: either way nothing after the last stored batch was stored, and
    /// the checkpoint says so.
    pub async fn push(
        &mut self,
        fetch: impl Future<Output = Result<Option<(Vec<Fetched>, Instant)>, IngestError>>,
    ) -> Result<(), IngestError> {
        let next = match self.waiting.take() {
            Some((mails, fetched)) => {
                let (stored, next) = tokio::join!(self.sink.accept(mails, fetched), fetch);
                stored?;
                next?
            }
            None => fetch.await?,
        };
        self.waiting = next;
        Ok(())
    }

    /// Stores the batch still waiting, if any.
    pub async fn finish(&mut self) -> Result<(), IngestError> {
        if let Some((mails, fetched)) = self.waiting.take() {
            self.sink.accept(mails, fetched).await?;
        }
        Ok(())
    }
}

/// Largest total of message bytes fetched in one `UID FETCH`.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Most messages fetched in one `UID FETCH` (and stored in one transaction).
pub const BATCH_MESSAGES: usize = 200;
/// Messages larger than this are fetched alone, in pieces of this size.
const PIECE_BYTES: u64 = 1024 * 1024;
/// A buffer is sized from RFC822.SIZE up to this; beyond, it grows as needed
/// (a hostile server cannot make mailroom reserve memory by announcing).
const MAX_PRESIZE: usize = 256 * 1024 * 1024;

/// How long a mailbox waits before logging in again when only the operator
/// can help (no OAuth2 grant, grant or token refused): each try may cost a
/// call to the token endpoint, so it is not hammered.
pub const SIGN_IN_RETRY: Duration = Duration::from_secs(45);

/// What one mailbox's ingest needs: where to connect, how to log in, where
/// to start, how often to check.
pub struct Watch {
    pub settings: ImapSettings,
    /// Asked for a login on every (re)connection; an open session keeps
    /// working when its token expires or is refreshed.
    pub login: Arc<dyn LoginSource>,
    pub initial: InitialSync,
    pub check_every: Duration,
    /// Wait between logins when the operator must sign in ([`SIGN_IN_RETRY`]).
    pub sign_in_retry: Duration,
}

/// Watches one folder until `cancel` fires, passing over it at least every
/// `check_every`.
pub async fn run(watch: Watch, sink: Arc<dyn IngestSink>, cancel: CancellationToken) {
    run_on(watch, None, sink, cancel).await
}

/// [`run`], its first session `open` when given: one already logged in by
/// the caller (the Sent watcher, which looked its folder up on it). A
/// login costs the server a process (Dovecot) or counts against a
/// per-account limit (Gmail, Microsoft 365); with 200 mailboxes starting
/// at once, a login saved per mailbox is a third of the start's logins.
pub async fn run_on(
    watch: Watch,
    mut open: Option<Session>,
    sink: Arc<dyn IngestSink>,
    cancel: CancellationToken,
) {
    let Watch {
        settings,
        login,
        initial,
        check_every,
        sign_in_retry,
    } = watch;
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(300))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    while !cancel.is_cancelled() {
        match session(
            open.take(),
            &settings,
            login.as_ref(),
            &initial,
            check_every,
            sink.as_ref(),
            &cancel,
            &mut || delays = backoff(),
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                let mut delay = delays.next().unwrap_or(Duration::from_secs(300));
                if let IngestError::Imap(imap) = &e
                    && imap.needs_sign_in()
                {
                    delay = sign_in_retry;
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "IMAP login needs the operator; retrying slowly");
                } else if e.is_transient() {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "IMAP connection lost; reconnecting");
                } else {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "IMAP error that needs attention; retrying");
                }
                sink.reconnecting(&e);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
    }
}

/// One connection's life: sync, then IDLE or poll, until error or cancel.
/// `open`: a session to start on instead of logging in.
#[allow(clippy::too_many_arguments)]
async fn session(
    open: Option<Session>,
    settings: &ImapSettings,
    login: &dyn LoginSource,
    initial: &InitialSync,
    check_every: Duration,
    sink: &dyn IngestSink,
    cancel: &CancellationToken,
    connected: &mut (dyn FnMut() + Send),
) -> Result<(), IngestError> {
    // The login is asked for here only: a token that expires or is
    // refreshed while this session is open changes nothing for it (the
    // server checked the token at AUTHENTICATE), so IDLE goes on.
    let mut session = match open {
        Some(session) => session,
        None => imap::connect(settings, login).await?,
    };
    let caps = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
    let use_idle = settings.idle && caps.has_str("IDLE");
    tracing::info!(host = %settings.host, folder = %settings.folder, idle = use_idle, "IMAP connected");
    // "IMAP connected" comes before the first pass over the folder, which
    // may take long on a backlog; the mailbox is watched only once that
    // pass is done and IDLE is accepted (or the first poll wait begins).
    // Said once per connection, not at each IDLE renewal, so operators
    // (and the bench's `many` stage, which times the start of 200
    // mailboxes by it) can tell when every mailbox is watched.
    let mut watching_said = false;
    let mut say_watching = || {
        if !watching_said {
            watching_said = true;
            tracing::info!(folder = %settings.folder, idle = use_idle, "IMAP watching");
        }
    };
    loop {
        sync(&mut session, settings, initial, sink, cancel).await?;
        connected();
        sink.synced();
        if cancel.is_cancelled() {
            imap::logout(session).await;
            return Ok(());
        }
        if use_idle {
            // A server announces new mail (`* n EXISTS`) once, with the
            // response to whatever command comes next; async-imap files such
            // announcements as unsolicited. One that came during the sync's
            // last SEARCH may describe mail that SEARCH did not see, and one
            // that came while IDLE was starting (before "+ idling") never
            // reaches `wait`. Either way the server will not say it again:
            // sync again now instead of idling on a mail we already missed.
            if announced_new_mail(|| session.unsolicited_responses.try_recv().ok()) {
                continue;
            }
            let unsolicited = session.unsolicited_responses.clone();
            let mut idle = session.idle();
            timed("IDLE", COMMAND_TIMEOUT, idle.init()).await?;
            say_watching();
            if !announced_new_mail(|| unsolicited.try_recv().ok()) {
                let (wait, stop) = idle.wait_with_timeout(settings.idle_timeout.min(check_every));
                let outcome = tokio::select! {
                    r = wait => Some(r),
                    _ = cancel.cancelled() => None,
                };
                drop(stop);
                match outcome {
                    Some(Ok(
                        IdleResponse::NewData(_)
                        | IdleResponse::Timeout
                        | IdleResponse::ManualInterrupt,
                    ))
                    | None => {}
                    Some(Err(e)) => return Err(ImapError::from(e).into()),
                }
            }
            session = timed("DONE", COMMAND_TIMEOUT, idle.done()).await?;
        } else {
            // The poll waits at most `check_every` too, so that a long
            // `poll_interval_secs` never lets the watchdog call a working
            // mailbox stale.
            say_watching();
            tokio::select! {
                _ = tokio::time::sleep(settings.poll_interval.min(check_every)) => {}
                _ = cancel.cancelled() => {}
            }
            timed("NOOP", COMMAND_TIMEOUT, session.noop()).await?;
        }
        if cancel.is_cancelled() {
            imap::logout(session).await;
            return Ok(());
        }
    }
}

/// Drains the unsolicited responses; true if any announced new mail.
fn announced_new_mail(mut next: impl FnMut() -> Option<UnsolicitedResponse>) -> bool {
    let mut any = false;
    while let Some(r) = next() {
        any |= matches!(
            r,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    any
}

/// IMAP date for SEARCH SINCE: `1-Feb-2024`.
fn imap_date(d: jiff::civil::Date) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS[(d.month() as usize).saturating_sub(1).min(11)];
    format!("{}-{}-{}", d.day(), m, d.year())
}

/// Brings the store up to date with the folder.
async fn sync(
    session: &mut Session,
    settings: &ImapSettings,
    initial: &InitialSync,
    sink: &dyn IngestSink,
    cancel: &CancellationToken,
) -> Result<(), IngestError> {
    let folder = imap::examine(session, &settings.folder).await?;
    let uv = folder.uid_validity;
    let checkpoint = sink.checkpoint().await?;
    let mut last_uid = match checkpoint {
        Some(cp) if cp.uid_validity == uv => cp.last_uid,
        Some(cp) => {
            // The folder was recreated (or the server renumbered it). Every
            // message is looked at again; the store recognises the ones it has
            // by Message-ID and content, so nothing is imported twice.
            tracing::warn!(old = cp.uid_validity, new = uv, folder = %settings.folder, "UIDVALIDITY changed; rescanning the folder");
            0
        }
        None => match initial {
            InitialSync::All => 0,
            InitialSync::NewOnly | InitialSync::Since(_) => {
                let top = match folder.uid_next {
                    Some(n) => n.saturating_sub(1),
                    None => highest_uid(session).await?,
                };
                if let InitialSync::Since(day) = initial {
                    let query = format!("SINCE {}", imap_date(*day));
                    let found =
                        timed("UID SEARCH", COMMAND_TIMEOUT, session.uid_search(query)).await?;
                    let mut uids: Vec<u32> = found.into_iter().filter(|u| *u <= top).collect();
                    uids.sort_unstable();
                    tracing::info!(count = uids.len(), since = %day, "first start: importing mail since the configured day");
                    fetch_and_accept(session, uv, &uids, sink, cancel).await?;
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                }
                sink.save_checkpoint(Checkpoint {
                    uid_validity: uv,
                    last_uid: top,
                })
                .await?;
                top
            }
        },
    };
    // New mail may keep arriving while we fetch: loop until a pass finds none.
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let query = format!("UID {}:*", last_uid.saturating_add(1));
        let found = timed("UID SEARCH", COMMAND_TIMEOUT, session.uid_search(query)).await?;
        // `n:*` always matches the last message, even when its UID is below n.
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > last_uid).collect();
        if uids.is_empty() {
            return Ok(());
        }
        uids.sort_unstable();
        fetch_and_accept(session, uv, &uids, sink, cancel).await?;
        last_uid = uids.last().copied().unwrap_or(last_uid);
    }
}

async fn highest_uid(session: &mut Session) -> Result<u32, ImapError> {
    let found = timed("UID SEARCH", COMMAND_TIMEOUT, session.uid_search("ALL")).await?;
    Ok(found.into_iter().max().unwrap_or(0))
}

/// Fetches sizes, then bodies in byte-bounded batches, and hands each message
/// to the sink in UID order, a batch stored while the next is fetched.
async fn fetch_and_accept(
    session: &mut Session,
    uv: u32,
    uids: &[u32],
    sink: &dyn IngestSink,
    cancel: &CancellationToken,
) -> Result<(), IngestError> {
    let mut pipeline = Pipeline::new(sink);
    for chunk in uids.chunks(1000) {
        let set = uid_set(chunk);
        let sizes: Vec<(u32, u64)> = timed("UID FETCH sizes", COMMAND_TIMEOUT, async {
            let stream = session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
            let fetched: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(
                fetched
                    .iter()
                    .filter_map(|f| f.uid.map(|u| (u, u64::from(f.size.unwrap_or(0)))))
                    .collect(),
            )
        })
        .await?;
        let mut sizes = sizes;
        sizes.sort_unstable();
        let mut batch: Vec<u32> = Vec::new();
        let mut batch_bytes = 0u64;
        for (uid, size) in &sizes {
            if *size > PIECE_BYTES {
                // UID order holds: what is batched before it goes first.
                if !batch.is_empty() {
                    pipeline.push(fetch_bodies(session, uv, &batch)).await?;
                    batch.clear();
                    batch_bytes = 0;
                }
                pipeline
                    .push(fetch_in_pieces(session, uv, *uid, *size))
                    .await?;
                if cancel.is_cancelled() {
                    return Ok(());
                }
                continue;
            }
            batch.push(*uid);
            batch_bytes += size;
            if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_MESSAGES {
                pipeline.push(fetch_bodies(session, uv, &batch)).await?;
                batch.clear();
                batch_bytes = 0;
                if cancel.is_cancelled() {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            pipeline.push(fetch_bodies(session, uv, &batch)).await?;
        }
    }
    pipeline.finish().await
}

/// One batch's bodies, parsed; `None` when all were expunged meanwhile.
async fn fetch_bodies(
    session: &mut Session,
    uv: u32,
    uids: &[u32],
) -> Result<Option<(Vec<Fetched>, Instant)>, IngestError> {
    let set = uid_set(uids);
    let fetched = Instant::now();
    let mut bodies: Vec<(u32, Vec<u8>)> = timed("UID FETCH bodies", COMMAND_TIMEOUT, async {
        let stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
        let fetched: Vec<_> = stream.try_collect().await?;
        Ok::<_, async_imap::error::Error>(
            fetched
                .into_iter()
                .filter_map(|f| Some((f.uid?, f.body()?.to_vec())))
                .collect(),
        )
    })
    .await?;
    bodies.sort_unstable_by_key(|(uid, _)| *uid);
    if bodies.is_empty() {
        return Ok(None);
    }
    let mails = bodies
        .into_iter()
        .map(|(uid, raw)| {
            let cp = Checkpoint {
                uid_validity: uv,
                last_uid: uid,
            };
            (cp, raw)
        })
        .collect();
    Ok(Some((parse_fetched(mails).await?, fetched)))
}

/// Fetches one large message a piece at a time (`BODY.PEEK[]<offset.length>`,
/// RFC 3501 §6.4.5) into a buffer sized once, so that the connection's read
/// buffer never holds a second copy of it.
async fn fetch_in_pieces(
    session: &mut Session,
    uv: u32,
    uid: u32,
    size: u64,
) -> Result<Option<(Vec<Fetched>, Instant)>, IngestError> {
    let fetched = Instant::now();
    let set = uid.to_string();
    // RFC822.SIZE is a hint (a server may count line ends differently), so
    // the pieces run until one comes back short.
    let mut raw: Vec<u8> = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(MAX_PRESIZE));
    loop {
        let query = format!("(UID BODY.PEEK[]<{}.{PIECE_BYTES}>)", raw.len());
        let piece = timed("UID FETCH piece", COMMAND_TIMEOUT, async {
            let stream = session.uid_fetch(&set, &query).await?;
            let fetched: Vec<_> = stream.try_collect().await?;
            let mut got = None;
            for f in &fetched {
                if f.uid == Some(uid)
                    && let Some(body) = f.body()
                {
                    raw.extend_from_slice(body);
                    got = Some(body.len() as u64);
                }
            }
            Ok::<_, async_imap::error::Error>(got)
        })
        .await?;
        match piece {
            // Expunged since the SEARCH: nothing to store, as in a batch.
            None if raw.is_empty() => return Ok(None),
            Some(n) if n == PIECE_BYTES => {
                // A server that never comes back short is not followed forever.
                if raw.len() as u64 > size.saturating_mul(2).saturating_add(PIECE_BYTES) {
                    tracing::warn!(
                        uid,
                        size,
                        fetched = raw.len(),
                        "message keeps growing past its RFC822.SIZE; storing what came"
                    );
                    break;
                }
            }
            _ => break,
        }
    }
    let cp = Checkpoint {
        uid_validity: uv,
        last_uid: uid,
    };
    Ok(Some((parse_fetched(vec![(cp, raw)]).await?, fetched)))
}

/// A compact IMAP sequence set: `1:5,7,9:12`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    /// A sink that records the checkpoints it stored, can be made to wait
    /// for a signal before storing, and refuses one batch.
    struct Recording {
        stored: std::sync::Mutex<Vec<u32>>,
        hold: Option<Arc<tokio::sync::Notify>>,
        refuse_uid: Option<u32>,
    }

    #[async_trait]
    impl IngestSink for Recording {
        async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError> {
            Ok(None)
        }
        async fn save_checkpoint(&self, _cp: Checkpoint) -> Result<(), SinkError> {
            Ok(())
        }
        async fn accept(&self, mails: Vec<Fetched>, _fetched: Instant) -> Result<(), SinkError> {
            if let Some(hold) = &self.hold {
                hold.notified().await;
            }
            let uids: Vec<u32> = mails.iter().map(|m| m.checkpoint.last_uid).collect();
            if uids.iter().any(|u| Some(*u) == self.refuse_uid) {
                return Err(SinkError::new(true, "store refused"));
            }
            self.stored.lock().unwrap().extend(uids);
            Ok(())
        }
    }

    async fn batch(uids: &[u32]) -> Result<Option<(Vec<Fetched>, Instant)>, IngestError> {
        let mails = uids
            .iter()
            .map(|&uid| {
                let raw =
                    format!("Message-ID: <{uid}@x>\r\nFrom: a@x\r\nSubject: {uid}\r\n\r\nHi.\r\n");
                let cp = Checkpoint {
                    uid_validity: 1,
                    last_uid: uid,
                };
                (cp, raw.into_bytes())
            })
            .collect();
        Ok(Some((parse_fetched(mails).await?, Instant::now())))
    }

    #[tokio::test]
    async fn a_batch_is_stored_while_the_next_is_fetched() {
        // The first batch's store waits for the second batch's fetch to
        // begin: stored one after the other, this never finishes.
        let hold = Arc::new(tokio::sync::Notify::new());
        let sink = Recording {
            stored: Default::default(),
            hold: Some(hold.clone()),
            refuse_uid: None,
        };
        let mut pipeline = Pipeline::new(&sink);
        let run = async {
            pipeline.push(batch(&[1, 2])).await?;
            pipeline
                .push(async {
                    hold.notify_one();
                    batch(&[3]).await
                })
                .await?;
            hold.notify_one();
            pipeline.finish().await
        };
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the store waited for the next fetch: no overlap")
            .unwrap();
        assert_eq!(*sink.stored.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_refused_batch_stops_the_pipeline_and_nothing_after_it_is_stored() {
        let sink = Recording {
            stored: Default::default(),
            hold: None,
            refuse_uid: Some(3),
        };
        let mut pipeline = Pipeline::new(&sink);
        pipeline.push(batch(&[1, 2])).await.unwrap();
        pipeline.push(batch(&[3])).await.unwrap();
        // Stores [3] (refused) while [4] is fetched: the error is the store's.
        let err = pipeline.push(batch(&[4])).await.unwrap_err();
        assert!(matches!(err, IngestError::Sink(_)), "{err}");
        assert_eq!(*sink.stored.lock().unwrap(), [1, 2]);
        // A failed fetch after a good store keeps what was stored.
        let sink = Recording {
            stored: Default::default(),
            hold: None,
            refuse_uid: None,
        };
        let mut pipeline = Pipeline::new(&sink);
        pipeline.push(batch(&[1])).await.unwrap();
        let err = pipeline
            .push(async { Err(IngestError::Imap(ImapError::Timeout("UID FETCH bodies"))) })
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Imap(_)), "{err}");
        pipeline.finish().await.unwrap();
        assert_eq!(*sink.stored.lock().unwrap(), [1]);
    }

    #[test]
    fn imap_dates_use_month_names() {
        let d: jiff::civil::Date = "2024-02-01".parse().unwrap();
        assert_eq!(imap_date(d), "1-Feb-2024");
    }
}
