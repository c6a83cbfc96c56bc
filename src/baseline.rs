//! Kernel IPC baselines behind one trait (feature `baseline`).
//!
//! [`Transport`] is the one interface that `shmq bench` and the criterion
//! benches drive, so that every transport runs the same measurement code:
//!
//! | transport | type | messages |
//! |---|---|---|
//! | shmq SPSC | [`spsc::Producer`], [`spsc::Consumer`] | records in the ring |
//! | shmq MPMC | [`mpmc::Producer`], [`mpmc::Consumer`] | one slot each |
//! | pipe | [`PipeSender`], [`PipeReceiver`] ([`pipe`]) | 4-byte length prefix + payload, one `writev` per message, buffered reads |
//! | POSIX message queue | [`MessageQueue`] | one kernel message each |
//! | Unix-domain socket | [`SeqPacket`] ([`seqpacket_pair`]) | one `SOCK_SEQPACKET` datagram each |
//!
//! A [`Duplex`] joins a sending and a receiving half into one endpoint for
//! request/response patterns (two rings, two pipes, two queues).
//!
//! Errors are [`io::Error`]s; a peer that closed or died shows up as
//! [`io::ErrorKind::UnexpectedEof`] (see [`to_io`]).
//!
//! Kernel objects are cleaned up by their owners: pipes and sockets are file
//! descriptors closed on drop; a [`MessageQueue`] made with
//! [`MessageQueue::create`] removes its name on drop (or earlier, with
//! [`MessageQueue::unlink`]).
//!
//! ```
//! use shmq::baseline::{Transport, pipe};
//! let (mut tx, mut rx) = pipe()?;
//! tx.send(b"ping")?;
//! let mut buf = [0u8; 16];
//! let n = rx.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"ping");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::notify::Stats;
use crate::{Error, mpmc, spsc};

/// A message-oriented channel endpoint: what every benchmarked transport
/// offers.
///
/// Both calls block. A half that only sends (or only receives) returns
/// [`io::ErrorKind::Unsupported`] from the other call.
pub trait Transport {
    /// Sends `msg` as one message, waiting for room.
    ///
    /// # Errors
    /// The transport's error; [`io::ErrorKind::UnexpectedEof`] or
    /// [`io::ErrorKind::BrokenPipe`] when the peer is gone.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;

    /// Receives the next message into `buf`, waiting for one; returns its
    /// length.
    ///
    /// # Errors
    /// The transport's error; [`io::ErrorKind::UnexpectedEof`] when the peer
    /// closed (or died) and nothing is left; [`io::ErrorKind::InvalidInput`]
    /// if `buf` is too small for the message.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// The shmq endpoint counters (wake syscalls, sleeps), summed over both
    /// halves of a [`Duplex`]; `None` for kernel transports.
    fn stats(&self) -> Option<Stats> {
        None
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        (**self).send(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(buf)
    }
    fn stats(&self) -> Option<Stats> {
        (**self).stats()
    }
}

/// Converts a ring [`Error`] into an [`io::Error`] with a fitting kind:
/// `Disconnected` and `PeerDied` become [`io::ErrorKind::UnexpectedEof`],
/// `Timeout` [`io::ErrorKind::TimedOut`], `TooLarge` and `BufferTooSmall`
/// [`io::ErrorKind::InvalidInput`], `Corrupted` [`io::ErrorKind::InvalidData`].
///
/// ```
/// let e = shmq::baseline::to_io(shmq::Error::PeerDied);
/// assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
/// ```
pub fn to_io(e: Error) -> io::Error {
    let kind = match e {
        Error::Disconnected | Error::PeerDied => io::ErrorKind::UnexpectedEof,
        Error::Timeout => io::ErrorKind::TimedOut,
        Error::TooLarge { .. } | Error::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
        Error::Corrupted(_) => io::ErrorKind::InvalidData,
        Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
        Error::Interrupted => io::ErrorKind::Interrupted,
        // `Error` is non_exhaustive: new kinds map to Other.
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this endpoint cannot {what}"),
    )
}

fn add_stats(a: Stats, b: Stats) -> Stats {
    Stats {
        messages: a.messages + b.messages,
        bytes: a.bytes + b.bytes,
        waits: a.waits + b.waits,
        wake_syscalls: a.wake_syscalls + b.wake_syscalls,
        spurious_wakeups: a.spurious_wakeups + b.spurious_wakeups,
        sleep_ns: a.sleep_ns + b.sleep_ns,
        abandoned: a.abandoned + b.abandoned,
    }
}

impl Transport for spsc::Producer {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        spsc::Producer::send(self, msg).map_err(to_io)
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(unsupported("receive (it is an SPSC producer)"))
    }
    fn stats(&self) -> Option<Stats> {
        Some(spsc::Producer::stats(self))
    }
}

