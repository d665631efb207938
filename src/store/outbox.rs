//! The outbox's vocabulary: a [`Job`] is a [`JobSpec`] (what to do, stored
//! as JSON) with its [`JobState`]; a worker ends it with a [`JobOutcome`] or
//! a [`Settlement`]. Queries: `sql/outbox.rs`.

use serde::{Deserialize, Serialize};

use crate::domain::chat::{ChatThread, Platform};
use crate::domain::ids::TicketId;

/// Work the outbox worker does after a commit. Serialized as JSON in the
/// outbox row, so adding a variant needs no migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Post an email to the ticket's chat thread (the root message for the
    /// first email, a thread reply for the others). `room`: for a new
    /// ticket's root, where it goes (a routing rule's room, else its
    /// mailbox's room or channel, decided when the mail was recorded); none
    /// for a follow-up (it goes to the ticket's thread) and in jobs queued
    /// by older versions (the mailbox's room at the time of the post).
    ChatPost {
        platform: Platform,
        email_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Post a reply written outside mailroom (found in the Sent folder)
    /// into the ticket's thread: "Replied from the mailbox by …" and its text.
    ChatSentReply { platform: Platform, email_id: i64 },
    /// Refresh the status line of the ticket's root message.
    ChatStatus { platform: Platform },
    /// Tell the thread something (a failure, a refusal).
    ChatNotice { platform: Platform, text: String },
    /// Tell the thread something that calls on people by name (an
    /// auto-assignment, a snooze's end): `mentions` (agent ids, as text,
    /// which `text` names) are notified where the platform can.
    ChatMention {
        platform: Platform,
        text: String,
        mentions: Vec<String>,
    },
    /// Tell a room something outside any ticket (the mailbox watchdog).
    ChatRoomNotice {
        platform: Platform,
        room: String,
        text: String,
    },
    /// Tell a room something that calls people: the room (`@room`,
    /// `<!channel>`) and/or users by their id on `platform` (an SLA breach).
    ChatAlert {
        platform: Platform,
        room: String,
        text: String,
        #[serde(default)]
        room_mention: bool,
        #[serde(default)]
        users: Vec<String>,
    },
    /// Upload one file of an email into the ticket's thread (queued by the
    /// post of that email, once it is in the room).
    ChatFile {
        platform: Platform,
        email_id: i64,
        part: FilePart,
    },
    /// A ticket's SLA timer: at `due_ms` (a nudge or breach instant when
    /// queued) the ticket's clock is computed again; a nudge or breach
    /// not yet said is queued as chat notices, and the next check.
    SlaCheck { due_ms: i64 },
    /// Send a queued reply over SMTP.
    SendReply { email_id: i64 },
    /// After a send: APPEND the reply to the Sent folder and flag the answered
    /// original `\Answered`.
    FileSent { email_id: i64 },
    /// Timer: wake the ticket from the snooze that ends at `due_ms`. Does
    /// nothing if the snooze was changed, cancelled or woken meanwhile.
    SnoozeWake { due_ms: i64 },
    /// Timer: remind the team on `platform` that the ticket is still
    /// unclaimed (reminder `round`, from 1). Does nothing if it was claimed.
    UnclaimedNudge {
        platform: Platform,
        round: u32,
        due_ms: i64,
    },
    /// Timer: post `mailbox`'s daily digest in its room on `platform`,
    /// then queue the next one.
    Digest {
        mailbox: String,
        platform: Platform,
        due_ms: i64,
    },
}

