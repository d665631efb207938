//! Sending: posts with stable transaction ids, uploads into a thread, and
//! the [`ChatPlatform`] implementation the outbox drives.

use async_trait::async_trait;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{
    Relation, ReplacementMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::room::power_levels::UserPowerLevel;
use matrix_sdk::ruma::{OwnedEventId, OwnedTransactionId, OwnedUserId};

use super::render::{MAX_BODY_CHARS, follow_up_content, root_content};
use super::render::{escape_html, text_block};
use super::{MatrixChat, classify, matrix_thread, permanent, thread_root};
use crate::chat::{ChatError, ChatPlatform, FileUpload, Member, TicketCard};
use crate::domain::board::Board;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::{EmailView, Rendering};

pub(super) fn in_thread(
    mut content: RoomMessageEventContent,
    root: &OwnedEventId,
) -> RoomMessageEventContent {
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
    content
}

impl MatrixChat {
    pub(super) async fn send(
        &self,
        room: &Room,
        content: RoomMessageEventContent,
        key: Option<&str>,
    ) -> Result<OwnedEventId, ChatError> {
        let mut req = room.send(content);
        if let Some(k) = key {
            // A stable transaction id: if the outbox retries a post whose first
            // attempt did reach the server, the homeserver returns the same
            // event instead of posting twice.
            req = req.with_transaction_id(OwnedTransactionId::from(k.to_owned()));
        }
        let res = req.await.map_err(classify)?;
        Ok(res.response.event_id)
    }

    /// Uploads one file into the thread of `root`, with a transaction id
    /// derived from the job's, so a retried job does not post it twice.
    pub(super) async fn upload_into_thread(
        &self,
        room: &Room,
        root: &OwnedEventId,
        file: FileUpload,
        key: &str,
    ) -> Result<(), ChatError> {
        use matrix_sdk::attachment::AttachmentConfig;
        use matrix_sdk::room::reply::{EnforceThread, Reply};
        use matrix_sdk::ruma::events::room::message::{AddMentions, ReplyWithinThread};
        let mime: mime::Mime = file
            .content_type
            .parse()
            .unwrap_or(mime::APPLICATION_OCTET_STREAM);
        let mut config = AttachmentConfig::new().txn_id(OwnedTransactionId::from(key.to_owned()));
        config.reply = Some(Reply {
            event_id: root.clone(),
            enforce_thread: EnforceThread::Threaded(ReplyWithinThread::No),
            add_mentions: AddMentions::No,
        });
        // The file is moved into the upload, not copied: a 25 MB attachment
        // should be in memory as few times as possible.
        room.send_attachment(file.name, &mime, file.data, config)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl ChatPlatform for MatrixChat {
    fn platform(&self) -> Platform {
        Platform::Matrix
    }

    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<ChatThread, ChatError> {
        let r = self.room(room)?;
        let event_id = self
            .send(
                &r,
                root_content(card, email, rendering),
                Some(idempotency_key),
            )
            .await?;
        self.posted();
        Ok(matrix_thread(r.room_id(), &event_id))
    }

    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        ticket: TicketId,
        email: &EmailView,
        owner: Option<&Agent>,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = follow_up_content(ticket, email, owner, rendering);
        self.send(&r, in_thread(content, &root), Some(idempotency_key))
            .await?;
        self.posted();
        Ok(())
    }

    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = root_content(card, email, rendering)
            .make_replacement(ReplacementMetadata::new(root, None));
        self.send(&r, content, None).await?;
        Ok(())
    }

    async fn upload(
        &self,
        thread: &ChatThread,
        file: FileUpload,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        self.upload_into_thread(&r, &root, file, idempotency_key)
            .await
    }

    fn body_limit(&self) -> usize {
        MAX_BODY_CHARS
    }

    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = RoomMessageEventContent::notice_html(text, text_block(text));
        self.send(&r, in_thread(content, &root), Some(idempotency_key))
            .await?;
        Ok(())
    }

    async fn mention(
        &self,
        thread: &ChatThread,
        text: &str,
        mention: &[Agent],
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = super::render::mention_message(text, mention);
        self.send(&r, in_thread(content, &root), Some(idempotency_key))
            .await?;
        Ok(())
    }

    /// `GET /presence/{userId}/status`. A homeserver with presence off
    /// answers "offline" with no last activity for everyone: that tells
    /// nothing, so only a state with a last activity (or "unavailable")
    /// counts.
    async fn availability(
        &self,
        agent: &Agent,
    ) -> Result<Option<crate::chat::Availability>, ChatError> {
        use crate::chat::Availability;
        use matrix_sdk::ruma::api::client::presence::get_presence;
        use matrix_sdk::ruma::presence::PresenceState;
        let Ok(user) = OwnedUserId::try_from(agent.as_str()) else {
            return Ok(None);
        };
        let r = match self.client.send(get_presence::v3::Request::new(user)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%agent, error = %e, "matrix: presence not told");
                return Ok(None);
            }
        };
        Ok(match r.presence {
            PresenceState::Unavailable => {
                Some(Availability::Unavailable("unavailable on Matrix".into()))
            }
            PresenceState::Offline if r.last_active_ago.is_some() => {
                Some(Availability::Unavailable("offline on Matrix".into()))
            }
            PresenceState::Online => Some(Availability::Available),
            _ => None,
        })
    }

    async fn room_notice(&self, room: &str, text: &str) -> Result<(), ChatError> {
        let r = self.room(room)?;
        let content = RoomMessageEventContent::notice_html(text, text_block(text));
        self.send(&r, content, None).await?;
        Ok(())
    }

    async fn room_alert(
        &self,
        room: &str,
        text: &str,
        room_mention: bool,
        users: &[String],
    ) -> Result<(), ChatError> {
        use matrix_sdk::ruma::events::Mentions;
        let r = self.room(room)?;
        let (mut body, mut html) = (String::new(), String::new());
        if room_mention {
            body.push_str("@room ");
            html.push_str("@room ");
        }
        let mut ids = Vec::new();
        for u in users {
            let Ok(id) = OwnedUserId::try_from(u.as_str()) else {
                continue;
            };
            body.push_str(&format!("{id} "));
            html.push_str(&format!(
                "<a href=\"https://matrix.to/#/{id}\">{}</a> ",
                super::render::escape_html(id.as_str())
            ));
            ids.push(id);
        }
        body.push_str(text);
        html.push_str(&text_block(text));
        // A text message, not a notice: clients never notify for notices
        // (the `.m.rule.suppress_notices` push rule), and a breach must.
        let mut content = RoomMessageEventContent::text_html(body, html);
        let mut mentions = Mentions::with_user_ids(ids);
        mentions.room = room_mention;
        content.mentions = Some(mentions);
        self.send(&r, content, None).await?;
        Ok(())
    }

    async fn room_table(&self, room: &str, text: &str) -> Result<(), ChatError> {
        let r = self.room(room)?;
        let html = format!("<pre><code>{}</code></pre>", escape_html(text));
        self.send(&r, RoomMessageEventContent::notice_html(text, html), None)
            .await?;
        Ok(())
    }

    async fn room_upload(&self, room: &str, file: FileUpload) -> Result<(), ChatError> {
        use matrix_sdk::attachment::AttachmentConfig;
        let r = self.room(room)?;
        let mime: mime::Mime = file
            .content_type
            .parse()
            .unwrap_or(mime::APPLICATION_OCTET_STREAM);
        r.send_attachment(file.name, &mime, file.data, AttachmentConfig::new())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn download(&self, file: &SharedFile) -> Result<Vec<u8>, ChatError> {
        use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
        use matrix_sdk::ruma::events::room::MediaSource;
        let source: MediaSource = serde_json::from_str(&file.source)
            .map_err(|e| permanent(format!("file {}: bad media source: {e}", file.name)))?;
        self.client
            .media()
            .get_media_content(
                &MediaRequestParameters {
                    source,
                    format: MediaFormat::File,
                },
                false,
            )
            .await
            .map_err(classify)
    }

    fn room_key(&self, room: &str) -> String {
        self.aliases
            .get(room)
            .map(|id| id.to_string())
            .unwrap_or_else(|| room.to_owned())
    }

    async fn draw_board(
        &self,
        room: &str,
        heading: &str,
        board: &Board,
        existing: Option<&str>,
        check: bool,
    ) -> Result<Option<String>, ChatError> {
        self.draw(room, heading, board, existing, check)
            .await
            .map(Some)
    }

    async fn member(&self, room: &str, agent: &Agent) -> Result<Option<Member>, ChatError> {
        let r = self.room(room)?;
        let user = OwnedUserId::try_from(agent.as_str())
            .map_err(|e| permanent(format!("{agent}: {e}")))?;
        let Some(member) = r.get_member(&user).await.map_err(classify)? else {
            return Ok(None);
        };
        if *member.membership() != MembershipState::Join {
            return Ok(None);
        }
        let power = match member.power_level() {
            UserPowerLevel::Infinite => i64::MAX,
            UserPowerLevel::Int(n) => i64::from(n),
            // Newer room versions may add kinds of power; treat them as none.
            _ => 0,
        };
        Ok(Some(Member {
            power,
            display_name: member.display_name().map(ToOwned::to_owned),
        }))
    }

    async fn direct(&self, _room: &str, agent: &Agent, text: &str) -> Result<bool, ChatError> {
        let user = OwnedUserId::try_from(agent.as_str())
            .map_err(|e| permanent(format!("{agent}: {e}")))?;
        // One direct room per teammate, made on first use and found again
        // by its m.direct mark afterwards; created encrypted, as every
        // Matrix client makes a DM.
        let room = match self.client.get_dm_room(&user) {
            Some(r) => r,
            None => self.client.create_dm(&user).await.map_err(classify)?,
        };
        let content = RoomMessageEventContent::notice_html(text, text_block(text));
        self.send(&room, content, None).await?;
        Ok(true)
    }
}
