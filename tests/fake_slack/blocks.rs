//! Block Kit and modal validation, with Slack's limits
//! (https://api.slack.com/reference/block-kit/blocks, .../surfaces/views).
//! Error strings follow Slack's style: "<problem> [json-pointer:/blocks/0/text]".

use std::collections::HashSet;

use serde_json::Value;

use super::util::chars;

pub(crate) enum BlocksError {
    /// Not a JSON array of objects at all (`invalid_blocks_format`).
    Format,
    /// Violations of Block Kit rules (`invalid_blocks`, with `errors`).
    Invalid(Vec<String>),
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Surface {
    Message,
    Modal,
}

const KNOWN_TYPES: &[&str] = &[
    "section",
    "header",
    "context",
    "divider",
    "actions",
    "input",
    "rich_text",
    "image",
    "file",
    "markdown",
    "video",
    "table",
];

struct Checker {
    errors: Vec<String>,
    block_ids: HashSet<String>,
    markdown_chars: usize,
}

impl Checker {
    fn err(&mut self, msg: impl Into<String>, ptr: &str) {
        self.errors
            .push(format!("{} [json-pointer:{ptr}]", msg.into()));
    }

    /// A composition text object: {"type":"plain_text"|"mrkdwn","text":...}.
    fn text(&mut self, v: &Value, ptr: &str, plain_only: bool, max: usize) {
        let Some(obj) = v.as_object() else {
            self.err("must be an object", ptr);
            return;
        };
        let ty = obj.get("type").and_then(Value::as_str);
        match ty {
            Some("plain_text") => {
                if obj.contains_key("verbatim") {
                    self.err("invalid additional property: verbatim", ptr);
                }
            }
            Some("mrkdwn") if !plain_only => {
                if obj.contains_key("emoji") {
                    self.err("invalid additional property: emoji", ptr);
                }
            }
            Some("mrkdwn") => self.err(
                "must be a valid enum value: plain_text",
                &format!("{ptr}/type"),
            ),
            Some(other) => self.err(
                format!("must be a valid enum value, got `{other}`"),
                &format!("{ptr}/type"),
            ),
            None => self.err("missing required field: type", ptr),
        }
        match obj.get("text").and_then(Value::as_str) {
            None => self.err("missing required field: text", ptr),
            Some("") => self.err("must be more than 0 characters", &format!("{ptr}/text")),
            Some(t) if chars(t) > max => self.err(
                format!("must be less than {} characters", max + 1),
                &format!("{ptr}/text"),
            ),
            Some(_) => {}
        }
    }

    fn opt_text(&mut self, v: Option<&Value>, ptr: &str, plain_only: bool, max: usize) {
        if let Some(v) = v {
            self.text(v, ptr, plain_only, max);
        }
    }

