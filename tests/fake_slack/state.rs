//! Everything the fake remembers, behind one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::delivery::{Envelope, Inflight};
use super::util::{rand_id_chars, unix_micros};
use super::{Ephemeral, FileInfo, Message};

pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub is_bot: bool,
}

pub(crate) struct Channel {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    pub created: i64,
}

#[derive(Clone)]
pub(crate) struct StoredMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub bot: bool,
    pub text: String,
    pub blocks: Value,
    pub files: Vec<String>,
    pub edits: u32,
    pub metadata: Option<Value>,
    pub subtype: Option<String>,
    /// (user, ts) of the last edit.
    pub edited: Option<(String, String)>,
    /// reaction name -> users, in the order they reacted.
    pub reactions: BTreeMap<String, Vec<String>>,
    pub client_msg_id: Option<String>,
}

pub(crate) struct StoredFile {
    pub id: String,
    pub name: String,
    pub title: String,
    pub mimetype: String,
    pub filetype: String,
    pub declared_len: usize,
    pub data: Option<Vec<u8>>,
    pub user: String,
    pub created: i64,
    /// Shared by files.completeUploadExternal (or uploaded by a teammate).
    pub completed: bool,
}

pub(crate) struct Trigger {
    pub user: String,
    pub issued: Instant,
    pub used: bool,
}

pub(crate) struct ResponseUrl {
    pub user: String,
    pub channel: String,
    pub uses: u32,
    pub issued: Instant,
}

pub(crate) struct ViewRec {
    pub view_id: String,
    pub user: String,
    pub view: Value,
    /// Still on the user's screen (a submission closes it unless the app
    /// answers with `response_action` errors/update/push).
    pub open: bool,
}

pub(crate) enum ConnCmd {
    Frame(String),
    Disconnect(String),
    Drop,
}

pub(crate) struct Bucket {
    pub tokens: f64,
    pub last: Instant,
}

#[derive(Default)]
pub(crate) struct State {
    pub users: BTreeMap<String, User>,
    /// user id -> what users.getPresence and dnd.info answer.
    pub availability: HashMap<String, super::presence::Availability>,
    pub channels: BTreeMap<String, Channel>,
    /// channel id -> messages in ts order.
    pub messages: HashMap<String, Vec<StoredMessage>>,
    pub ephemerals: Vec<Ephemeral>,
    pub files: HashMap<String, StoredFile>,
    pub triggers: HashMap<String, Trigger>,
    pub response_urls: HashMap<String, ResponseUrl>,
    pub views: Vec<ViewRec>,
    /// Each user's App Home tab as last published (views.publish).
    pub homes: HashMap<String, ViewRec>,
    pub calls: HashMap<String, usize>,
    /// method -> (remaining count, Retry-After seconds)
    pub injected_429: HashMap<String, (u32, u64)>,
    /// method -> remaining count of injected HTTP 500s
    pub injected_500: HashMap<String, u32>,
    /// method -> (remaining count, Slack error code): `ok: false` answers
    pub injected_errors: HashMap<String, (u32, String)>,
    /// method -> remaining count of calls that are carried out but whose
    /// answer is held back (until released, or the caller gives up)
    pub held: HashMap<String, u32>,
    /// How many answers were held back so far.
    pub answers_held: usize,
    pub buckets: HashMap<String, Bucket>,
    /// method -> start of its current one-minute window.
    pub minute_windows: HashMap<String, Instant>,
    /// Socket Mode tickets -> used?
    pub tickets: HashMap<String, bool>,
    /// Connections that may be given envelopes.
    pub conns: BTreeMap<u64, UnboundedSender<ConnCmd>>,
    /// Connections whose task still runs (includes ones being closed).
    pub live_conns: BTreeSet<u64>,
    pub next_conn_id: u64,
    pub round_robin: usize,
    pub socket_connections_opened: usize,
    pub outbox: VecDeque<Envelope>,
    pub inflight: HashMap<String, Inflight>,
    pub events_url: Option<String>,
    /// "channel/thread_ts" -> (ts, user) of its replies, in order.
    pub replies: HashMap<String, Vec<(String, String)>>,
    last_ts_micros: u64,
    seq: u64,
}

impl State {
    /// A fresh, strictly increasing Slack timestamp ("1732350000.000100").
    pub fn next_ts(&mut self) -> String {
        let v = unix_micros().max(self.last_ts_micros + 1);
        self.last_ts_micros = v;
        format!("{}.{:06}", v / 1_000_000, v % 1_000_000)
    }

    /// An ID like Slack's: prefix + 10 upper-case alphanumerics, unique.
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}0{}{:03}", rand_id_chars(6), self.seq % 1000)
    }

    pub fn channel_id(&self, channel: &str) -> Option<String> {
        if self.channels.contains_key(channel) {
            return Some(channel.to_string());
        }
        let name = channel.trim_start_matches('#');
        self.channels
            .values()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
    }

    pub fn find_message(&self, channel: &str, ts: &str) -> Option<&StoredMessage> {
        self.messages.get(channel)?.iter().find(|m| m.ts == ts)
    }

    pub fn find_message_mut(&mut self, channel: &str, ts: &str) -> Option<&mut StoredMessage> {
        self.messages
            .get_mut(channel)?
            .iter_mut()
            .find(|m| m.ts == ts)
    }

    pub fn push_message(&mut self, m: StoredMessage) {
        if let Some(t) = m.thread_ts.as_ref().filter(|t| **t != m.ts) {
            self.replies
                .entry(format!("{}/{t}", m.channel))
                .or_default()
                .push((m.ts.clone(), m.user.clone()));
        }
        self.messages.entry(m.channel.clone()).or_default().push(m);
    }

    pub fn file_info(&self, id: &str) -> Option<FileInfo> {
        self.files.get(id).map(|f| FileInfo {
            id: f.id.clone(),
            name: f.name.clone(),
            title: f.title.clone(),
            mimetype: f.mimetype.clone(),
            data: f.data.clone().unwrap_or_default(),
        })
    }

    pub fn public_message(&self, m: &StoredMessage) -> Message {
        Message {
            ts: m.ts.clone(),
            thread_ts: m.thread_ts.clone(),
            user: m.user.clone(),
            bot: m.bot,
            text: m.text.clone(),
            blocks: m.blocks.clone(),
            files: m.files.iter().filter_map(|f| self.file_info(f)).collect(),
            edits: m.edits,
            metadata: m.metadata.clone(),
        }
    }
}
