//! One process per `matrix.state_dir`: an exclusive lock on
//! `<state_dir>/lock`, held for the life of the adapter, with the holder's
//! PID written in the file so a refused start can name it.
//!
//! The state directory holds the bot's session (its device) and
//! matrix-sdk's SQLite stores (sync token, end-to-end keys). Two replicas
//! on one database that share it would log in as one device from two
//! places, race each other's sync token and corrupt the crypto store: each
//! replica needs its own. The lock is the kernel's `flock` (through std's
//! `File::try_lock`), released when the process ends however it ends, so a
//! lock file left behind never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::permanent;
use crate::chat::ChatError;

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(super) struct StateLock {
    _file: File,
}

/// `<state_dir>/lock`.
fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

impl StateLock {
    /// Takes `state_dir` for this process (the directory exists), or says
    /// who holds it.
    pub(super) fn acquire(state_dir: &Path) -> Result<StateLock, ChatError> {
        let path = lock_path(state_dir);
        let io = |e: std::io::Error| {
            permanent(format!(
                "matrix.state_dir {}: cannot lock {}: {e}",
                state_dir.display(),
                path.display()
            ))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_pid(&mut file)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default();
                return Err(permanent(format!(
                    "matrix.state_dir {} is in use by another mailroom process{holder} \
                     (lock file {}): each process, and each replica sharing a database, \
                     needs a matrix.state_dir of its own (it holds the bot's session, \
                     device and encryption keys)",
                    state_dir.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who we are for the next one to be refused.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_one_state_dir_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = StateLock::acquire(dir.path()).expect("first lock");
        // flock locks belong to the open file, so a second open in the
        // same process is refused as another process would be.
        let refused = StateLock::acquire(dir.path()).expect_err("second lock refused");
        let text = refused.to_string();
        assert!(text.contains("matrix.state_dir"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(matches!(refused, ChatError::Permanent { .. }), "{text}");
        // Another directory is free.
        let other = tempfile::tempdir().expect("tempdir");
        let second = StateLock::acquire(other.path()).expect("another state_dir");
        drop(second);
        drop(held);
        let again = StateLock::acquire(dir.path()).expect("free once released");
        drop(again);
    }
}
