//! Unix-domain `SOCK_SEQPACKET` sockets: the socket baseline.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{fd_pair, owns_fd, retry};
use crate::transport::Transport;

/// Creates a connected pair of Unix-domain `SOCK_SEQPACKET` sockets
/// (close-on-exec; see [`pipe`](crate::pipe) for handing one to a child).
///
/// # Errors
/// The `socketpair` error.
pub fn seqpacket_pair() -> io::Result<(SeqPacket, SeqPacket)> {
    let (a, b) = fd_pair(|fds| {
        // SAFETY: `fds` points at two writable ints.
        unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds,
            )
        }
    })?;
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

owns_fd!(SeqPacket);

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
