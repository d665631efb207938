//! Odd and hostile real-world mail through the real ingest path: parse →
//! thread → store (SQLite `:memory:`) → outbox worker → the Matrix and Slack
//! renderers. Only the chat servers are replaced: a recording chat renders
//! every post with the adapters' own pure rendering functions and keeps the
//! result, so the assertions read exactly what would reach a room.
//!
//! Every file in `tests/corpus/` is run, plus three generated at run time
//! (too big to commit): a 25 MB attachment, a 1 MB Subject and a 1 MB
//! References header.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mailroom::bridge::App;
use mailroom::bridge::ingest::MailboxIngest;
use mailroom::bridge::outbox::{StepOutcome, run_once};
use mailroom::chat::slack::render as slack_render;
use mailroom::chat::{ChatError, ChatPlatform, FileUpload, Member, TicketCard};
use mailroom::config::Settings;
use mailroom::domain::chat::{ChatThread, Platform, SharedFile};
use mailroom::domain::ids::{Actor, Agent, MailboxName, TicketId};
use mailroom::domain::render::{EmailView, Rendering};
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::store::settings::DatabaseUrl;
use mailroom::store::sql::SqlStore;
use mailroom::store::{Recorded, TicketFilter, TicketStore};
use serde_json::Value;

const MATRIX_ROOM: &str = "!support:localhost";
const SLACK_CHANNEL: &str = "C0SUPPORT";

/// What one post put into a room, as the platform would receive it.
#[derive(Debug, Clone)]
struct Post {
    /// The thread (the recording chat's own numbering), `None` for a root.
    in_thread: Option<String>,
    kind: PostKind,
    /// The plain text the platform shows (Matrix `body`, Slack's flattened blocks).
    plain: String,
    /// Matrix `formatted_body` or Slack's notification `text`.
    markup: String,
    /// Slack: the texts Slack reads as mrkdwn (empty for Matrix).
    mrkdwn: String,
    /// Matrix users mentioned, or Slack `<@…>` mentions in mrkdwn texts.
    mentions: Vec<String>,
    files: Vec<(String, usize)>,
    /// The payload's size in bytes, as serialised for the wire.
    wire_bytes: usize,
    /// Slack: the post came with blocks (Matrix: with HTML).
    has_blocks: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostKind {
    Root,
    FollowUp,
    CardUpdate,
    Notice,
}

/// A chat platform that renders with the real adapter code and records.
struct RenderingChat {
    platform: Platform,
    posts: Mutex<Vec<Post>>,
}

impl RenderingChat {
    fn new(platform: Platform) -> Arc<Self> {
        Arc::new(RenderingChat {
            platform,
            posts: Mutex::new(Vec::new()),
        })
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("posts lock").clone()
    }

    /// What the real server says to a post that does not fit it: Synapse
    /// answers 413 M_TOO_LARGE over 65,536 bytes, Slack `msg_too_long` or
    /// `invalid_blocks`.
    fn refuse_unfit(&self, post: &Post) -> Result<(), ChatError> {
        let fits = match self.platform {
            Platform::Matrix => post.wire_bytes <= 65_536,
            Platform::Slack => {
                post.markup.chars().count() <= 40_000 && post.wire_bytes < 200 * 1024
            }
        };
        if fits {
            Ok(())
        } else {
            Err(ChatError::Permanent {
                message: format!("too large: {} bytes", post.wire_bytes),
            })
        }
    }

    fn record(&self, post: Post) -> String {
        let mut posts = self.posts.lock().expect("posts lock");
        posts.push(post);
        format!("t{}", posts.len())
    }