    fn array<'a>(
        &mut self,
        v: Option<&'a Value>,
        ptr: &str,
        min: usize,
        max: usize,
    ) -> &'a [Value] {
        match v {
            None => {
                self.err("missing required field", ptr);
                &[]
            }
            Some(Value::Array(items)) => {
                if items.len() < min {
                    self.err(format!("must provide at least {min} items"), ptr);
                }
                if items.len() > max {
                    self.err(format!("no more than {max} items allowed"), ptr);
                }
                items
            }
            Some(_) => {
                self.err("must be an array", ptr);
                &[]
            }
        }
    }

    fn element(&mut self, v: &Value, ptr: &str) {
        match v.get("type").and_then(Value::as_str) {
            Some("button") => self.button(v, ptr),
            Some(_) => {}
            None => self.err("missing required field: type", ptr),
        }
    }

    /// A button (https://api.slack.com/reference/block-kit/block-elements#button).
    fn button(&mut self, v: &Value, ptr: &str) {
        match v.get("text") {
            None => self.err("missing required field: text", ptr),
            Some(t) => self.text(t, &format!("{ptr}/text"), true, 75),
        }
        for (field, max) in [("action_id", 255), ("value", 2000), ("url", 3000)] {
            match v.get(field) {
                None => {}
                Some(Value::String(s)) if s.is_empty() => {
                    self.err("must be more than 0 characters", &format!("{ptr}/{field}"))
                }
                Some(Value::String(s)) if chars(s) > max => self.err(
                    format!("must be less than {} characters", max + 1),
                    &format!("{ptr}/{field}"),
                ),
                Some(Value::String(_)) => {}
                Some(_) => self.err("must be a string", &format!("{ptr}/{field}")),
            }
        }
        if let Some(style) = v.get("style") {
            match style.as_str() {
                Some("primary") | Some("danger") => {}
                _ => self.err(
                    "must be a valid enum value: primary, danger",
                    &format!("{ptr}/style"),
                ),
            }
        }
    }

    fn block(&mut self, b: &Value, ptr: &str, surface: Surface) {
        let Some(obj) = b.as_object() else {
            self.err("must be an object", ptr);
            return;
        };
        if let Some(id) = obj.get("block_id") {
            match id.as_str() {
                Some(s) if chars(s) > 255 => self.err(
                    "must be less than 256 characters",
                    &format!("{ptr}/block_id"),
                ),
                Some("") => self.err("must be more than 0 characters", &format!("{ptr}/block_id")),
                Some(s) => {
                    if !self.block_ids.insert(s.to_string()) {
                        self.err(
                            format!("duplicate block_id `{s}`"),
                            &format!("{ptr}/block_id"),
                        );
                    }
                }
                None => self.err("must be a string", &format!("{ptr}/block_id")),
            }
        }
        let Some(ty) = obj.get("type").and_then(Value::as_str) else {
            self.err("missing required field: type", ptr);
            return;
        };
        if !KNOWN_TYPES.contains(&ty) {
            self.err(format!("unsupported type: {ty}"), &format!("{ptr}/type"));
            return;
        }
        match ty {
            "section" => {
                if obj.get("text").is_none() && obj.get("fields").is_none() {
                    self.err("must provide either text or fields", ptr);
                }
                self.opt_text(obj.get("text"), &format!("{ptr}/text"), false, 3000);
                if obj.get("fields").is_some() {
                    let fields = self.array(obj.get("fields"), &format!("{ptr}/fields"), 1, 10);
                    for (i, f) in fields.iter().enumerate() {
                        self.text(f, &format!("{ptr}/fields/{i}"), false, 2000);
                    }
                }
                if let Some(acc) = obj.get("accessory") {
                    self.element(acc, &format!("{ptr}/accessory"));
                }
            }
            "header" => match obj.get("text") {
                None => self.err("missing required field: text", ptr),
                Some(t) => self.text(t, &format!("{ptr}/text"), true, 150),
            },
            "context" => {
                let elements = self.array(obj.get("elements"), &format!("{ptr}/elements"), 1, 10);
                for (i, e) in elements.iter().enumerate() {
                    let eptr = format!("{ptr}/elements/{i}");
                    match e.get("type").and_then(Value::as_str) {
                        Some("plain_text") | Some("mrkdwn") => self.text(e, &eptr, false, 3000),
                        Some("image") => {
                            if e.get("image_url").is_none() && e.get("slack_file").is_none() {
                                self.err("must provide image_url or slack_file", &eptr);
                            }
                            if e.get("alt_text").and_then(Value::as_str).is_none() {
                                self.err("missing required field: alt_text", &eptr);
                            }
                        }
                        Some(other) => self.err(
                            format!("unsupported context element type: {other}"),
                            &format!("{eptr}/type"),
                        ),
                        None => self.err("missing required field: type", &eptr),
                    }
                }
            }
            "divider" => {}
            "actions" => {
                let elements = self.array(obj.get("elements"), &format!("{ptr}/elements"), 1, 25);
                let mut action_ids = HashSet::new();
                for (i, e) in elements.iter().enumerate() {
                    self.element(e, &format!("{ptr}/elements/{i}"));
                    if let Some(id) = e.get("action_id").and_then(Value::as_str)
                        && !action_ids.insert(id)
                    {
                        self.err(
                            format!("duplicate action_id `{id}` in one block"),
                            &format!("{ptr}/elements/{i}/action_id"),
                        );
                    }
                }
            }
            "input" => {
                match obj.get("label") {
                    None => self.err("missing required field: label", ptr),
                    Some(l) => self.text(l, &format!("{ptr}/label"), true, 2000),
                }
                self.opt_text(obj.get("hint"), &format!("{ptr}/hint"), true, 2000);
                match obj.get("element") {
                    None => self.err("missing required field: element", ptr),
                    Some(e) => self.element(e, &format!("{ptr}/element")),
                }
            }
            "rich_text" => {
                self.array(
                    obj.get("elements"),
                    &format!("{ptr}/elements"),
                    0,
                    usize::MAX,
                );
            }
            "image" => {
                match (obj.get("image_url"), obj.get("slack_file")) {
                    (None, None) => self.err("must provide image_url or slack_file", ptr),
                    (Some(u), _) => match u.as_str() {
                        Some(s) if chars(s) > 3000 => self.err(
                            "must be less than 3001 characters",
                            &format!("{ptr}/image_url"),
                        ),
                        Some(_) => {}
                        None => self.err("must be a string", &format!("{ptr}/image_url")),
                    },
                    _ => {}
                }
                match obj.get("alt_text").and_then(Value::as_str) {
                    None => self.err("missing required field: alt_text", ptr),
                    Some(s) if chars(s) > 2000 => self.err(
                        "must be less than 2001 characters",
                        &format!("{ptr}/alt_text"),
                    ),
                    Some(_) => {}
                }
                self.opt_text(obj.get("title"), &format!("{ptr}/title"), true, 2000);
            }
            "file" => {
                if obj.get("external_id").and_then(Value::as_str).is_none() {
                    self.err("missing required field: external_id", ptr);
                }
                if obj.get("source").and_then(Value::as_str) != Some("remote") {
                    self.err(
                        "must be a valid enum value: remote",
                        &format!("{ptr}/source"),
                    );
                }
            }
            "markdown" => match obj.get("text").and_then(Value::as_str) {
                None => self.err("missing required field: text", ptr),
                Some(t) => {
                    if surface == Surface::Modal {
                        self.err("markdown blocks are only allowed in messages", ptr);
                    }
                    self.markdown_chars += chars(t);
                    if self.markdown_chars > 12000 {
                        self.err(
                            "markdown blocks exceed 12000 characters in total",
                            &format!("{ptr}/text"),
                        );
                    }
                }
            },
            _ => {}
        }
    }
}

