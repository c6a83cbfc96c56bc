//! POSIX message queues (`mq_open`): the message-queue baseline.

use std::ffi::CString;
use std::io;
use std::time::Duration;

use crate::sys::retry;
use crate::transport::Transport;

/// The largest message size an unprivileged process may give a POSIX
/// message queue (`/proc/sys/fs/mqueue/msgsize_max`, usually 8192), if
/// readable. Processes with `CAP_SYS_RESOURCE` may go up to 16 MiB.
pub fn mq_msgsize_max() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One direction of a POSIX message queue (`mq_open`), opened read-write so
/// the same handle can send and receive.
///
/// Sends and receives wait at most the handle's timeout (10 s unless
/// [`set_timeout`](Self::set_timeout) says otherwise): a queue has no notion
/// of a peer that went away, so the timeout is what ends a wait for a dead
/// one ([`io::ErrorKind::TimedOut`]).
///
/// The queue made by [`create`](Self::create) is removed (`mq_unlink`) when
/// that handle drops, or earlier by [`unlink`](Self::unlink).
#[derive(Debug)]
pub struct MessageQueue {
    mqd: libc::mqd_t,
    name: CString,
    owned: bool,
    msgsize: usize,
    timeout: Duration,
}

impl MessageQueue {
    /// Creates queue `name` (which must start with `/`, e.g.
    /// `/shmq-bench-1234-0`; it must not exist), mode 0600, holding at most
    /// `max_msgs` messages of at most `msgsize` bytes.
    ///
    /// # Errors
    /// `mq_open`'s error, explained: `InvalidInput` when `msgsize` or
    /// `max_msgs` exceed what this process may ask for
    /// (`/proc/sys/fs/mqueue/msgsize_max` and `msg_max` without
    /// `CAP_SYS_RESOURCE`), `QuotaExceeded`-like (`EMFILE`) when the user's
    /// `RLIMIT_MSGQUEUE` bytes are used up, `AlreadyExists`.
    pub fn create(name: &str, max_msgs: usize, msgsize: usize) -> io::Result<MessageQueue> {
        let cname = mq_name(name)?;
        // SAFETY: mq_attr is plain old data; all-zero is a valid value.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = max_msgs as libc::c_long;
        attr.mq_msgsize = msgsize as libc::c_long;
        // SAFETY: `cname` is NUL-terminated and `attr` valid for the call.
        let mqd = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if mqd == -1 {
            let e = io::Error::last_os_error();
            let detail = match e.raw_os_error() {
                Some(libc::EINVAL) => format!(
                    "{max_msgs} messages of {msgsize} bytes exceed this process's limits \
                     (/proc/sys/fs/mqueue/msg_max, msgsize_max = {}; CAP_SYS_RESOURCE lifts them)",
                    mq_msgsize_max().map_or("?".to_owned(), |m| m.to_string())
                ),
                Some(libc::EMFILE) => {
                    "the user's RLIMIT_MSGQUEUE byte quota is used up (ulimit -q)".to_owned()
                }
                _ => e.to_string(),
            };
            return Err(io::Error::new(
                e.kind(),
                format!("mq_open({name}) failed: {detail}"),
            ));
        }
        Ok(MessageQueue {
            mqd,
            name: cname,
            owned: true,
            msgsize,
            timeout: Duration::from_secs(10),
        })
    }

    /// Opens an existing queue read-write.
    ///
    /// # Errors
    /// `mq_open`'s error (`NotFound`, `PermissionDenied`, …).
    pub fn open(name: &str) -> io::Result<MessageQueue> {
        let cname = mq_name(name)?;
        // SAFETY: `cname` is NUL-terminated.
        let mqd = unsafe { libc::mq_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if mqd == -1 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mq_open({name}) failed: {e}"),
            ));
        }
        // SAFETY: mq_attr is plain old data; all-zero is a valid value.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: `mqd` is an open queue descriptor, `attr` a valid out-pointer.
        if unsafe { libc::mq_getattr(mqd, &mut attr) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: `mqd` is open and not used after this.
            unsafe { libc::mq_close(mqd) };
            return Err(e);
        }
        Ok(MessageQueue {
            mqd,
            name: cname,
            owned: false,
            msgsize: attr.mq_msgsize as usize,
            timeout: Duration::from_secs(10),
        })
    }

    /// How long a send or receive may wait before failing with `TimedOut`.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// The largest message the queue accepts.
    pub fn msgsize(&self) -> usize {
        self.msgsize
    }

    /// Removes the queue's name now (open handles keep working). Idempotent.
    ///
    /// # Errors
    /// `mq_unlink`'s error other than "not found".
    pub fn unlink(&mut self) -> io::Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.owned = false;
        // SAFETY: `name` is NUL-terminated.
        if unsafe { libc::mq_unlink(self.name.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn deadline(&self) -> libc::timespec {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid out-pointer. mq_timed* use CLOCK_REALTIME.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let mut nsec = now.tv_nsec + self.timeout.subsec_nanos() as libc::c_long;
        let mut sec = now
            .tv_sec
            .saturating_add(self.timeout.as_secs().min(1 << 32) as libc::time_t);
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec += 1;
        }
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    }
}

fn mq_name(name: &str) -> io::Result<CString> {
    if !name.starts_with('/') || name[1..].contains('/') || name.len() < 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message queue name {name:?} must be '/' followed by a name without '/'"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

impl Transport for MessageQueue {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let abs = self.deadline();
        let mqd = self.mqd;
        // SAFETY: `msg` is a valid readable buffer; `abs` lives across the call.
        retry(|| unsafe {
            libc::mq_timedsend(mqd, msg.as_ptr().cast(), msg.len(), 0, &abs) as isize
        })?;
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() < self.msgsize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mq_receive needs a buffer of the queue's message size ({}), got {}",
                    self.msgsize,
                    buf.len()
                ),
            ));
        }
        let abs = self.deadline();
        let mqd = self.mqd;
        // SAFETY: `buf` is a valid writable buffer of its length; `abs` lives
        // across the call.
        retry(|| unsafe {
            libc::mq_timedreceive(
                mqd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
                &abs,
            )
        })
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: `mqd` is open and used by nobody after this.
        unsafe { libc::mq_close(self.mqd) };
        let _ = self.unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_queue_round_trip_and_cleanup() {
        let name = format!("/shmq-test-{}", std::process::id());
        let mut q = match MessageQueue::create(&name, 4, 64) {
            Ok(q) => q,
            // Some sandboxes have no mqueue support.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return,
            Err(e) => panic!("{e}"),
        };
        let mut other = MessageQueue::open(&name).unwrap();
        q.send(b"abc").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(other.recv(&mut buf).unwrap(), 3);
        drop(other);
        drop(q);
        assert!(MessageQueue::open(&name).is_err(), "queue was not removed");
    }
}