    fn render_root(&self, card: &TicketCard<'_>, email: &EmailView, rendering: Rendering) -> Post {
        match self.platform {
            Platform::Matrix => matrix_post(
                mailroom::chat::matrix::root_content(card, email, rendering),
                None,
            ),
            Platform::Slack => slack_post(slack_render::root_post(card, email, rendering), None),
        }
    }
}

fn matrix_post(
    content: matrix_sdk::ruma::events::room::message::RoomMessageEventContent,
    in_thread: Option<String>,
) -> Post {
    use matrix_sdk::ruma::events::room::message::MessageType;
    let json = serde_json::to_vec(&content).expect("event serialises");
    let markup = match &content.msgtype {
        MessageType::Text(t) => t.formatted.as_ref().map(|f| f.body.clone()),
        MessageType::Notice(n) => n.formatted.as_ref().map(|f| f.body.clone()),
        _ => None,
    }
    .unwrap_or_default();
    let mentions = content
        .mentions
        .as_ref()
        .map(|m| m.user_ids.iter().map(|u| u.to_string()).collect())
        .unwrap_or_default();
    Post {
        in_thread,
        kind: PostKind::Root,
        plain: content.body().to_owned(),
        mrkdwn: String::new(),
        has_blocks: !markup.is_empty(),
        markup,
        mentions,
        files: Vec::new(),
        wire_bytes: json.len(),
    }
}

/// Every text a Slack client shows of the blocks, one per line, and
/// whether Slack reads it as mrkdwn (where `<…>` are links and mentions) or
/// as plain_text (shown literally).
fn slack_texts(blocks: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        let objects =
            std::iter::once(&b["text"]).chain(b["elements"].as_array().into_iter().flatten());
        for o in objects {
            if let Some(t) = o["text"].as_str() {
                out.push((t.to_owned(), o["type"] == "mrkdwn"));
            }
        }
    }
    out
}

fn slack_post(post: slack_render::Post, in_thread: Option<String>) -> Post {
    let slack_render::Post {
        text,
        blocks,
        mrkdwn,
    } = post;
    // Without blocks, the text is the message, read as mrkdwn unless turned off.
    let has_blocks = blocks.is_some();
    let (texts, blocks) = match blocks {
        Some(blocks) => (slack_texts(&blocks), blocks),
        None => (vec![(text.clone(), mrkdwn)], Value::Null),
    };
    let mrkdwn: Vec<String> = texts
        .iter()
        .filter(|(_, m)| *m)
        .map(|(t, _)| t.clone())
        .collect();
    let mut mentions = Vec::new();
    for t in &mrkdwn {
        let mut rest = t.as_str();
        while let Some(at) = rest.find("<@") {
            let tail = &rest[at + 2..];
            let end = tail.find('>').unwrap_or(tail.len());
            mentions.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    let wire_bytes = serde_json::to_vec(&serde_json::json!({"text": text, "blocks": blocks}))
        .expect("payload serialises")
        .len();
    Post {
        in_thread,
        kind: PostKind::Root,
        plain: texts
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        markup: text,
        mrkdwn: mrkdwn.join("\n"),
        mentions,
        files: Vec::new(),
        wire_bytes,
        has_blocks,
    }
}

#[async_trait]
impl ChatPlatform for RenderingChat {
    fn platform(&self) -> Platform {
        self.platform
    }

    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
        _idempotency_key: &str,
    ) -> Result<ChatThread, ChatError> {
        let post = self.render_root(card, email, rendering);
        self.refuse_unfit(&post)?;
        let thread_ref = self.record(post);
        Ok(ChatThread {
            platform: self.platform,
            room: room.to_owned(),
            thread_ref,
        })
    }

    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        ticket: TicketId,
        email: &EmailView,
        owner: Option<&Agent>,
        rendering: Rendering,
        _idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let at = Some(thread.thread_ref.clone());
        let mut post = match self.platform {
            Platform::Matrix => matrix_post(
                mailroom::chat::matrix::follow_up_content(ticket, email, owner, rendering),
                at,
            ),
            Platform::Slack => slack_post(
                slack_render::follow_up_post(ticket, email, owner.map(|o| o.as_str()), rendering),
                at,
            ),
        };
        post.kind = PostKind::FollowUp;
        self.refuse_unfit(&post)?;
        self.record(post);
        Ok(())
    }

    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
    ) -> Result<(), ChatError> {
        let mut post = self.render_root(card, email, rendering);
        post.kind = PostKind::CardUpdate;
        post.in_thread = Some(thread.thread_ref.clone());
        self.refuse_unfit(&post)?;
        self.record(post);
        Ok(())
    }

    /// Files are recorded on the root post of their thread.
    async fn upload(
        &self,
        thread: &ChatThread,
        file: FileUpload,
        _idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let index: usize = thread
            .thread_ref
            .trim_start_matches('t')
            .parse()
            .expect("a recorded thread");
        let mut posts = self.posts.lock().expect("posts lock");
        posts[index - 1].files.push((file.name, file.data.len()));
        Ok(())
    }

    fn body_limit(&self) -> usize {
        match self.platform {
            Platform::Matrix => mailroom::chat::matrix::MAX_BODY_CHARS,
            Platform::Slack => slack_render::MAX_BODY_CHARS,
        }
    }

    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        _idempotency_key: &str,
    ) -> Result<(), ChatError> {
        self.record(Post {
            in_thread: Some(thread.thread_ref.clone()),
            kind: PostKind::Notice,
            plain: text.to_owned(),
            markup: String::new(),
            mrkdwn: String::new(),
            mentions: Vec::new(),
            files: Vec::new(),
            wire_bytes: text.len(),
            has_blocks: false,
        });
        Ok(())
    }

    async fn room_notice(&self, _room: &str, text: &str) -> Result<(), ChatError> {
        panic!("unexpected room notice during ingest: {text}");
    }

    async fn room_alert(
        &self,
        _room: &str,
        text: &str,
        _room_mention: bool,
        _users: &[String],
    ) -> Result<(), ChatError> {
        panic!("unexpected room alert during ingest: {text}");
    }

    async fn download(&self, file: &SharedFile) -> Result<Vec<u8>, ChatError> {
        panic!("unexpected download of {} during ingest", file.name);
    }

    async fn member(&self, _room: &str, agent: &Agent) -> Result<Option<Member>, ChatError> {
        panic!("unexpected membership check for {agent} during ingest");
    }
}

