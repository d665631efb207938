//! The App Home tab: `views.publish`, checked against Slack's documented
//! home view (https://api.slack.com/methods/views.publish,
//! https://api.slack.com/reference/surfaces/views), the `app_home_opened`
//! event, and `block_actions` when a teammate presses a button on it.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use serde_json::{Value, json};

use super::blocks::validate_home_view;
use super::delivery::Kind;
use super::state::ViewRec;
use super::util::rand_id_chars;
use super::web::{ApiResult, Params, err, err_with};
use super::{FakeSlack, Inner};

fn invalid(messages: Vec<String>) -> super::web::ApiError {
    err_with(
        "invalid_arguments",
        json!({"response_metadata": {"messages": messages}}),
    )
}

impl Inner {
    pub(crate) fn views_publish(self: &Arc<Self>, p: &Params) -> ApiResult {
        let Some(user) = p.str("user_id") else {
            return Err(invalid(vec![
                "[ERROR] missing required field: user_id".into(),
            ]));
        };
        let view = match p.json("view") {
            Some(Ok(v)) => v,
            _ => {
                return Err(invalid(vec!["[ERROR] missing required field: view".into()]));
            }
        };
        validate_home_view(&view).map_err(invalid)?;
        let mut st = self.lock();
        if !st.users.contains_key(&user) {
            return Err(err("user_not_found"));
        }
        let known = st.homes.get(&user).map(|h| h.view_id.clone());
        if let Some(hash) = p.str("hash")
            && st.homes.get(&user).and_then(|h| h.view["hash"].as_str()) != Some(hash.as_str())
        {
            return Err(err("hash_conflict"));
        }
        let id = match known {
            Some(id) => id,
            None => st.next_id("V"),
        };
        let mut stored = self.stored_view(&id, view);
        if let Some(o) = stored.as_object_mut() {
            // Modal-only fields a home view does not have.
            for k in ["close", "submit", "clear_on_close", "notify_on_close"] {
                o.remove(k);
            }
        }
        st.homes.insert(
            user.clone(),
            ViewRec {
                view_id: id,
                user,
                view: stored.clone(),
                open: true,
            },
        );
        drop(st);
        self.touched();
        Ok(json!({"view": stored}))
    }
}

impl FakeSlack {
    /// The user's Home tab as last published, if ever.
    pub fn home_view(&self, user: &str) -> Option<Value> {
        self.inner.lock().homes.get(user).map(|h| h.view.clone())
    }

    /// A teammate opens the app's Home tab: `app_home_opened` (with the view
    /// they were last shown, as Slack sends it).
    pub async fn open_app_home(&self, user: &str) -> anyhow::Result<()> {
        let event = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let mut event = json!({
                "type": "app_home_opened",
                "user": user,
                "channel": format!("D{}", rand_id_chars(10)),
                "tab": "home",
                "event_ts": st.next_ts(),
            });
            if let Some(h) = st.homes.get(user) {
                event["view"] = h.view.clone();
            }
            event
        };
        let payload = self.inner.event_callback(event);
        self.deliver_and_wait(Kind::Event, payload).await?;
        Ok(())
    }

    /// A teammate presses the button `action_id` whose `value` is `value` on
    /// their Home tab (it must be there): `block_actions` as Slack sends it.
    pub async fn press_home_button(
        &self,
        user: &str,
        action_id: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        let payload = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let home = st
                .homes
                .get(user)
                .ok_or_else(|| anyhow!("{user} has no Home tab published"))?;
            let view = home.view.clone();
            let view_id = home.view_id.clone();
            let (block_id, button) = view["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .flat_map(|(i, b)| {
                    let block_id = b["block_id"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("blk{i}"));
                    b["elements"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |e| (block_id.clone(), e.clone()))
                        .collect::<Vec<_>>()
                })
                .find(|(_, e)| e["action_id"] == action_id && e["value"] == value)
                .ok_or_else(|| {
                    anyhow!("no button {action_id} with value {value:?} on {user}'s Home tab")
                })?;
            if button["type"] != "button" {
                bail!("{action_id} is not a button");
            }
            let trigger_id = self.inner.new_trigger(&mut st, user);
            let action_ts = st.next_ts();
            json!({
                "type": "block_actions",
                "user": self.inner.user_brief(&st.users[user]),
                "api_app_id": self.inner.app_id,
                "token": self.inner.verification_token,
                "container": {"type": "view", "view_id": view_id},
                "trigger_id": trigger_id,
                "team": self.inner.team_brief(),
                "enterprise": null,
                "is_enterprise_install": false,
                "view": view,
                "actions": [{
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": button["text"],
                    "value": value,
                    "action_ts": action_ts
                }]
            })
        };
        self.deliver_and_wait(
            Kind::Interactive {
                accepts_response: false,
            },
            payload,
        )
        .await?;
        Ok(())
    }
}
