//! A chat platform for the fault suite that records what each ticket's
//! thread is told.

use std::sync::Mutex;

use async_trait::async_trait;
use mailroom::chat::{ChatError, ChatPlatform, FileUpload, Member, TicketCard};
use mailroom::domain::chat::{ChatThread, Platform, SharedFile};
use mailroom::domain::ids::{Agent, TicketId};
use mailroom::domain::render::{EmailView, Rendering};

#[derive(Default)]
pub(crate) struct RecordingChat {
    notices: Mutex<Vec<(TicketId, String)>>,
}

impl RecordingChat {
    pub(crate) fn notices(&self, ticket: TicketId) -> Vec<String> {
        self.notices
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == ticket)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

fn thread_ticket(thread: &ChatThread) -> TicketId {
    TicketId::new(
        thread
            .thread_ref
            .trim_start_matches("$root-")
            .parse()
            .unwrap(),
    )
}

#[async_trait]
impl ChatPlatform for RecordingChat {
    fn platform(&self) -> Platform {
        Platform::Matrix
    }

    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        _email: &EmailView,
        _rendering: Rendering,
        _key: &str,
    ) -> Result<ChatThread, ChatError> {
        Ok(ChatThread {
            platform: Platform::Matrix,
            room: room.to_owned(),
            thread_ref: format!("$root-{}", card.ticket.get()),
        })
    }

    async fn post_follow_up(
        &self,
        _thread: &ChatThread,
        _ticket: TicketId,
        _email: &EmailView,
        _owner: Option<&Agent>,
        _rendering: Rendering,
        _key: &str,
    ) -> Result<(), ChatError> {
        Ok(())
    }

    async fn update_card(
        &self,
        _thread: &ChatThread,
        _card: &TicketCard<'_>,
        _email: &EmailView,
        _rendering: Rendering,
    ) -> Result<(), ChatError> {
        Ok(())
    }

    async fn upload(
        &self,
        _thread: &ChatThread,
        file: FileUpload,
        _key: &str,
    ) -> Result<(), ChatError> {
        panic!("unexpected upload of {} in the fault suite", file.name);
    }

    fn body_limit(&self) -> usize {
        12_000
    }

    async fn notice(&self, thread: &ChatThread, text: &str, _key: &str) -> Result<(), ChatError> {
        self.notices
            .lock()
            .unwrap()
            .push((thread_ticket(thread), text.to_owned()));
        Ok(())
    }

    async fn room_notice(&self, _room: &str, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }

    async fn room_alert(
        &self,
        _room: &str,
        text: &str,
        _room_mention: bool,
        _users: &[String],
    ) -> Result<(), ChatError> {
        panic!("no SLA is configured in the fault suite: unexpected alert {text}");
    }

    async fn download(&self, _file: &SharedFile) -> Result<Vec<u8>, ChatError> {
        Err(ChatError::Permanent {
            message: "no files in the fault suite".into(),
        })
    }

    async fn member(&self, _room: &str, _agent: &Agent) -> Result<Option<Member>, ChatError> {
        Ok(Some(Member {
            power: 0,
            display_name: None,
        }))
    }
}
