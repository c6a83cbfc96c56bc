//! Length-prefixed messages over a pipe: the first kernel baseline.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys::{fd_pair, owns_fd, retry};
use crate::transport::{Transport, unsupported};

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
    // SAFETY: `fds` points at two writable ints.
    let (r, w) = fd_pair(|fds| unsafe { libc::pipe2(fds, libc::O_CLOEXEC) })?;
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

owns_fd!(PipeSender, PipeReceiver);

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
}
