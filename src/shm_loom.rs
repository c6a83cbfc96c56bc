//! Loom's stand-in for named segments: the same `Segment` API over a model
//! of `/dev/shm` (a map from names to files, reset for every explored
//! execution) and of open-file-description locks, so that the loom models
//! run the real create, publish, open, attach, detach and remove protocols
//! of `endpoint.rs` and explore their interleavings (an opener racing the
//! last endpoint's removal, two creators racing for one name).
//!
//! Each `Segment` is one open file description: its locks conflict with
//! other descriptions' locks and go away when it is dropped, as the kernel's
//! do when the last descriptor of a description is closed.

use std::collections::HashMap;
use std::sync::Arc;

use loom::sync::Mutex;

use super::{Lock, validate_name};
use crate::error::OpenError;
use crate::heap::HeapBuf;
use crate::layout::{Geometry, Header};

/// A file: its bytes and the locks held on it.
struct File {
    buf: Arc<HeapBuf>,
    len: usize,
    /// (byte, owner description, kind).
    locks: Mutex<Vec<(u64, u64, Lock)>>,
}

loom::lazy_static! {
    /// The model of `/dev/shm`: name to file.
    static ref NAMES: Mutex<HashMap<String, Arc<File>>> = Mutex::new(HashMap::new());
}

/// An open description of a file in the model.
pub(crate) struct Segment {
    name: String,
    file: Arc<File>,
    desc: u64,
    len: usize,
}

impl Segment {
    pub(crate) fn create_private(
        name: &str,
        geo: &Geometry,
        _mode: u32,
    ) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let len = geo.total_size().expect("validated geometry") as usize;
        let file = Arc::new(File {
            buf: Arc::new(HeapBuf::new(*geo)),
            len,
            locks: Mutex::new(Vec::new()),
        });
        // Unnamed until published, as an O_TMPFILE file.
        let seg = Segment {
            name: String::new(),
            file,
            desc: crate::sync::unique_id(),
            len,
        };
        assert!(
            seg.try_lock(crate::layout::LOCK_INIT, Lock::Exclusive)
                .unwrap()
        );
        Ok(seg)
    }

    pub(crate) fn publish(&mut self, name: &str) -> Result<(), OpenError> {
        let mut names = NAMES.lock().unwrap();
        if names.contains_key(name) {
            return Err(OpenError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        names.insert(name.to_owned(), self.file.clone());
        self.name = name.to_owned();
        Ok(())
    }

    pub(crate) fn open(name: &str, _max_mode: u32, _min_size: u64) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let file = NAMES
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| OpenError::NotFound {
                name: name.to_owned(),
            })?;
        let len = file.len;
        Ok(Segment {
            name: name.to_owned(),
            file,
            desc: crate::sync::unique_id(),
            len,
        })
    }

    /// The region behind the file.
    pub(crate) fn heap(&self) -> &HeapBuf {
        &self.file.buf
    }

    pub(crate) fn is_short(&self) -> bool {
        false
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.len as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn header(&self) -> &Header {
        self.file.buf.header()
    }

    pub(crate) fn try_lock(&self, byte: u64, kind: Lock) -> std::io::Result<bool> {
        let mut locks = self.file.locks.lock().unwrap();
        let conflict = locks.iter().any(|&(b, d, k)| {
            b == byte && d != self.desc && (k == Lock::Exclusive || kind == Lock::Exclusive)
        });
        if conflict {
            return Ok(false);
        }
        locks.retain(|&(b, d, _)| !(b == byte && d == self.desc));
        locks.push((byte, self.desc, kind));
        Ok(true)
    }

    /// As the real one, yielding to the model's scheduler between tries.
    pub(crate) fn lock_until(&self, byte: u64, kind: Lock, _deadline: std::time::Instant) -> bool {
        loop {
            if self.try_lock(byte, kind).unwrap() {
                return true;
            }
            loom::thread::yield_now();
        }
    }

    pub(crate) fn unlock(&self, byte: u64) {
        let mut locks = self.file.locks.lock().unwrap();
        locks.retain(|&(b, d, _)| !(b == byte && d == self.desc));
    }

    pub(crate) fn is_locked(&self, byte: u64) -> bool {
        let locks = self.file.locks.lock().unwrap();
        locks.iter().any(|&(b, d, _)| b == byte && d != self.desc)
    }

    pub(crate) fn same_file(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }

    pub(crate) fn is_unlinked(&self) -> bool {
        let names = NAMES.lock().unwrap();
        !names.values().any(|f| Arc::ptr_eq(f, &self.file))
    }

    pub(crate) fn unlink_if_same(&self) -> bool {
        let mut names = NAMES.lock().unwrap();
        match names.get(&self.name) {
            Some(f) if Arc::ptr_eq(f, &self.file) => {
                names.remove(&self.name);
                true
            }
            _ => false,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Closing the description releases its locks.
        self.file
            .locks
            .lock()
            .unwrap()
            .retain(|&(_, d, _)| d != self.desc);
    }
}

/// The model's `/dev/shm` names, sorted (for the models' assertions).
pub(crate) fn names() -> Vec<String> {
    let mut v: Vec<String> = NAMES.lock().unwrap().keys().cloned().collect();
    v.sort();
    v
}