/// The bridge wired to an in-memory SQLite store and two recording chats.
/// Nothing here touches the network: ingest is driven directly and the
/// outbox worker only has chat jobs to run.
struct Bridge {
    app: Arc<App>,
    ingest: MailboxIngest,
    matrix: Arc<RenderingChat>,
    slack: Arc<RenderingChat>,
}

impl Bridge {
    async fn start() -> Bridge {
        sqlx::any::install_default_drivers();
        let toml = format!(
            r#"
[database]
url = "sqlite::memory:"

[[mailbox]]
name = "support"
address = "support@mailroom.example"
display_name = "Example Support"
  [mailbox.imap]
  host = "127.0.0.1"
  port = 9
  tls = "none"
  password = "unused"
  [mailbox.smtp]
  host = "127.0.0.1"
  port = 9
  tls = "none"
  password = "unused"
  [mailbox.chat]
  matrix_room = "{MATRIX_ROOM}"
  slack_channel = "{SLACK_CHANNEL}"
  # The corpus repeats senders; the loop guard is tested in hygiene.rs.
  [mailbox.loop_guard]
  max_messages = 10000

# Never connected: the chats are the recording ones below.
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@mailroom:localhost"
password_env = "UNUSED_MATRIX_PASSWORD"

[slack]
bot_token_env = "UNUSED_SLACK_BOT_TOKEN"
app_token_env = "UNUSED_SLACK_APP_TOKEN"
"#
        );
        let settings = Settings::parse(&toml, &|_| Some("unused".to_owned()))
            .unwrap_or_else(|p| panic!("config invalid: {p:?}"));
        let url = DatabaseUrl::parse("sqlite::memory:").expect("memory url");
        let store = SqlStore::connect(&url, 1).await.expect("sqlite in memory");
        store.migrate().await.expect("migrate");
        let matrix = RenderingChat::new(Platform::Matrix);
        let slack = RenderingChat::new(Platform::Slack);
        let chats: Vec<Arc<dyn ChatPlatform>> = vec![matrix.clone(), slack.clone()];
        let app = Arc::new(App::new(settings, Arc::new(store), chats));
        let ingest = MailboxIngest::new(app.clone(), MailboxName::parse("support").unwrap());
        Bridge {
            app,
            ingest,
            matrix,
            slack,
        }
    }

    /// Runs every due outbox job; each must succeed.
    async fn drain_outbox(&self) {
        while let Some(step) = run_once(&self.app).await.expect("store") {
            assert_eq!(
                step.outcome,
                StepOutcome::Done,
                "job {:?} did not succeed",
                step.job.spec
            );
        }
    }