impl Transport for spsc::Consumer {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(unsupported("send (it is an SPSC consumer)"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf).map_err(to_io)
    }
    fn stats(&self) -> Option<Stats> {
        Some(spsc::Consumer::stats(self))
    }
}

impl Transport for mpmc::Producer {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        mpmc::Producer::send(self, msg).map_err(to_io)
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(unsupported("receive (it is an MPMC producer)"))
    }
    fn stats(&self) -> Option<Stats> {
        Some(mpmc::Producer::stats(self))
    }
}

impl Transport for mpmc::Consumer {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(unsupported("send (it is an MPMC consumer)"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf).map_err(to_io)
    }
    fn stats(&self) -> Option<Stats> {
        Some(mpmc::Consumer::stats(self))
    }
}

/// A sending half and a receiving half used as one endpoint: `send` goes to
/// `tx`, `recv` comes from `rx`.
///
/// ```
/// use shmq::baseline::{Duplex, Transport, pipe};
/// let (a_tx, b_rx) = pipe()?;
/// let (b_tx, a_rx) = pipe()?;
/// let mut a = Duplex::new(a_tx, a_rx);
/// let mut b = Duplex::new(b_tx, b_rx);
/// a.send(b"ping")?;
/// let mut buf = [0u8; 8];
/// let n = b.recv(&mut buf)?;
/// b.send(&buf[..n])?;
/// assert_eq!(a.recv(&mut buf)?, 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Duplex<T, R> {
    /// The sending half.
    pub tx: T,
    /// The receiving half.
    pub rx: R,
}

impl<T, R> Duplex<T, R> {
    /// Joins two halves.
    pub fn new(tx: T, rx: R) -> Self {
        Duplex { tx, rx }
    }
}

impl<T: Transport, R: Transport> Transport for Duplex<T, R> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.send(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.recv(buf)
    }
    fn stats(&self) -> Option<Stats> {
        match (self.tx.stats(), self.rx.stats()) {
            (Some(a), Some(b)) => Some(add_stats(a, b)),
            (a, b) => a.or(b),
        }
    }
}

/// Retries `f` while it fails with `EINTR`; converts -1 into the OS error.
fn retry(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let r = f();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length for
        // the duration of the call; `fd` is owned by the caller.
        let n = retry(|| unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) })?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Creates a pipe for length-prefixed messages. Both ends are close-on-exec;
/// to hand one to a child process, clear the flag in the child (e.g. in
/// `CommandExt::pre_exec`) and rebuild it there with
/// [`PipeSender::from_fd`] / [`PipeReceiver::from_fd`].
///
/// # Errors
/// The `pipe2` error (e.g. too many open files).
pub fn pipe() -> io::Result<(PipeSender, PipeReceiver)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and now ours alone.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((PipeSender::from_fd(w), PipeReceiver::from_fd(r)))
}

/// The writing end of a message pipe: each message is a 4-byte little-endian
/// length and the payload, written with one `writev` (more only if the pipe
/// takes it in parts).
#[derive(Debug)]
pub struct PipeSender {
    fd: OwnedFd,
}

impl PipeSender {
    /// Wraps the write end of a pipe (or FIFO).
    pub fn from_fd(fd: OwnedFd) -> PipeSender {
        PipeSender { fd }
    }

    /// Sets the pipe's kernel buffer (`F_SETPIPE_SZ`, default 64 KiB);
    /// returns the size granted (rounded up to a power-of-two number of
    /// pages).
    ///
    /// # Errors
    /// `EPERM` above `/proc/sys/fs/pipe-max-size` (1 MiB by default) without
    /// `CAP_SYS_RESOURCE`; `EBUSY` if the pipe holds more than `bytes`.
    pub fn set_capacity(&self, bytes: usize) -> io::Result<usize> {
        let arg = libc::c_int::try_from(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of ours.
        let r = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETPIPE_SZ, arg) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

impl AsFd for PipeSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PipeSender {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Transport for PipeSender {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let len = u32::try_from(msg.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "pipe messages are limited to 4 GiB",
            )
        })?;
        let hdr = len.to_le_bytes();
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: msg.as_ptr() as *mut libc::c_void,
                iov_len: msg.len(),
            },
        ];
        let fd = self.fd.as_raw_fd();
        // SAFETY: both iovecs point at live buffers of the stated lengths
        // (`hdr` and `msg` outlive the call); writev only reads them.
        let n = retry(|| unsafe { libc::writev(fd, iov.as_ptr(), 2) })?;
        if n < hdr.len() {
            write_all(fd, &hdr[n..])?;
            write_all(fd, msg)
        } else {
            write_all(fd, &msg[n - hdr.len()..])
        }
    }
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(unsupported("receive (it is a pipe's write end)"))
    }
}

