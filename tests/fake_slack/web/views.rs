//! Views: views.open and views.update, checked as Slack checks them.

use super::*;

impl Inner {
    pub(super) fn views_open(&self, p: &Params) -> ApiResult {
        let trigger_id = p
            .str("trigger_id")
            .ok_or_else(|| err("invalid_arguments"))?;
        let view = self.checked_view(p)?;
        let mut st = self.lock();
        let trigger = st
            .triggers
            .get_mut(&trigger_id)
            .ok_or_else(|| err("invalid_trigger_id"))?;
        if trigger.used {
            return Err(err("exchanged_trigger_id"));
        }
        if trigger.issued.elapsed() > Duration::from_secs(3) {
            return Err(err("expired_trigger_id"));
        }
        trigger.used = true;
        let user = trigger.user.clone();
        let id = st.next_id("V");
        let stored = self.stored_view(&id, view);
        st.views.push(super::super::state::ViewRec {
            view_id: id,
            user,
            view: stored.clone(),
            open: true,
        });
        Ok(json!({"view": stored}))
    }

    pub(super) fn views_update(&self, p: &Params) -> ApiResult {
        let view = self.checked_view(p)?;
        let mut st = self.lock();
        let idx = match (p.str("view_id"), p.str("external_id")) {
            (Some(id), _) => st.views.iter().position(|v| v.open && v.view_id == id),
            (None, Some(ext)) => st
                .views
                .iter()
                .position(|v| v.open && v.view["external_id"].as_str() == Some(ext.as_str())),
            (None, None) => return Err(err("invalid_arguments")),
        }
        .ok_or_else(|| err("not_found"))?;
        if let Some(hash) = p.str("hash")
            && st.views[idx].view["hash"].as_str() != Some(hash.as_str())
        {
            return Err(err("hash_conflict"));
        }
        let id = st.views[idx].view_id.clone();
        let stored = self.stored_view(&id, view);
        st.views[idx].view = stored.clone();
        Ok(json!({"view": stored}))
    }

    pub(super) fn checked_view(&self, p: &Params) -> Result<Value, ApiError> {
        let view = match p.json("view") {
            Some(Ok(v)) => v,
            _ => {
                return Err(err_with(
                    "invalid_arguments",
                    json!({"response_metadata": {"messages": ["[ERROR] missing required field: view"]}}),
                ));
            }
        };
        validate_view(&view).map_err(|messages| {
            err_with(
                "invalid_arguments",
                json!({"response_metadata": {"messages": messages}}),
            )
        })?;
        Ok(view)
    }

    /// The view object Slack stores and returns for views.open / views.update.
    pub(crate) fn stored_view(&self, id: &str, view: Value) -> Value {
        let mut o = view.as_object().cloned().unwrap_or_default();
        let defaults = [
            ("private_metadata", json!("")),
            ("callback_id", json!("")),
            ("external_id", json!("")),
            ("clear_on_close", json!(false)),
            ("notify_on_close", json!(false)),
            ("close", Value::Null),
            ("submit", Value::Null),
        ];
        for (k, v) in defaults {
            o.entry(k.to_string()).or_insert(v);
        }
        o.insert("id".into(), json!(id));
        o.insert("team_id".into(), json!(self.team_id));
        o.insert("state".into(), json!({"values": {}}));
        o.insert(
            "hash".into(),
            json!(format!("{}.{}", unix_now(), rand_hex(4))),
        );
        o.insert("previous_view_id".into(), Value::Null);
        o.insert("root_view_id".into(), json!(id));
        o.insert("app_id".into(), json!(self.app_id));
        o.insert("app_installed_team_id".into(), json!(self.team_id));
        o.insert("bot_id".into(), json!(self.bot_id));
        Value::Object(o)
    }
}
