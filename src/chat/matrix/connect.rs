//! Logging in: the saved session restored, or a password login or an
//! access token turned into a session and saved (owner-only) in `state_dir`,
//! and the configured rooms resolved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use matrix_sdk::Client;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::ruma::{OwnedUserId, RoomId};

use super::pace::Pace;
use super::{MatrixChat, classify, permanent, transient};
use crate::chat::ChatError;
use crate::chat::settings::{MatrixAuth, MatrixSettings};

impl MatrixChat {
    /// Logs in (or restores the saved session) and prepares the rooms.
    pub async fn connect(
        settings: &MatrixSettings,
        rooms: &[String],
    ) -> Result<MatrixChat, ChatError> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|e| {
            permanent(format!(
                "matrix.state_dir {}: {e}",
                settings.state_dir.display()
            ))
        })?;
        restrict_dir(&settings.state_dir);
        // Before anything in it is read or written: another process using
        // it (a second replica given the same directory) is refused here.
        let state_lock = super::state_lock::StateLock::acquire(&settings.state_dir)?;
        let client = Client::builder()
            .homeserver_url(&settings.homeserver)
            // The bot is one client in a few rooms: matrix-sdk's low-memory
            // store profile (a connection per core, small page caches)
            // instead of its default of four connections per core with 2 MB
            // caches in each of its four databases.
            .sqlite_store_with_config_and_cache_path(
                matrix_sdk::SqliteStoreConfig::with_low_memory_config(
                    settings.state_dir.join("store"),
                ),
                None::<PathBuf>,
            )
            .build()
            .await
            .map_err(|e| permanent(format!("matrix.homeserver {}: {e}", settings.homeserver)))?;
        let session_file = settings.state_dir.join("session.json");
        let restored = match std::fs::read(&session_file) {
            Ok(bytes) => match serde_json::from_slice::<MatrixSession>(&bytes) {
                Ok(session) if session.meta.user_id.as_str() == settings.user_id => {
                    client.restore_session(session).await.map_err(classify)?;
                    true
                }
                Ok(_) => {
                    return Err(permanent(format!(
                        "{} holds a session for another user than matrix.user_id {}; remove it to log in again",
                        session_file.display(),
                        settings.user_id
                    )));
                }
                Err(e) => {
                    return Err(permanent(format!(
                        "{} is unreadable: {e}",
                        session_file.display()
                    )));
                }
            },
            Err(_) => false,
        };
        if !restored {
            match &settings.auth {
                MatrixAuth::Password(pw) => {
                    client
                        .matrix_auth()
                        .login_username(&settings.user_id, pw.expose())
                        .initial_device_display_name(&settings.device_name)
                        .send()
                        .await
                        .map_err(|e| {
                            let e = classify(e);
                            match e {
                                ChatError::Permanent { message } => permanent(format!(
                                    "login as {} refused: {message}",
                                    settings.user_id
                                )),
                                other => other,
                            }
                        })?;
                }
                MatrixAuth::AccessToken(token) => {
                    let session = token_session(settings, token.expose()).await?;
                    client.restore_session(session).await.map_err(classify)?;
                }
            }
            let session = client
                .matrix_auth()
                .session()
                .ok_or_else(|| permanent("login returned no session"))?;
            let json = serde_json::to_vec(&session).map_err(|e| permanent(e.to_string()))?;
            write_private(&session_file, &json)
                .map_err(|e| permanent(format!("saving {}: {e}", session_file.display())))?;
        }
        let own_user = client
            .user_id()
            .map(ToOwned::to_owned)
            .ok_or_else(|| permanent("no user id after login"))?;
        let mut room_ids = Vec::new();
        let mut aliases = HashMap::new();
        for r in rooms {
            let id = if r.starts_with('#') {
                let alias = matrix_sdk::ruma::RoomAliasId::parse(r)
                    .map_err(|e| permanent(format!("room alias {r}: {e}")))?;
                let id = client
                    .resolve_room_alias(&alias)
                    .await
                    .map_err(|e| classify(e.into()))?
                    .room_id;
                aliases.insert(r.clone(), id.clone());
                id
            } else {
                RoomId::parse(r).map_err(|e| permanent(format!("room id {r}: {e}")))?
            };
            room_ids.push(id);
        }
        Ok(MatrixChat {
            client,
            state_dir: settings.state_dir.clone(),
            own_user,
            rooms: room_ids,
            aliases,
            reactions: Mutex::new(HashMap::new()),
            settled: std::sync::atomic::AtomicBool::new(false),
            settling: tokio::sync::Mutex::new(()),
            handlers_added: std::sync::atomic::AtomicBool::new(false),
            pace: Mutex::new(Pace::default()),
            burst: tokio::sync::Notify::new(),
            _state_lock: state_lock,
        })
    }
}

/// Writes a file readable by the owner only (it holds an access token).
pub(super) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[derive(serde::Deserialize)]
struct WhoAmI {
    user_id: String,
    device_id: Option<String>,
}

/// A session for an existing access token: the homeserver says which user
/// and device it belongs to, so the encryption store binds to that device.
pub(super) async fn token_session(
    settings: &MatrixSettings,
    token: &str,
) -> Result<MatrixSession, ChatError> {
    let url = format!(
        "{}/_matrix/client/v3/account/whoami",
        settings.homeserver.trim_end_matches('/')
    );
    let resp = matrix_sdk::reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| transient(format!("matrix.homeserver: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| transient(e.to_string()))?;
    if !status.is_success() {
        return Err(permanent(format!(
            "matrix.access_token_env: the homeserver refused the token ({status})"
        )));
    }
    let who: WhoAmI = serde_json::from_str(&text).map_err(|e| permanent(format!("whoami: {e}")))?;
    if who.user_id != settings.user_id {
        return Err(permanent(format!(
            "matrix.access_token_env: the token belongs to {}, not matrix.user_id {}",
            who.user_id, settings.user_id
        )));
    }
    let device_id = who.device_id.ok_or_else(|| {
        permanent(
            "matrix.access_token_env: the token has no device (use a token from a device login)",
        )
    })?;
    Ok(MatrixSession {
        meta: matrix_sdk::SessionMeta {
            user_id: OwnedUserId::try_from(who.user_id).map_err(|e| permanent(e.to_string()))?,
            device_id: device_id.into(),
        },
        tokens: matrix_sdk::SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    })
}

/// The state dir holds the access token and encryption keys: owner only.
pub(super) fn restrict_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}