/// Validates a `blocks` value (already JSON-decoded).
pub(crate) fn validate_blocks(
    blocks: &Value,
    surface: Surface,
    root: &str,
) -> Result<(), BlocksError> {
    let Some(items) = blocks.as_array() else {
        return Err(BlocksError::Format);
    };
    if items.iter().any(|b| !b.is_object()) {
        return Err(BlocksError::Format);
    }
    let mut c = Checker {
        errors: Vec::new(),
        block_ids: HashSet::new(),
        markdown_chars: 0,
    };
    let max = match surface {
        Surface::Message => 50,
        Surface::Modal => 100,
    };
    if items.len() > max {
        c.err(format!("no more than {max} items allowed"), root);
    }
    for (i, b) in items.iter().enumerate() {
        c.block(b, &format!("{root}/{i}"), surface);
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(BlocksError::Invalid(c.errors))
    }
}

/// Validates a modal view object for views.open / views.update; returns the
/// problems in Slack's `response_metadata.messages` style.
pub(crate) fn validate_view(view: &Value) -> Result<(), Vec<String>> {
    let Some(obj) = view.as_object() else {
        return Err(vec![
            "[ERROR] must be an object [json-pointer:/view]".into(),
        ]);
    };
    let mut c = Checker {
        errors: Vec::new(),
        block_ids: HashSet::new(),
        markdown_chars: 0,
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("modal") => {}
        Some(other) => c.err(
            format!("must be a valid enum value: modal, got `{other}`"),
            "/view/type",
        ),
        None => c.err("missing required field: type", "/view"),
    }
    match obj.get("title") {
        None => c.err("missing required field: title", "/view"),
        Some(t) => c.text(t, "/view/title", true, 24),
    }
    c.opt_text(obj.get("submit"), "/view/submit", true, 24);
    c.opt_text(obj.get("close"), "/view/close", true, 24);
    for (field, max) in [
        ("callback_id", 255),
        ("private_metadata", 3000),
        ("external_id", 255),
    ] {
        if let Some(v) = obj.get(field) {
            match v.as_str() {
                Some(s) if chars(s) > max => c.err(
                    format!("must be less than {} characters", max + 1),
                    &format!("/view/{field}"),
                ),
                Some(_) => {}
                None => c.err("must be a string", &format!("/view/{field}")),
            }
        }
    }
    let mut errors = std::mem::take(&mut c.errors);
    match obj.get("blocks") {
        None => errors.push("missing required field: blocks [json-pointer:/view]".into()),
        Some(blocks) => {
            match validate_blocks(blocks, Surface::Modal, "/view/blocks") {
                Ok(()) => {}
                Err(BlocksError::Format) => {
                    errors.push("must be an array of objects [json-pointer:/view/blocks]".into())
                }
                Err(BlocksError::Invalid(e)) => errors.extend(e),
            }
            let has_input = blocks.as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("input"))
            });
            if has_input && obj.get("submit").is_none() {
                errors.push(
                    "must provide submit argument when an input block is present [json-pointer:/view]"
                        .into(),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into_iter().map(|e| format!("[ERROR] {e}")).collect())
    }
}

