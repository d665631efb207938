//! One `mailroom run` per SQLite database: an exclusive `flock` on
//! `<database>.lock`, held for the life of the process, with the holder's
//! PID written in the file so a refused start can name it.
//!
//! SQLite has a single writer and mailroom's ingest, outbox and chat intake
//! assume they are the only ones working the database; two daemons on one
//! file would each fetch, post and send everything. `flock` is released by
//! the kernel when the process ends however it ends (kill -9 included), so
//! a stale lock file never blocks a restart. Commands that only read or
//! make one change (`tickets`, `outbox`, `status`) do not take the lock:
//! they go through SQLite's own locking like any other client.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the database could not be locked for this process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the SQLite database {database} is in use by another mailroom process{holder} \
         (lock file {lock}); SQLite runs one mailroom at a time: stop the other one, \
         or use PostgreSQL to run several replicas"
    )]
    Held {
        database: PathBuf,
        lock: PathBuf,
        /// " (pid N)" when the file names one.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct SqliteLock {
    _file: File,
    path: PathBuf,
}

/// `<database>.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl SqliteLock {
    /// Takes the lock for this process, or says who holds it.
    pub fn acquire(database: &Path) -> Result<SqliteLock, LockError> {
        let path = lock_path(database);
        let io = |source| LockError::Io {
            lock: path.clone(),
            source,
        };
        // Before the database is first opened its folder may not exist yet
        // (the open creates it, owner-only, as here).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if !try_flock(&file).map_err(io)? {
            return Err(LockError::Held {
                database: database.to_owned(),
                holder: read_pid(&mut file)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default(),
                lock: path,
            });
        }
        // Ours now: say who we are for the next one to be refused.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(SqliteLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PID of the process holding `database`'s lock, or `None` when no
    /// process does (a lock file left behind by a stopped one is not held).
    pub fn holder(database: &Path) -> Result<Option<u32>, LockError> {
        let path = lock_path(database);
        let io = |source| LockError::Io {
            lock: path.clone(),
            source,
        };
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if try_flock(&file).map_err(io)? {
            // We got it: nobody holds it. Closing the file releases it.
            return Ok(None);
        }
        Ok(read_pid(&mut file))
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open
/// file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor this `File` owns and keeps open
    // for the call; it touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
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
    fn a_second_lock_on_one_database_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("mailroom.db");
        assert_eq!(SqliteLock::holder(&db).expect("holder"), None);
        let held = SqliteLock::acquire(&db).expect("first lock");
        assert_eq!(held.path(), lock_path(&db));
        // flock locks belong to the open file, so a second open in the
        // same process is refused as another process would be.
        let refused = SqliteLock::acquire(&db).expect_err("second lock refused");
        let text = refused.to_string();
        assert!(text.contains(&db.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("PostgreSQL"), "{text}");
        assert_eq!(
            SqliteLock::holder(&db).expect("holder"),
            Some(std::process::id())
        );
        drop(held);
        assert_eq!(SqliteLock::holder(&db).expect("holder"), None);
        let again = SqliteLock::acquire(&db).expect("free once released");
        drop(again);
    }
}
