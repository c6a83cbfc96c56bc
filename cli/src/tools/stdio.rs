//! Stdin and stdout of `send` and `recv`: private descriptors (reads and
//! writes bypass the standard library's small and line-flushing buffers),
//! stdin waits that a signal always ends, and an output buffer that says
//! when its bytes are out, so `recv` frees ring space only then.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use super::signals;

/// Output buffer size: `recv` gathers up to this much before one
/// `write(2)`; a message that does not fit is written straight from the
/// ring.
pub const OUT_BUF: usize = 64 << 10;

/// A private descriptor for fd 0 or 1.
fn dup_fd(fd: BorrowedFd<'_>) -> io::Result<File> {
    Ok(File::from(fd.try_clone_to_owned()?))
}

/// Stdin, whose reads end with [`signals::interrupted_error`] once a
/// signal was caught, however long they would have waited.
pub struct Input(File);

impl Input {
    pub fn stdin() -> io::Result<Input> {
        dup_fd(io::stdin().as_fd()).map(Input)
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Wait for input together with the signal self-pipe, then read
            // what is there: a signal that lands just before the wait is
            // seen by it. (If the input vanishes between the two, to
            // another reader of the same pipe, the read blocks; a signal
            // then ends it with EINTR, as the handler has no SA_RESTART.)
            signals::wait_readable(self.0.as_fd())?;
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

/// Stdout, buffered, optionally with a '\n' after each message.
pub struct Output {
    file: File,
    buf: Vec<u8>,
    lines: bool,
}

impl Output {
    pub fn stdout(lines: bool) -> io::Result<Output> {
        Ok(Output {
            file: dup_fd(io::stdout().as_fd())?,
            buf: Vec::with_capacity(OUT_BUF),
            lines,
        })
    }

    /// Adds one message (and its '\n' with `--lines`). What does not fit
    /// the buffer is written at once: the buffer first, then a large
    /// message straight from `msg`. When this returns, `msg` is no longer
    /// needed, but it is only sure to be out after [`flush`](Self::flush).
    pub fn put(&mut self, msg: &[u8]) -> io::Result<()> {
        let nl = usize::from(self.lines);
        if self.buf.len() + msg.len() + nl > OUT_BUF {
            self.flush()?;
        }
        if msg.len() + nl > OUT_BUF {
            let mut parts = [IoSlice::new(msg), IoSlice::new(b"\n")];
            return write_all_vectored(&mut self.file, &mut parts[..1 + nl]);
        }
        self.buf.extend_from_slice(msg);
        if self.lines {
            self.buf.push(b'\n');
        }
        Ok(())
    }

    /// Writes everything buffered; returns once `write(2)` took all of it.
    /// After an error the buffer is dropped: what of it was written is not
    /// known, and writing it again could repeat it.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// `write_all` for several slices: one `writev(2)` per round.
fn write_all_vectored(f: &mut File, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match f.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