    async fn tickets(&self) -> usize {
        self.app
            .store
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .len()
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every committed corpus file, by name.
fn committed_corpus() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("tests/corpus") {
        let path = entry.expect("corpus entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(&path).expect("corpus file"));
        }
    }
    assert!(files.len() >= 25, "the corpus shrank: {:?}", files.keys());
    files
}

/// 25 MB of attachment (base64, 76-column lines) after a short text.
fn mail_with_25_mb_attachment() -> Vec<u8> {
    const SIZE: usize = 25 * 1024 * 1024;
    let mut out = b"Message-ID: <big-attachment-1@customer.example>\r\n\
Date: Thu, 6 Jun 2024 09:00:00 +0000\r\n\
From: Vera <vera@customer.example>\r\n\
To: support@mailroom.example\r\n\
Subject: Full disk image attached\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"BIG\"\r\n\r\n\
--BIG\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
The disk image you asked for is attached.\r\n\
--BIG\r\nContent-Type: application/octet-stream; name=\"disk.img\"\r\n\
Content-Disposition: attachment; filename=\"disk.img\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    // "AAEC" encodes bytes 0, 1, 2: every 3 bytes of payload are 4 of base64.
    let line = "AAEC".repeat(19);
    let lines = SIZE / 57;
    for _ in 0..lines {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--BIG--\r\n");
    out
}

/// A Subject of about 1 MB, folded into 1,000-byte lines.
fn mail_with_1_mb_subject() -> Vec<u8> {
    let word = "overlong ";
    let mut subject = String::from("Subject: HUGE");
    for i in 0..(1024 * 1024 / word.len()) {
        if i % 100 == 99 {
            subject.push_str("\r\n ");
        }
        subject.push_str(word);
    }
    format!(
        "Message-ID: <huge-subject-1@customer.example>\r\n\
Date: Thu, 6 Jun 2024 10:00:00 +0000\r\n\
From: Walt <walt@customer.example>\r\n\
To: support@mailroom.example\r\n\
{subject}\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
The subject line is very long.\r\n"
    )
    .into_bytes()
}

/// A References header of about 1 MB: 25,000 ids, one line each.
fn mail_with_1_mb_references() -> Vec<u8> {
    let mut refs = String::from("References:");
    for i in 0..25_000 {
        refs.push_str(&format!(" <older-{i:05}-message-id@far-away.example>\r\n"));
    }
    format!(
        "Message-ID: <huge-references-1@customer.example>\r\n\
In-Reply-To: <older-24999-message-id@far-away.example>\r\n\
{refs}\
Date: Thu, 6 Jun 2024 11:00:00 +0000\r\n\
From: Xena <xena@customer.example>\r\n\
To: support@mailroom.example\r\n\
Subject: A thread with a long history\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
Answering at the end of a very long thread.\r\n"
    )
    .into_bytes()
}

/// What a teammate must see of one email in a rendering: who sent it, what
/// it is called, its text or a placeholder, its attachments, its problems.
fn assert_renders(name: &str, platform: &str, shown: &str, email: &EmailView) {
    let ctx = || format!("{name} in {platform}:\n{}", head(shown));
    // Markup escapes `<`, `>` and `&`; compare on text that has none.
    let plain_prefix = |s: &str, n: usize| -> String {
        s.chars()
            .take_while(|c| !matches!(c, '<' | '>' | '&' | '"' | '\'' | '\n'))
            .take(n)
            .collect()
    };
    assert!(
        shown.contains(email.from.address.as_str()),
        "sender missing: {}",
        ctx()
    );
    let subject = plain_prefix(&email.subject, 60);
    assert!(shown.contains(&subject), "subject missing: {}", ctx());
    let body = plain_prefix(email.body.trim(), 40);
    if body.trim().is_empty() {
        assert!(
            shown.contains("no text in this mail"),
            "an empty body needs a placeholder: {}",
            ctx()
        );
    } else {
        assert!(shown.contains(body.trim()), "body missing: {}", ctx());
    }
    // Posts list the first 30 and count the rest.
    if email.attachments.len() > 30 {
        assert!(
            shown.contains("more attachments"),
            "the rest uncounted: {}",
            ctx()
        );
    }
    for a in email.attachments.iter().take(30) {
        let shown_name = plain_prefix(&a.name, 60);
        assert!(
            shown.contains(&format!("📎 {shown_name}")),
            "attachment {} not listed: {}",
            a.name,
            ctx()
        );
    }
    for n in &email.notes {
        let note = plain_prefix(n, 30);
        assert!(shown.contains(&note), "note {n:?} not shown: {}", ctx());
    }
}

fn head(s: &str) -> String {
    s.chars().take(2_000).collect()
}

/// Matrix refuses events over 65,536 bytes; Slack a `text` over 40,000
/// characters and a message of more than 50 blocks.
fn assert_fits_the_platform(name: &str, post: &Post, platform: Platform) {
    match platform {
        Platform::Matrix => assert!(
            post.wire_bytes < 60 * 1024,
            "{name}: Matrix event of {} bytes",
            post.wire_bytes
        ),
        Platform::Slack => {
            // The notification text beside blocks is one line; without
            // blocks it is the message, up to Slack's 40,000 characters.
            let max = if post.has_blocks { 4_000 } else { 40_000 };
            assert!(
                post.markup.chars().count() <= max,
                "{name}: Slack text of {} chars",
                post.markup.chars().count()
            );
            assert!(
                post.wire_bytes < 200 * 1024,
                "{name}: Slack payload of {} bytes",
                post.wire_bytes
            );
        }
    }
}

#[tokio::test]
async fn every_corpus_mail_becomes_exactly_one_ticket_rendered_in_both_chats() {
    let bridge = Bridge::start().await;
    let mut mails: Vec<(String, Vec<u8>)> = committed_corpus().into_iter().collect();
    mails.push((
        "generated: 25 MB attachment".into(),
        mail_with_25_mb_attachment(),
    ));
    mails.push(("generated: 1 MB Subject".into(), mail_with_1_mb_subject()));
    mails.push((
        "generated: 1 MB References".into(),
        mail_with_1_mb_references(),
    ));

    let mut tickets: Vec<(String, TicketId, EmailView)> = Vec::new();
    for (name, raw) in &mails {
        let view = mailroom::mail::parse::parse_email(raw).view();
        let recorded = bridge
            .ingest
            .ingest(raw.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("{name}: ingest failed: {e}"));
        let Recorded::NewTicket { ticket, .. } = recorded else {
            panic!("{name}: expected a new ticket, got {recorded:?}");
        };
        tickets.push((name.clone(), ticket, view));
    }
    assert_eq!(bridge.tickets().await, mails.len(), "one ticket per mail");
    bridge.drain_outbox().await;

    for (chat, label) in [(&bridge.matrix, "Matrix"), (&bridge.slack, "Slack")] {
        let all = chat.posts();
        let posts: Vec<&Post> = all.iter().filter(|p| p.kind == PostKind::Root).collect();
        assert_eq!(
            posts.len(),
            mails.len(),
            "{label}: one root post per mail: {:?}",
            all.iter().map(|p| p.kind).collect::<Vec<_>>()
        );
        // Besides the roots, only notices: each a root that had to fall
        // back, or a file that could not be uploaded.
        for p in all.iter().filter(|p| p.kind != PostKind::Root) {
            assert_eq!(p.kind, PostKind::Notice, "{label}: {p:?}");
        }
        for (post, (name, ticket, view)) in posts.iter().zip(&tickets) {
            assert!(post.in_thread.is_none(), "{name}");
            assert!(
                post.plain.contains(&format!("#{}", ticket.get())),
                "{name}: ticket number missing in {label}"
            );
            assert!(
                post.mentions.is_empty(),
                "{name}: mentions {:?}",
                post.mentions
            );
            assert_fits_the_platform(name, post, chat.platform);
            assert_renders(name, label, &post.plain, view);
            if chat.platform == Platform::Matrix && post.has_blocks {
                assert_renders(name, "Matrix HTML", &post.markup, view);
            }
        }
    }
    // The mail whose formatted rendering is over Matrix's event limit is
    // posted as plain text, and the thread says what was left out.
    let over = tickets
        .iter()
        .position(|(n, ..)| n == "rendering_over_event_limit.eml")
        .expect("in the corpus");
    let matrix_posts = bridge.matrix.posts();
    let roots: Vec<&Post> = matrix_posts
        .iter()
        .filter(|p| p.kind == PostKind::Root)
        .collect();
    assert!(!roots[over].has_blocks, "posted without HTML");
    let thread = format!(
        "t{}",
        matrix_posts
            .iter()
            .position(|p| std::ptr::eq(p, roots[over]))
            .unwrap()
            + 1
    );
    let notices: Vec<&Post> = matrix_posts
        .iter()
        .filter(|p| p.kind == PostKind::Notice && p.in_thread.as_deref() == Some(&thread))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].plain.contains("as plain text") && notices[0].plain.contains("too large"),
        "{}",
        notices[0].plain
    );
    // Slack takes its full rendering (sections are cut to Slack's limits).
    let slack_roots: Vec<Post> = bridge
        .slack
        .posts()
        .into_iter()
        .filter(|p| p.kind == PostKind::Root)
        .collect();
    assert!(slack_roots[over].has_blocks);