/// The reading end of a message pipe. Reads are buffered (64 KiB at a
/// time), so a stream of small messages costs far fewer than one `read` each.
#[derive(Debug)]
pub struct PipeReceiver {
    fd: OwnedFd,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl PipeReceiver {
    /// Wraps the read end of a pipe (or FIFO).
    pub fn from_fd(fd: OwnedFd) -> PipeReceiver {
        PipeReceiver {
            fd,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
        }
    }

    /// Makes at least `n` bytes available in `buf[start..end]`.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if self.buf.len() < n {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let fd = self.fd.as_raw_fd();
        while self.end - self.start < n {
            let free = &mut self.buf[self.end..];
            // SAFETY: `free` is a valid writable buffer of its length.
            let got = retry(|| unsafe { libc::read(fd, free.as_mut_ptr().cast(), free.len()) })?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the pipe's writer closed",
                ));
            }
            self.end += got;
        }
        Ok(())
    }
}

impl AsFd for PipeReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PipeReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Transport for PipeReceiver {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(unsupported("send (it is a pipe's read end)"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill(4)?;
        let mut hdr = [0u8; 4];
        hdr.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(hdr) as usize;
        if len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the next message has {len} bytes, more than the buffer's {}",
                    buf.len()
                ),
            ));
        }
        self.fill(4 + len)?;
        let at = self.start + 4;
        buf[..len].copy_from_slice(&self.buf[at..at + len]);
        self.start = at + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(len)
    }
}

/// Creates a connected pair of Unix-domain `SOCK_SEQPACKET` sockets
/// (close-on-exec; see [`pipe`] for handing one to a child).
///
/// # Errors
/// The `socketpair` error.
pub fn seqpacket_pair() -> io::Result<(SeqPacket, SeqPacket)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: two open descriptors that only we hold.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((SeqPacket::from_fd(a), SeqPacket::from_fd(b)))
}

/// One end of a Unix-domain `SOCK_SEQPACKET` connection: both directions,
/// one datagram per message, message boundaries kept by the kernel.
///
/// Empty messages are refused: a zero-length datagram cannot be told apart
/// from the peer closing.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Wraps a connected `SOCK_SEQPACKET` socket.
    pub fn from_fd(fd: OwnedFd) -> SeqPacket {
        SeqPacket { fd }
    }

    /// Asks for a send buffer of `bytes` (`SO_SNDBUF`; the kernel doubles
    /// the value and caps it at `/proc/sys/net/core/wmem_max`); returns the
    /// size granted. The send buffer bounds how much a Unix datagram socket
    /// queues towards its peer.
    ///
    /// # Errors
    /// The `setsockopt` error.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` is a live c_int and `len` its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&v as *const libc::c_int).cast(),
                len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut got: libc::c_int = 0;
        let mut glen = len;
        // SAFETY: `got` and `glen` are valid out-pointers of the right size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut got as *mut libc::c_int).cast(),
                &mut glen,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(got as usize)
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SeqPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Transport for SeqPacket {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if msg.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty messages cannot be sent over SOCK_SEQPACKET (they read as end of stream)",
            ));
        }
        let fd = self.fd.as_raw_fd();
        // SAFETY: `msg` is a valid readable buffer of its length.
        let n = retry(|| unsafe {
            libc::send(fd, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL)
        })?;
        debug_assert_eq!(n, msg.len(), "SOCK_SEQPACKET sends whole datagrams");
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: `buf` is a valid writable buffer of its length. MSG_TRUNC
        // makes the kernel return the datagram's real length.
        let n = retry(|| unsafe {
            libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC)
        })?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the socket's peer closed",
            ));
        }
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {n}-byte datagram was truncated to the buffer's {}",
                    buf.len()
                ),
            ));
        }
        Ok(n)
    }
}

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
    fn pipe_messages_keep_boundaries() {
        let (mut tx, mut rx) = pipe().unwrap();
        let sizes = [1usize, 0, 100, 70_000, 3];
        let writer = std::thread::spawn(move || {
            for n in sizes {
                tx.send(&vec![n as u8; n]).unwrap();
            }
        });
        let mut buf = vec![0u8; 1 << 17];
        for n in sizes {
            assert_eq!(rx.recv(&mut buf).unwrap(), n);
            assert!(buf[..n].iter().all(|&b| b == n as u8));
        }
        writer.join().unwrap();
        assert_eq!(
            rx.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn seqpacket_round_trip() {
        let (mut a, mut b) = seqpacket_pair().unwrap();
        a.send(b"hello").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf).unwrap(), 5);
        assert!(a.send(b"").is_err());
        drop(a);
        assert_eq!(
            b.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

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
