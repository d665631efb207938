//! What the chat adapters and the store both speak of: which platform, which
//! thread, which shared file. Plain values, so neither side needs the other.

use serde::{Deserialize, Serialize};

/// Chat platforms the outbox can post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Matrix,
    Slack,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Matrix => "matrix",
            Platform::Slack => "slack",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "matrix" => Some(Platform::Matrix),
            "slack" => Some(Platform::Slack),
            _ => None,
        }
    }
}

/// A chat thread a ticket lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThread {
    pub platform: Platform,
    pub room: String,
    pub thread_ref: String,
}

/// A file a teammate shared in chat, not yet downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// The platform's handle to download it (see `ChatPlatform::download`).
    pub source: String,
}

/// Where a ticket's thread is opened in its chat app. Matrix: matrix.to,
/// which hands the link to whichever client the teammate uses. Slack: the
/// thread's permalink in the workspace, whose address (`https://team.slack.com/`,
/// from `auth.test`) `slack_workspace` is; without it there is no link
/// (a Slack link needs the workspace's domain).
pub fn thread_link(thread: &ChatThread, slack_workspace: Option<&str>) -> Option<String> {
    match thread.platform {
        Platform::Matrix => Some(format!(
            "https://matrix.to/#/{}/{}",
            url_part(&thread.room),
            url_part(&thread.thread_ref)
        )),
        // Slack's documented permalink form: the root's ts without its dot,
        // and the thread named so the link opens it, not the channel.
        Platform::Slack => slack_workspace.map(|w| {
            let (room, ts) = (url_part(&thread.room), url_part(&thread.thread_ref));
            format!(
                "{}/archives/{room}/p{}?thread_ts={ts}&cid={room}",
                w.trim_end_matches('/'),
                ts.replace('.', "")
            )
        }),
    }
}

/// Percent-encodes what is not safe in a URL path segment or fragment.
fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'@'
            | b':'
            | b'$' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_links_open_the_chat_app() {
        let m = ChatThread {
            platform: Platform::Matrix,
            room: "!abc:example.org".into(),
            thread_ref: "$ev/1".into(),
        };
        assert_eq!(
            thread_link(&m, None).as_deref(),
            Some("https://matrix.to/#/!abc:example.org/$ev%2F1")
        );
        let s = ChatThread {
            platform: Platform::Slack,
            room: "C024BE91L".into(),
            thread_ref: "1712345678.000200".into(),
        };
        assert_eq!(
            thread_link(&s, Some("https://acme.slack.com/")).as_deref(),
            Some(
                "https://acme.slack.com/archives/C024BE91L/p1712345678000200\
                 ?thread_ts=1712345678.000200&cid=C024BE91L"
            )
        );
        assert_eq!(thread_link(&s, None), None, "no workspace, no Slack link");
    }
}