    // The two mails sharing a Message-ID are both kept, each its own ticket.
    let by_name = |n: &str| {
        tickets
            .iter()
            .find(|(name, ..)| name == n)
            .map(|(_, t, v)| (*t, v.clone()))
            .unwrap()
    };
    let (first, first_view) = by_name("duplicate_id_first.eml");
    let (second, second_view) = by_name("duplicate_id_second.eml");
    assert_ne!(first, second);
    assert!(first_view.body.contains("kettle"));
    assert!(second_view.body.contains("order 77"));

    // The 25 MB attachment is above the upload cap: listed, not uploaded.
    let big = roots[tickets
        .iter()
        .position(|(n, ..)| n == "generated: 25 MB attachment")
        .unwrap()]
    .clone();
    assert!(
        big.plain
            .contains("📎 disk.img (application/octet-stream, 25.0 MB)")
    );
    assert!(big.files.is_empty(), "{:?}", big.files);
    // Files under the cap are uploaded into the thread.
    let tnef = &slack_roots[tickets
        .iter()
        .position(|(n, ..)| n == "tnef_winmail.eml")
        .unwrap()];
    assert_eq!(tnef.files, vec![("winmail.dat".to_owned(), 75)]);
}

fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The tag names in an HTML string (`<p>`, `</b>` → `p`, `b`).
fn html_tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|rest| {
            rest.trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .collect()
}

