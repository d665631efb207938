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
//!
//! The lock is the process's, not the adapter's: an adapter connected
//! again in the same process while the previous one is still being
//! dropped (a restart in place, the tests' restarts) shares the hold. A
//! `flock` belongs to one open file, so without this the new adapter's own
//! open would be refused by the old one's.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::permanent;
use crate::chat::ChatError;

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub(super) struct StateLock {
    _file: Arc<File>,
}

/// The locks this process holds, by lock file: the last `StateLock` of a
/// directory dropped closes the file and so releases the `flock`. A std
/// mutex: held only for the open and `try_lock` calls, never across an
/// await.
static HELD: Mutex<BTreeMap<PathBuf, Weak<File>>> = Mutex::new(BTreeMap::new());

/// `<state_dir>/lock`.
fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

impl StateLock {
    /// Takes `state_dir` for this process (the directory exists), or says
    /// who holds it.
    pub(super) fn acquire(state_dir: &Path) -> Result<StateLock, ChatError> {
        let path = lock_path(state_dir);
        // One name per directory however it was written (`./state`, a
        // symlink); the directory exists.
        let key = std::fs::canonicalize(state_dir)
            .map(|d| lock_path(&d))
            .unwrap_or_else(|_| path.clone());
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.retain(|_, f| f.strong_count() > 0);
        if let Some(file) = held.get(&key).and_then(Weak::upgrade) {
            return Ok(StateLock { _file: file });
        }
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
        let file = Arc::new(file);
        held.insert(key, Arc::downgrade(&file));
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

    /// Holds `dir`'s lock from another process (`flock(1)`, util-linux)
    /// until the returned child is killed.
    fn held_elsewhere(dir: &Path) -> std::process::Child {
        let child = std::process::Command::new("flock")
            .args(["--exclusive", "--no-fork"])
            .arg(lock_path(dir))
            .args(["sleep", "30"])
            .spawn()
            .expect("flock(1)");
        // Until the child holds it, our own try succeeds: wait for the
        // lock to be taken by polling a probe open.
        for _ in 0..200 {
            let probe = File::open(lock_path(dir)).ok();
            if probe.is_some_and(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock))) {
                return child;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("flock(1) did not take the lock");
    }

    #[test]
    fn a_state_dir_held_by_another_process_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(lock_path(dir.path()), "4242\n").expect("a previous holder's pid");
        let mut other = held_elsewhere(dir.path());
        let refused = StateLock::acquire(dir.path()).expect_err("refused while held elsewhere");
        let text = refused.to_string();
        assert!(text.contains("matrix.state_dir"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("pid 4242"), "{text}");
        assert!(matches!(refused, ChatError::Permanent { .. }), "{text}");
        // Another directory is free meanwhile.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        drop(StateLock::acquire(elsewhere.path()).expect("another state_dir"));
        let _ = other.kill();
        let _ = other.wait();
        let ours = StateLock::acquire(dir.path()).expect("free once the other process ended");
        drop(ours);
    }

    #[test]
    fn this_process_shares_its_hold_and_releases_it_with_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StateLock::acquire(dir.path()).expect("first");
        // A second adapter of this process (a restart in place) shares it.
        let second = StateLock::acquire(dir.path()).expect("same process");
        let mut text = String::new();
        File::open(lock_path(dir.path()))
            .and_then(|mut f| f.read_to_string(&mut text))
            .expect("read");
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(first);
        // Still held for other processes while one holder lives.
        let probe = File::open(lock_path(dir.path())).expect("open");
        assert!(matches!(probe.try_lock(), Err(TryLockError::WouldBlock)));
        drop(probe);
        drop(second);
        let probe = File::open(lock_path(dir.path())).expect("open");
        probe.try_lock().expect("released with the last holder");
    }
}