impl JobSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::ChatPost { .. } => "chat_post",
            JobSpec::ChatSentReply { .. } => "chat_sent_reply",
            JobSpec::ChatStatus { .. } => "chat_status",
            JobSpec::ChatNotice { .. } => "chat_notice",
            JobSpec::ChatMention { .. } => "chat_mention",
            JobSpec::ChatRoomNotice { .. } => "chat_room_notice",
            JobSpec::ChatAlert { .. } => "chat_alert",
            JobSpec::ChatFile { .. } => "chat_file",
            JobSpec::SendReply { .. } => "send_reply",
            JobSpec::FileSent { .. } => "file_sent",
            JobSpec::SnoozeWake { .. } => "snooze_wake",
            JobSpec::UnclaimedNudge { .. } => "unclaimed_nudge",
            JobSpec::Digest { .. } => "digest",
            JobSpec::SlaCheck { .. } => "sla_check",
        }
    }

    /// Jobs in one lane run one at a time, in order; lanes run independently.
    /// Chat jobs run in the lane of their room (`chat:<platform>:<room>`), so
    /// a busy room never holds up another; a ticket's chat jobs all go to
    /// the lane of the room its thread is (or will be) in, which the store
    /// decides when it queues them ([`JobSpec::ticket_chat`]): this gives
    /// the lane of jobs that name no room as the platform's shared lane
    /// ([`legacy_chat_lane`], also the lane of jobs queued before lanes
    /// were per room). Each ticket's mail keeps its own lane. A timer is due
    /// hours ahead, and a lane's later jobs wait for its head: so each timer
    /// has a lane no other job shares, and what it says goes out as an
    /// ordinary chat job when it fires.
    pub fn lane(&self, ticket: Option<TicketId>) -> String {
        let t = ticket.map(|t| t.get()).unwrap_or(0);
        match self {
            JobSpec::ChatRoomNotice { platform, room, .. }
            | JobSpec::ChatAlert { platform, room, .. } => chat_lane(*platform, room),
            JobSpec::ChatPost {
                platform,
                room: Some(room),
                ..
            } => chat_lane(*platform, room),
            JobSpec::ChatPost { platform, .. }
            | JobSpec::ChatSentReply { platform, .. }
            | JobSpec::ChatStatus { platform }
            | JobSpec::ChatNotice { platform, .. }
            | JobSpec::ChatMention { platform, .. }
            | JobSpec::ChatFile { platform, .. } => legacy_chat_lane(*platform),
            JobSpec::SendReply { .. } | JobSpec::FileSent { .. } => format!("mail:{t}"),
            JobSpec::SnoozeWake { due_ms } => format!("timer:snooze:{t}:{due_ms}"),
            JobSpec::UnclaimedNudge {
                platform, round, ..
            } => format!("timer:nudge:{t}:{}:{round}", platform.as_str()),
            JobSpec::Digest {
                mailbox,
                platform,
                due_ms,
            } => format!("timer:digest:{mailbox}:{}:{due_ms}", platform.as_str()),
            // A lane per timer: a check due in hours must not hold up any
            // other job, and two checks of one ticket never wait on each other.
            JobSpec::SlaCheck { due_ms } => format!("timer:sla:{t}:{due_ms}"),
        }
    }

    /// For a chat job about a ticket's thread: its platform. Such a job
    /// goes to the lane its ticket's chat jobs on that platform already
    /// wait in, else to the lane of the thread's room, else to
    /// [`JobSpec::lane`]. So one ticket's chat jobs never run out of order,
    /// even when its thread's room is learnt (the root posted) while
    /// later jobs are queued.
    pub fn ticket_chat(&self) -> Option<Platform> {
        match self {
            JobSpec::ChatPost { platform, .. }
            | JobSpec::ChatSentReply { platform, .. }
            | JobSpec::ChatStatus { platform }
            | JobSpec::ChatNotice { platform, .. }
            | JobSpec::ChatMention { platform, .. }
            | JobSpec::ChatFile { platform, .. } => Some(*platform),
            JobSpec::ChatRoomNotice { .. }
            | JobSpec::ChatAlert { .. }
            | JobSpec::SendReply { .. }
            | JobSpec::FileSent { .. }
            | JobSpec::SnoozeWake { .. }
            | JobSpec::UnclaimedNudge { .. }
            | JobSpec::Digest { .. }
            | JobSpec::SlaCheck { .. } => None,
        }
    }

    /// Whether running this job twice could repeat a visible effect nobody can
    /// take back (a customer email). Such a job found half-done after a crash
    /// is not retried (at-most-once); everything else is (at-least-once, made
    /// idempotent by its handler).
    pub fn at_most_once(&self) -> bool {
        matches!(self, JobSpec::SendReply { .. })
    }
}