#[tokio::test]
async fn hostile_html_mail_is_inert_text_in_both_chats() {
    let bridge = Bridge::start().await;
    let raw = corpus_file("hostile_html.eml");
    bridge.ingest.ingest(raw.clone(), None).await.unwrap();
    bridge.drain_outbox().await;

    let matrix = &bridge.matrix.posts()[0];
    // Only the markup the renderer itself writes; every tag, handler and
    // link of the mail is text.
    for tag in html_tags(&matrix.markup) {
        assert!(
            ["p", "br", "b", "strong", "em"].contains(&tag.as_str()),
            "tag <{tag}> reached the room: {}",
            matrix.markup
        );
    }
    for attribute in ["href", "src=", "onerror=", "onload=", "style="] {
        let in_tags = matrix
            .markup
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or_default())
            .any(|t| t.contains(attribute));
        assert!(!in_tags, "{attribute} in a tag: {}", matrix.markup);
    }
    assert!(matrix.mentions.is_empty());
    // The scripts and styles are gone, not shown as text either.
    for gone in ["alert('head')", "css.gif", "steal()"] {
        assert!(!matrix.plain.contains(gone), "{gone}: {}", matrix.plain);
    }
    // The link whose text names the bank shows where it really goes.
    assert!(
        matrix.plain.contains("evil.attacker.example/login"),
        "the real target of a spoofed link is hidden: {}",
        matrix.plain
    );

    let slack = &bridge.slack.posts()[0];
    // Slack gives `<…>` meaning in mrkdwn (links, `<!channel>`, `<@U…>`):
    // none may remain. (The header is plain_text, shown literally.)
    assert!(!slack.mrkdwn.contains('<'), "{}", slack.mrkdwn);
    assert!(!slack.markup.contains('<'), "{}", slack.markup);
    assert!(slack.mentions.is_empty(), "{:?}", slack.mentions);
    assert!(slack.plain.contains("&lt;!channel&gt;"), "{}", slack.plain);
    assert!(
        slack.plain.contains("evil.attacker.example/login"),
        "{}",
        slack.plain
    );
}

