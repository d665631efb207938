//! Files: files.getUploadURLExternal, files.completeUploadExternal, and the
//! upload and download URLs they hand out.

use super::*;

impl Inner {
    pub(super) fn files_get_upload_url(&self, p: &Params) -> ApiResult {
        let filename = p.str("filename").ok_or_else(|| err("invalid_arguments"))?;
        let length: usize = p
            .str("length")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| err("invalid_arguments"))?;
        if length == 0 {
            return Err(err("invalid_arguments"));
        }
        if self.opts.max_upload_bytes.is_some_and(|max| length > max) {
            // The workspace restricts uploads of large files.
            return Err(err("file_upload_size_restricted"));
        }
        let mut st = self.lock();
        let id = st.next_id("F");
        let (mimetype, filetype) = guess_type(&filename);
        st.files.insert(
            id.clone(),
            StoredFile {
                id: id.clone(),
                name: filename.clone(),
                title: filename,
                mimetype: mimetype.to_string(),
                filetype: filetype.to_string(),
                declared_len: length,
                data: None,
                user: self.bot_user_id.clone(),
                created: unix_now(),
                completed: false,
            },
        );
        Ok(json!({"upload_url": format!("{}/upload/{id}", self.base()), "file_id": id}))
    }

    pub(super) fn files_complete_upload(self: &Arc<Self>, p: &Params) -> ApiResult {
        let files = match p.json("files") {
            Some(Ok(Value::Array(f))) if !f.is_empty() => f,
            _ => return Err(err("invalid_arguments")),
        };
        let mut wanted: Vec<(String, Option<String>)> = Vec::new();
        for f in &files {
            let Some(id) = f.get("id").and_then(Value::as_str) else {
                return Err(err("invalid_arguments"));
            };
            let title = f.get("title").and_then(Value::as_str).map(str::to_string);
            wanted.push((id.to_string(), title));
        }
        let mut st = self.lock();
        for (id, _) in &wanted {
            let f = st.files.get(id).ok_or_else(|| err("file_not_found"))?;
            let Some(data) = &f.data else {
                return Err(err("file_not_found"));
            };
            if f.completed {
                return Err(err("file_not_found"));
            }
            if data.len() != f.declared_len {
                return Err(err("file_upload_size_mismatch"));
            }
        }
        let channel_arg = p.str("channel_id").or_else(|| {
            p.str("channels")
                .and_then(|c| c.split(',').next().map(|s| s.trim().to_string()))
        });
        let channel = match channel_arg {
            Some(c) => Some(self.bot_channel(&st, Some(c))?),
            None => None,
        };
        let comment = p.str("initial_comment");
        let blocks = match (&comment, p.json("blocks")) {
            (None, Some(Ok(v))) => {
                validate_blocks(&v, Surface::Message, "/blocks").map_err(bad_blocks)?;
                Some(v)
            }
            (None, Some(Err(()))) => return Err(err("invalid_blocks_format")),
            _ => None,
        };
        let mut out = Vec::new();
        for (id, title) in &wanted {
            let f = st.files.get_mut(id).expect("checked");
            if let Some(t) = title {
                f.title = t.clone();
            }
            f.completed = true;
            out.push(json!({"id": f.id, "title": f.title}));
        }
        if let Some(channel) = channel {
            let ts = st.next_ts();
            let m = StoredMessage {
                channel,
                ts,
                thread_ts: p.str("thread_ts"),
                user: self.bot_user_id.clone(),
                bot: true,
                text: comment.unwrap_or_default(),
                blocks: blocks.unwrap_or(Value::Null),
                files: wanted.iter().map(|(id, _)| id.clone()).collect(),
                edits: 0,
                metadata: None,
                subtype: Some("file_share".into()),
                edited: None,
                reactions: Default::default(),
                client_msg_id: None,
            };
            let event = self.message_event(&st, &m);
            st.push_message(m);
            drop(st);
            self.emit_event(event);
        }
        Ok(json!({"files": out}))
    }
}

/// POST to an upload_url from files.getUploadURLExternal: raw bytes or multipart.
pub(super) async fn upload(
    AxState(inner): AxState<Arc<Inner>>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let data = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let Some(parts) = multipart_parts(&content_type, &body) else {
            return (StatusCode::BAD_REQUEST, "invalid multipart body").into_response();
        };
        let part = parts
            .iter()
            .position(|p| p.filename.is_some())
            .or(if parts.is_empty() { None } else { Some(0) });
        let Some(i) = part else {
            return (StatusCode::BAD_REQUEST, "no file part").into_response();
        };
        parts.into_iter().nth(i).map(|p| p.data).unwrap_or_default()
    } else {
        body.to_vec()
    };
    let n = data.len();
    {
        let mut st = inner.lock();
        match st.files.get_mut(&file_id) {
            Some(f) if !f.completed => f.data = Some(data),
            _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
        }
    }
    inner.touched();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("OK - {n}"),
    )
        .into_response()
}

/// url_private / url_private_download: only with the bot token, else the
/// sign-in redirect a browser would get.
pub(super) async fn download(
    AxState(inner): AxState<Arc<Inner>>,
    Path((file_id, rest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if bearer(&headers).as_deref() != Some(inner.bot_token.as_str()) {
        let location = format!("/signin?redir=%2Ffiles%2F{file_id}%2F{rest}");
        return (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response();
    }
    let st = inner.lock();
    match st.files.get(&file_id) {
        Some(f) if f.completed && f.data.is_some() => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, f.mimetype.clone())],
            f.data.clone().unwrap_or_default(),
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "file not found").into_response(),
    }
}
