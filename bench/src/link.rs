//! What the processes of one measurement share: segment and queue names,
//! and descriptors (pipes, a socket pair, a memfd).
//!
//! The parent's [`Link`] makes each object the first time an endpoint asks
//! for it; a child's link holds what its parent passed (names, and the
//! descriptors it inherited). Endpoints get their own copies (`dup`), so the
//! parent closes the link's descriptors once its children are running
//! ([`Link::close_fds`]) and a child drops its link once its endpoint is
//! open: a peer that exits then reads as end of file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::{MessageQueue, pipe, seqpacket_pair};

/// Names and descriptors of one measurement; the parent's removes its
/// segments (if their last endpoint did not already) and queues on drop.
#[derive(Debug)]
pub struct Link {
    parent: bool,
    names: Vec<String>,
    fds: Vec<OwnedFd>,
    /// The queues the parent made, removed (`mq_unlink`) on drop.
    queues: Vec<MessageQueue>,
}

/// Unique names within this process (a counter; no shared memory involved).
static NEXT: Mutex<u64> = Mutex::new(0);

pub(crate) fn unique_name() -> String {
    let mut n = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    format!("bench-{}-{}", std::process::id(), *n)
}

impl Link {
    /// The parent's link: objects are made on first use.
    pub fn new() -> Link {
        Link {
            parent: true,
            names: Vec::new(),
            fds: Vec::new(),
            queues: Vec::new(),
        }
    }

    /// A child's link: the names and the inherited descriptors its parent
    /// passed (see [`names`](Self::names), [`raw_fds`](Self::raw_fds)).
    ///
    /// # Safety
    /// Each of `fds` must be an open descriptor that nothing else in this
    /// process owns (the link closes them when dropped).
    pub unsafe fn inherited(names: Vec<String>, fds: &[RawFd]) -> Link {
        Link {
            parent: false,
            names,
            // SAFETY: the caller guarantees each descriptor is open and ours
            // alone.
            fds: fds
                .iter()
                .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect(),
            queues: Vec::new(),
        }
    }

    /// Whether this is the parent's link (it creates; children open).
    pub fn is_parent(&self) -> bool {
        self.parent
    }

    /// The names made so far, for the children.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The descriptors made so far, for the children to inherit.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// Closes the link's descriptors (endpoints keep their own copies).
    pub fn close_fds(&mut self) {
        self.fds.clear();
    }

    /// Grows `have` to `n` entries with `make` (the parent), or reports
    /// what the parent did not pass (a child).
    fn ensure(parent: bool, have: usize, n: usize, what: &str) -> io::Result<bool> {
        if have >= n {
            return Ok(false);
        }
        if !parent {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the parent passed {have} {what}, this endpoint needs {n}"),
            ));
        }
        Ok(true)
    }

    /// The name of shmq segment `i`.
    pub(crate) fn segment(&mut self, i: usize) -> io::Result<&str> {
        while Self::ensure(self.parent, self.names.len(), i + 1, "names")? {
            self.names.push(unique_name());
        }
        Ok(&self.names[i])
    }

    /// The name of POSIX queue `i` (the parent creates it: `depth`
    /// messages of `size` bytes).
    pub(crate) fn queue(&mut self, i: usize, depth: usize, size: usize) -> io::Result<&str> {
        while Self::ensure(self.parent, self.names.len(), i + 1, "names")? {
            let name = format!("/shmq-{}", unique_name());
            self.queues.push(MessageQueue::create(&name, depth, size)?);
            self.names.push(name);
        }
        Ok(&self.names[i])
    }

    /// A copy of descriptor `i`.
    fn dup(&self, i: usize) -> io::Result<OwnedFd> {
        self.fds[i].try_clone()
    }

    /// Pipe `i` as copies of its (read, write) ends; the parent sets its
    /// buffer to `buffer` bytes (0: the kernel default).
    pub(crate) fn pipe(&mut self, i: usize, buffer: usize) -> io::Result<(OwnedFd, OwnedFd)> {
        while Self::ensure(self.parent, self.fds.len(), 2 * (i + 1), "descriptors")? {
            let (tx, rx) = pipe()?;
            if buffer > 0 {
                tx.set_capacity(buffer)?;
            }
            self.fds.push(rx.into());
            self.fds.push(tx.into());
        }
        Ok((self.dup(2 * i)?, self.dup(2 * i + 1)?))
    }

    /// End `i` (0 or 1) of a connected `SOCK_SEQPACKET` pair; the parent
    /// sets both send buffers to `buffer` bytes (0: the kernel default).
    pub(crate) fn socket(&mut self, i: usize, buffer: usize) -> io::Result<OwnedFd> {
        if Self::ensure(self.parent, self.fds.len(), 2, "descriptors")? {
            let (a, b) = seqpacket_pair()?;
            if buffer > 0 {
                a.set_send_buffer(buffer)?;
                b.set_send_buffer(buffer)?;
            }
            self.fds.push(a.into());
            self.fds.push(b.into());
        }
        self.dup(i)
    }

    /// A copy of a shared-memory file of `len` bytes (an anonymous memfd).
    pub(crate) fn memfd(&mut self, len: usize) -> io::Result<OwnedFd> {
        if Self::ensure(self.parent, self.fds.len(), 1, "descriptors")? {
            // SAFETY: the name is a NUL-terminated literal.
            let fd = unsafe { libc::memfd_create(c"shmq-bench".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: memfd_create returned a fresh descriptor only we hold.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a plain syscall on our own descriptor.
            if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
                return Err(io::Error::last_os_error());
            }
            self.fds.push(fd);
        }
        self.dup(0)
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.parent {
            for n in self.names.iter().filter(|n| !n.starts_with('/')) {
                // Normally the last endpoint removed it already; one still
                // in use is refused, which is right.
                let _ = shmq::remove(n);
            }
        }
        // `queues` unlink their names as they drop.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_link_reports_what_its_parent_did_not_pass() {
        // SAFETY: no descriptors.
        let mut child = unsafe { Link::inherited(vec!["x".into()], &[]) };
        assert_eq!(child.segment(0).unwrap(), "x");
        let e = child.segment(1).unwrap_err();
        assert!(e.to_string().contains("passed 1 names"), "{e}");
        assert!(child.pipe(0, 0).is_err());
    }

    #[test]
    fn the_parent_makes_objects_once_and_hands_out_copies() {
        let mut link = Link::new();
        let a = link.segment(0).unwrap().to_owned();
        assert_eq!(link.segment(0).unwrap(), a);
        assert_ne!(link.segment(1).unwrap(), a);
        let (r, w) = link.pipe(0, 0).unwrap();
        assert_eq!(link.raw_fds().len(), 2);
        assert!(!link.raw_fds().contains(&r.as_raw_fd()));
        let (_r1, _w1) = link.pipe(1, 0).unwrap();
        assert_eq!(link.raw_fds().len(), 4);
        drop((r, w));
        link.close_fds();
        assert!(link.raw_fds().is_empty());
    }
}