#[tokio::test]
async fn automatic_mail_never_reopens_pings_the_owner_or_counts_as_the_customer_writing() {
    let bridge = Bridge::start().await;
    let store = bridge.app.store.clone();
    let question = b"Message-ID: <q1@customer.example>\r\n\
From: Lena <lena@customer.example>\r\nTo: support@mailroom.example\r\n\
Subject: Question about my order\r\n\r\nWhere is my order?\r\n";
    let Recorded::NewTicket { ticket, .. } =
        bridge.ingest.ingest(question.to_vec(), None).await.unwrap()
    else {
        panic!("the question opens a ticket");
    };
    bridge.drain_outbox().await;
    let alice = Agent::parse("@alice:localhost").unwrap();
    for event in [TicketEvent::Claim(alice.clone()), TicketEvent::MarkPending] {
        store
            .apply(ticket, &Actor::Agent(alice.clone()), &event, &[], 1)
            .await
            .unwrap();
    }
    let before = store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(before.state.status(), Status::Pending);
    let posts_before = bridge.matrix.posts().len();

    // The customer's out-of-office, her list's digest and a vacation
    // notice, all answering the ticket; and a bounce of our reply.
    let answering = |headers: &str, id: &str| {
        format!(
            "Message-ID: <{id}@customer.example>\r\nIn-Reply-To: <q1@customer.example>\r\n\
From: Lena <lena@customer.example>\r\nTo: support@mailroom.example\r\n\
Subject: Re: Question about my order\r\n{headers}\r\nautomatic text\r\n"
        )
        .into_bytes()
    };
    let automatic = [
        answering("Auto-Submitted: auto-replied\r\n", "ooo"),
        answering("List-Id: <orders.customer.example>\r\n", "list"),
        answering("Precedence: bulk\r\n", "bulk"),
        answering("X-Autoreply: yes\r\n", "xauto"),
    ];
    for raw in &automatic {
        let recorded = bridge.ingest.ingest(raw.clone(), None).await.unwrap();
        assert!(
            matches!(
                recorded,
                Recorded::FollowUp {
                    reopened: false,
                    ..
                }
            ),
            "{recorded:?}"
        );
    }
    let bounce = corpus_file("dsn_bounce.eml");
    let Recorded::NewTicket {
        ticket: bounce_ticket,
        ..
    } = bridge.ingest.ingest(bounce, None).await.unwrap()
    else {
        panic!("a bounce of a mail this mailbox never sent joins no ticket");
    };
    bridge.drain_outbox().await;

    let after = store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(
        after.state, before.state,
        "automatic mail changed the state"
    );
    assert_eq!(
        after.last_customer_at_ms, before.last_customer_at_ms,
        "automatic mail counted as the customer writing (stale-reply guard)"
    );
    let bounced = store.ticket(bounce_ticket).await.unwrap().unwrap();
    assert_eq!(bounced.state.status(), Status::Open);
    let audit = store.audit_log(ticket).await.unwrap();
    let filed = audit
        .iter()
        .filter(|a| a.action == "automatic-mail")
        .count();
    assert_eq!(filed, automatic.len(), "{audit:?}");
    assert!(!audit.iter().any(|a| a.action == "reopen"), "{audit:?}");

    for (chat, owner_shown) in [
        (&bridge.matrix, "@alice:localhost"),
        (&bridge.slack, "@alice:localhost"),
    ] {
        let new_posts = &chat.posts()[posts_before..];
        let kinds: Vec<PostKind> = new_posts.iter().map(|p| p.kind).collect();
        // Filed in the thread, the bounce's own root; no status change.
        assert_eq!(
            kinds,
            [
                PostKind::FollowUp,
                PostKind::FollowUp,
                PostKind::FollowUp,
                PostKind::FollowUp,
                PostKind::Root
            ],
            "{:?}",
            chat.platform
        );
        for p in new_posts {
            assert!(
                p.mentions.is_empty(),
                "{:?} pinged {:?}",
                chat.platform,
                p.mentions
            );
            assert!(
                !p.plain.contains(owner_shown),
                "{:?}: {}",
                chat.platform,
                p.plain
            );
        }
    }

    // The same answer written by the customer herself does all of it.
    let human = answering("", "human");
    let recorded = bridge.ingest.ingest(human, None).await.unwrap();
    assert!(
        matches!(recorded, Recorded::FollowUp { reopened: true, .. }),
        "{recorded:?}"
    );
    bridge.drain_outbox().await;
    let reopened = store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(reopened.state.status(), Status::Claimed);
    assert!(reopened.last_customer_at_ms > before.last_customer_at_ms);
    let last_follow_up = bridge
        .matrix
        .posts()
        .into_iter()
        .rfind(|p| p.kind == PostKind::FollowUp)
        .unwrap();
    assert_eq!(last_follow_up.mentions, ["@alice:localhost"]);
    assert!(
        bridge
            .matrix
            .posts()
            .iter()
            .any(|p| p.kind == PostKind::CardUpdate),
        "the reopen updates the root's status"
    );
}
