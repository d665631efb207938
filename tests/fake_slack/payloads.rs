//! JSON shapes Slack sends: message objects, events, users, channels, files.

use serde_json::{Map, Value, json};

use super::Inner;
use super::state::{Channel, State, StoredFile, StoredMessage, User};
use super::util::{rand_hex, unix_now, url_encode};

impl Inner {
    pub(crate) fn bot_profile(&self) -> Value {
        json!({
            "id": self.bot_id,
            "deleted": false,
            "name": self.bot_name,
            "updated": self.started_at,
            "app_id": self.app_id,
            "user_id": self.bot_user_id,
            "icons": {
                "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
                "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
                "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png"
            },
            "team_id": self.team_id
        })
    }

    pub(crate) fn file_url(&self, f: &StoredFile, download: bool) -> String {
        let name = url_encode(&f.name);
        if download {
            format!("{}/files/{}/download/{name}", self.base(), f.id)
        } else {
            format!("{}/files/{}/{name}", self.base(), f.id)
        }
    }

    pub(crate) fn file_json(&self, f: &StoredFile) -> Value {
        let size = f.data.as_ref().map(Vec::len).unwrap_or(f.declared_len);
        json!({
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": f.filetype,
            "pretty_type": f.filetype.to_uppercase(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": false,
            "size": size,
            "mode": "hosted",
            "is_external": false,
            "external_type": "",
            "is_public": true,
            "public_url_shared": false,
            "display_as_bot": false,
            "username": "",
            "url_private": self.file_url(f, false),
            "url_private_download": self.file_url(f, true),
            "permalink": format!("https://{}.slack.com/files/{}/{}/{}", self.team_domain, f.user, f.id, url_encode(&f.name)),
            "permalink_public": format!("https://slack-files.com/{}-{}-{}", self.team_id, f.id, rand_hex(5)),
            "has_rich_preview": false,
            "file_access": "visible"
        })
    }

    /// A message as the Web API returns it (chat.postMessage `message`,
    /// conversations.history, the `message` of a message_action).
    pub(crate) fn message_json(&self, st: &State, m: &StoredMessage, api: bool) -> Value {
        let mut o = Map::new();
        o.insert("type".into(), json!("message"));
        if let Some(sub) = &m.subtype {
            o.insert("subtype".into(), json!(sub));
        }
        o.insert("text".into(), json!(m.text));
        o.insert("user".into(), json!(m.user));
        o.insert("ts".into(), json!(m.ts));
        o.insert("team".into(), json!(self.team_id));
        if m.bot {
            o.insert("bot_id".into(), json!(self.bot_id));
            o.insert("app_id".into(), json!(self.app_id));
            o.insert("bot_profile".into(), self.bot_profile());
        }
        if let Some(id) = &m.client_msg_id {
            o.insert("client_msg_id".into(), json!(id));
        }
        if !m.blocks.is_null() {
            o.insert("blocks".into(), m.blocks.clone());
        }
        if !m.files.is_empty() {
            let files: Vec<Value> = m
                .files
                .iter()
                .filter_map(|id| st.files.get(id))
                .map(|f| self.file_json(f))
                .collect();
            o.insert("files".into(), Value::Array(files));
            o.insert("upload".into(), json!(m.bot));
            o.insert("display_as_bot".into(), json!(false));
        }
        if let Some(thread_ts) = &m.thread_ts {
            o.insert("thread_ts".into(), json!(thread_ts));
            if thread_ts != &m.ts
                && let Some(root) = st.find_message(&m.channel, thread_ts)
            {
                o.insert("parent_user_id".into(), json!(root.user));
            }
        }
        // Thread parents carry reply bookkeeping.
        let no_replies = Vec::new();
        let replies = st
            .replies
            .get(&format!("{}/{}", m.channel, m.ts))
            .unwrap_or(&no_replies);
        if !replies.is_empty() {
            let mut users: Vec<&String> = Vec::new();
            for (_, user) in replies {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            o.insert("thread_ts".into(), json!(m.ts));
            o.insert("reply_count".into(), json!(replies.len()));
            o.insert("reply_users_count".into(), json!(users.len()));
            o.insert("latest_reply".into(), json!(replies.last().map(|r| &r.0)));
            o.insert("reply_users".into(), json!(users));
            o.insert("is_locked".into(), json!(false));
            o.insert("subscribed".into(), json!(false));
        }
        if let Some((user, ts)) = &m.edited {
            o.insert("edited".into(), json!({"user": user, "ts": ts}));
        }
        if api {
            if let Some(md) = &m.metadata {
                o.insert("metadata".into(), md.clone());
            }
            if !m.reactions.is_empty() {
                let r: Vec<Value> = m
                    .reactions
                    .iter()
                    .map(
                        |(name, users)| json!({"name": name, "users": users, "count": users.len()}),
                    )
                    .collect();
                o.insert("reactions".into(), Value::Array(r));
            }
        }
        Value::Object(o)
    }

    /// The inner `message` event for a new message.
    pub(crate) fn message_event(&self, st: &State, m: &StoredMessage) -> Value {
        let mut v = self.message_json(st, m, false);
        let o = v.as_object_mut().expect("object");
        // A new message carries no reply bookkeeping yet.
        for k in [
            "reply_count",
            "reply_users_count",
            "latest_reply",
            "reply_users",
            "is_locked",
            "subscribed",
        ] {
            o.remove(k);
        }
        if m.thread_ts.is_none() {
            o.remove("thread_ts");
        }
        o.insert("channel".into(), json!(m.channel));
        o.insert("event_ts".into(), json!(m.ts));
        o.insert("channel_type".into(), json!("channel"));
        v
    }

    /// `message` subtype `message_changed` for an edit.
    pub(crate) fn message_changed_event(
        &self,
        st: &State,
        before: &StoredMessage,
        after: &StoredMessage,
        event_ts: &str,
    ) -> Value {
        let mut new = self.message_json(st, after, false);
        let mut old = self.message_json(st, before, false);
        for v in [&mut new, &mut old] {
            if let Some(o) = v.as_object_mut() {
                o.insert("channel".into(), json!(after.channel));
            }
        }
        json!({
            "type": "message",
            "subtype": "message_changed",
            "message": new,
            "previous_message": old,
            "channel": after.channel,
            "hidden": true,
            "ts": event_ts,
            "event_ts": event_ts,
            "channel_type": "channel"
        })
    }

    pub(crate) fn reaction_event(
        &self,
        added: bool,
        user: &str,
        reaction: &str,
        item: &StoredMessage,
        event_ts: &str,
    ) -> Value {
        json!({
            "type": if added { "reaction_added" } else { "reaction_removed" },
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": item.channel, "ts": item.ts},
            "item_user": item.user,
            "event_ts": event_ts
        })
    }

    /// The Events API outer envelope (`event_callback`) around an event.
    pub(crate) fn event_callback(&self, event: Value) -> Value {
        json!({
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": null,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": format!("Ev0{}", super::util::rand_id_chars(9)),
            "event_time": unix_now(),
            "authorizations": [{
                "enterprise_id": null,
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "is_bot": true,
                "is_enterprise_install": false
            }],
            "is_ext_shared_channel": false,
            "event_context": format!("4-{}", rand_hex(24))
        })
    }

    pub(crate) fn user_json(&self, u: &User) -> Value {
        let mut profile = json!({
            "title": "",
            "phone": "",
            "skype": "",
            "real_name": u.real_name,
            "real_name_normalized": u.real_name,
            "display_name": u.name,
            "display_name_normalized": u.name,
            "fields": null,
            "status_text": "",
            "status_emoji": "",
            "status_expiration": 0,
            "avatar_hash": "g0123456789a",
            "first_name": u.real_name.split(' ').next().unwrap_or(""),
            "last_name": u.real_name.split_once(' ').map(|(_, l)| l).unwrap_or(""),
            "team": self.team_id
        });
        if u.is_bot {
            profile["bot_id"] = json!(self.bot_id);
            profile["api_app_id"] = json!(self.app_id);
            profile["always_active"] = json!(true);
        } else {
            profile["email"] = json!(format!("{}@example.com", u.name));
        }
        json!({
            "id": u.id,
            "team_id": self.team_id,
            "name": u.name,
            "deleted": false,
            "color": "9f69e7",
            "real_name": u.real_name,
            "tz": "Europe/Paris",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": profile,
            "is_admin": false,
            "is_owner": false,
            "is_primary_owner": false,
            "is_restricted": false,
            "is_ultra_restricted": false,
            "is_bot": u.is_bot,
            "is_app_user": false,
            "updated": self.started_at,
            "is_email_confirmed": !u.is_bot,
            "who_can_share_contact_card": "EVERYONE"
        })
    }

    pub(crate) fn channel_json(&self, c: &Channel) -> Value {
        json!({
            "id": c.id,
            "name": c.name,
            "is_channel": true,
            "is_group": false,
            "is_im": false,
            "is_mpim": false,
            "is_private": false,
            "created": c.created,
            "is_archived": false,
            "is_general": false,
            "unlinked": 0,
            "name_normalized": c.name,
            "is_shared": false,
            "is_org_shared": false,
            "is_pending_ext_shared": false,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "updated": c.created * 1000,
            "parent_conversation": null,
            "creator": c.members.first().cloned().unwrap_or_default(),
            "is_ext_shared": false,
            "shared_team_ids": [self.team_id],
            "pending_connected_team_ids": [],
            "is_member": c.members.contains(&self.bot_user_id),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": c.members.len()
        })
    }

    pub(crate) fn team_brief(&self) -> Value {
        json!({"id": self.team_id, "domain": self.team_domain})
    }

    pub(crate) fn user_brief(&self, u: &User) -> Value {
        json!({"id": u.id, "username": u.name, "name": u.name, "team_id": self.team_id})
    }
}

/// Blocks a Slack client attaches to a typed message: one rich_text section.
pub(crate) fn rich_text_blocks(text: &str) -> Value {
    json!([{
        "type": "rich_text",
        "block_id": rand_hex(3),
        "elements": [{
            "type": "rich_text_section",
            "elements": [{"type": "text", "text": text}]
        }]
    }])
}