/// Which file of an email a [`JobSpec::ChatFile`] uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "file", rename_all = "snake_case")]
pub enum FilePart {
    /// The email's whole text, when the post could not show all of it.
    FullText,
    /// The attachment at this index of the parsed email's attachment list.
    Attachment { index: usize },
}

/// The lane of a room's (or Slack channel's) chat jobs. Slack paces posts
/// per channel, and a room's jobs run one at a time in its lane: so one
/// busy room's queue, or its rate limit, never delays another room.
pub fn chat_lane(platform: Platform, room: &str) -> String {
    format!("chat:{}:{room}", platform.as_str())
}

/// The platform's shared chat lane: every chat job's lane before lanes
/// were per room (jobs queued by an older version still wait there, and
/// run in order), and the lane of a ticket's chat job whose room is not
/// known (a follow-up of a ticket whose root could not be posted).
pub fn legacy_chat_lane(platform: Platform) -> String {
    format!("chat:{}", platform.as_str())
}

impl JobSpec {
    /// The platform a chat job talks to.
    pub fn platform(&self) -> Option<Platform> {
        match self {
            JobSpec::ChatPost { platform, .. }
            | JobSpec::ChatSentReply { platform, .. }
            | JobSpec::ChatStatus { platform }
            | JobSpec::ChatNotice { platform, .. }
            | JobSpec::ChatMention { platform, .. }
            | JobSpec::ChatRoomNotice { platform, .. }
            | JobSpec::ChatAlert { platform, .. }
            | JobSpec::ChatFile { platform, .. } => Some(*platform),
            // Timers talk to chat only through the chat jobs they queue.
            JobSpec::SendReply { .. }
            | JobSpec::FileSent { .. }
            | JobSpec::SnoozeWake { .. }
            | JobSpec::UnclaimedNudge { .. }
            | JobSpec::Digest { .. }
            | JobSpec::SlaCheck { .. } => None,
        }
    }
}

/// How a job ended, and what it leaves behind in the same transaction: the
/// ticket's chat thread (a root just posted), follow-on jobs (its files, a
/// notice) and an audit line. So a crash never leaves a posted root
/// unrecorded, nor its files or notices unqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: JobOutcome,
    pub thread: Option<ChatThread>,
    /// Queued for the job's ticket, due at once, in this order.
    pub follow_ons: Vec<JobSpec>,
    /// `(action, details)` for the job's ticket, by the system.
    pub audit: Option<(&'static str, String)>,
    /// Queued for the job's ticket, each due at its time (a timer's next
    /// round).
    pub timers: Vec<(JobSpec, i64)>,
    /// A mark recorded with the settlement; if it was recorded before, the
    /// follow-ons and the audit line are left out. So a timer that runs
    /// twice (two timers for one digest, a crash before the settlement)
    /// says its piece once.
    pub once: Option<String>,
}

impl Settlement {
    pub fn new(outcome: JobOutcome) -> Settlement {
        Settlement {
            outcome,
            thread: None,
            follow_ons: Vec::new(),
            audit: None,
            timers: Vec::new(),
            once: None,
        }
    }
}

/// What `mailroom outbox retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// Queued again, due now, with its attempts reset.
    Queued(Job),
    NoSuchJob,
    /// Only failed jobs are retried; this one is not.
    NotFailed(JobState),
    /// A reply is never re-sent from the outbox (its failure was told in
    /// the thread; a new `!reply` is the way to send it again).
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    InFlight,
    Done,
    Failed,
    /// Interrupted mid-send: it may or may not have reached the server.
    Uncertain,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InFlight => "in_flight",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Uncertain => "uncertain",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Pending,
            JobState::InFlight,
            JobState::Done,
            JobState::Failed,
            JobState::Uncertain,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub ticket: Option<TicketId>,
    pub spec: JobSpec,
    pub state: JobState,
    /// Attempts made so far, including the one in flight.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub not_before_ms: i64,
    /// When it was queued (for latency metrics).
    pub created_at_ms: i64,
    /// An earlier attempt may have taken effect unanswered: it was in
    /// flight when mailroom stopped (set by `recover_in_flight`).
    pub maybe_done: bool,
}

/// How a job attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    /// Try again at this time.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Give up; the error is kept for the audit and the operator.
    Failed {
        error: String,
    },
}
