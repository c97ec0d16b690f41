//! The store lock: `locks/store.lock`, shared by builds, exclusive for prune and verify.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::{open_lock_file, Error, Store};

/// A shared lock of a store, held by a build for its whole run; unlocked when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// The exclusive lock of a store, needed by [`Store::prune`] and [`Store::verify`]; unlocked
/// when dropped.
#[derive(Debug)]
pub struct ExclusiveLock {
    _file: File,
    root: PathBuf,
}

impl ExclusiveLock {
    /// Fails unless this lock is `store`'s.
    pub(crate) fn check(&self, store: &Store) -> Result<(), Error> {
        if self.root == store.root() {
            Ok(())
        } else {
            Err(Error::ForeignLock {
                path: self.root.clone(),
            })
        }
    }
}

impl Store {
    fn store_lock_path(&self) -> PathBuf {
        self.locks_dir().join("store.lock")
    }

    /// Takes the shared lock, waiting while a prune or verify holds the exclusive one.
    pub fn lock_shared(&self) -> Result<StoreLock, Error> {
        let path = self.store_lock_path();
        let file = lock_file(&path, false)?;
        Ok(StoreLock { _file: file })
    }

    /// Takes the shared lock if no prune or verify holds the exclusive one; `None` if one does.
    pub fn try_lock_shared(&self) -> Result<Option<StoreLock>, Error> {
        let path = self.store_lock_path();
        Ok(try_lock_file(&path, false)?.map(|file| StoreLock { _file: file }))
    }

    /// Takes the exclusive lock, waiting until no other process (or [`Store`] value) holds
    /// any lock of this store.
    pub fn lock_exclusive(&self) -> Result<ExclusiveLock, Error> {
        let path = self.store_lock_path();
        let file = lock_file(&path, true)?;
        Ok(ExclusiveLock {
            _file: file,
            root: self.root().to_path_buf(),
        })
    }

    /// Takes the exclusive lock if nobody else holds a lock of this store; `None` if someone
    /// does (the CLI then says it is waiting and calls [`lock_exclusive`](Self::lock_exclusive)).
    pub fn try_lock_exclusive(&self) -> Result<Option<ExclusiveLock>, Error> {
        let path = self.store_lock_path();
        Ok(try_lock_file(&path, true)?.map(|file| ExclusiveLock {
            _file: file,
            root: self.root().to_path_buf(),
        }))
    }
}

/// The lock a build holds while it builds the node of one key, so that two builds (threads or
/// processes) that miss the same key build it once: the second waits, then finds the key.
/// Unlocked when dropped.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

impl Store {
    /// Takes the build lock of `key` (blake3 hex), waiting while another build holds it. Locks
    /// are striped over 256 files (`locks/build-XX.lock`, by the key's first byte): unrelated
    /// keys rarely share one, and when they do they only take turns.
    pub fn lock_key(&self, key: &str) -> Result<KeyLock, Error> {
        let path = self.striped_lock("build", key)?;
        Ok(KeyLock {
            _file: lock_file(&path, true)?,
        })
    }

    /// Takes the lock of writing a layer whose key is still pending, by the layer's identity
    /// (`plan::PendingKey::identity`, blake3 hex), waiting while another build holds it.
    /// Striped like [`Self::lock_key`], over files of their own (`locks/pending-XX.lock`): a
    /// build takes a key's lock while it holds a pending one, and a process must never wait
    /// for a lock file it holds itself.
    pub fn lock_pending(&self, identity: &str) -> Result<KeyLock, Error> {
        let path = self.striped_lock("pending", identity)?;
        Ok(KeyLock {
            _file: lock_file(&path, true)?,
        })
    }

    /// [`Self::lock_pending`] if no other build holds it; `None` if one does.
    pub fn try_lock_pending(&self, identity: &str) -> Result<Option<KeyLock>, Error> {
        let path = self.striped_lock("pending", identity)?;
        Ok(try_lock_file(&path, true)?.map(|file| KeyLock { _file: file }))
    }

    /// `locks/<kind>-XX.lock`, XX the first byte of `key` (hex).
    fn striped_lock(&self, kind: &str, key: &str) -> Result<PathBuf, Error> {
        let stripe = key
            .get(..2)
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
        let stripe = stripe.ok_or_else(|| Error::InvalidKey {
            key: key.to_string(),
        })?;
        Ok(self.locks_dir().join(format!("{kind}-{stripe}.lock")))
    }
}

/// Opens and locks `path`, waiting.
pub(crate) fn lock_file(path: &Path, exclusive: bool) -> Result<File, Error> {
    let file = open_lock_file(path)?;
    let locked = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    locked.map_err(|source| Error::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file)
}

/// Opens and locks `path` if it is free; `None` if it is held.
fn try_lock_file(path: &Path, exclusive: bool) -> Result<Option<File>, Error> {
    let file = open_lock_file(path)?;
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(Error::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}