/// Validates a Home tab view for views.publish: `type` home, at most 100
/// blocks, no modal-only fields, metadata and ids within their lengths.
pub(crate) fn validate_home_view(view: &Value) -> Result<(), Vec<String>> {
    let Some(obj) = view.as_object() else {
        return Err(vec![
            "[ERROR] must be an object [json-pointer:/view]".into(),
        ]);
    };
    let mut errors = Vec::new();
    match obj.get("type").and_then(Value::as_str) {
        Some("home") => {}
        Some(other) => errors.push(format!(
            "must be a valid enum value: home, got `{other}` [json-pointer:/view/type]"
        )),
        None => errors.push("missing required field: type [json-pointer:/view]".into()),
    }
    for modal_only in [
        "title",
        "submit",
        "close",
        "clear_on_close",
        "notify_on_close",
    ] {
        if obj.contains_key(modal_only) {
            errors.push(format!(
                "invalid additional property: {modal_only} [json-pointer:/view]"
            ));
        }
    }
    for (field, max) in [
        ("callback_id", 255),
        ("private_metadata", 3000),
        ("external_id", 255),
    ] {
        if let Some(v) = obj.get(field) {
            match v.as_str() {
                Some(s) if chars(s) > max => errors.push(format!(
                    "must be less than {} characters [json-pointer:/view/{field}]",
                    max + 1
                )),
                Some(_) => {}
                None => errors.push(format!("must be a string [json-pointer:/view/{field}]")),
            }
        }
    }
    match obj.get("blocks") {
        None => errors.push("missing required field: blocks [json-pointer:/view]".into()),
        Some(blocks) => match validate_blocks(blocks, Surface::Modal, "/view/blocks") {
            Ok(()) => {}
            Err(BlocksError::Format) => {
                errors.push("must be an array of objects [json-pointer:/view/blocks]".into())
            }
            Err(BlocksError::Invalid(e)) => errors.extend(e),
        },
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into_iter().map(|e| format!("[ERROR] {e}")).collect())
    }
}
