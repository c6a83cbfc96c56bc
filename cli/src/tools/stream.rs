//! `shmq send` (stdin into a ring) and `shmq recv` (a ring to stdout).
//!
//! SPSC `send` reads stdin straight into a write grant (zero-copy: one
//! `read(2)` into shared memory per message). MPMC `send` reads into a local
//! buffer first and then copies: a claimed MPMC slot blocks every message
//! behind it, so we never hold one across a read that may wait for input.
//! `recv` writes messages from their read grants; small messages are
//! gathered in a buffer that is flushed whenever the ring runs empty, so
//! interactive pipelines see every message without delay.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use shmq::{Error, OpenError, mpmc, spsc};

use super::signals::{self, TICK};
use super::{FAILED, KindArg, OK, RecvArgs, SendArgs, USAGE, fail, open_code};

/// Largest chunk `send` reads at once. Measured on a 2-core VM, 256 MiB
/// from a file: 64 KiB chunks 1.3 GiB/s, 256 KiB 1.4-1.7, the largest
/// message of a 1 MiB ring (512 KiB) 1.8-2.2: fewer, larger records win.
const CHUNK_MAX: usize = 1 << 20;
/// How long `send` waits for room for a whole chunk before it reads first.
const ROOM_WAIT: Duration = Duration::from_millis(20);
/// Output buffer: messages at least this large bypass it.
const OUT_BUF: usize = 64 << 10;
/// Input buffer of `send --lines`.
const IN_BUF: usize = 64 << 10;

/// Why `send` or `recv` stopped early.
enum Fail {
    Open(OpenError),
    Ring(Error),
    Input(io::Error),
    Output(io::Error),
    TooLong { line: u64, len: usize, max: usize },
    Lost(u64),
    Interrupted(i32),
}

impl Fail {
    fn report(self, cmd: &str, name: &str) -> u8 {
        let peer = if cmd == "send" { "receiver" } else { "sender" };
        match self {
            Fail::Open(e) => fail(cmd, open_code(&e), e),
            Fail::Ring(Error::PeerDied) => fail(
                cmd,
                FAILED,
                format!(
                    "the {peer}'s process died without detaching from {name:?}{}",
                    if cmd == "recv" {
                        " (everything it had committed was written)"
                    } else {
                        ""
                    }
                ),
            ),
            Fail::Ring(Error::Disconnected) => fail(
                cmd,
                FAILED,
                format!(
                    "the {peer} detached from {name:?} before everything was sent; what was \
                     sent but not read stays there for a later `shmq recv {name}` \
                     (`shmq rm {name}` removes it)"
                ),
            ),
            Fail::Ring(Error::Corrupted(what)) => fail(
                cmd,
                FAILED,
                format!("segment {name:?} is corrupted ({what}); remove it with `shmq rm {name}`"),
            ),
            Fail::Ring(e) => fail(cmd, FAILED, format!("segment {name:?}: {e}")),
            Fail::Input(e) => fail(cmd, FAILED, format!("reading stdin: {e}")),
            // The reader of our stdout went away (`| head`): not an error.
            Fail::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => OK,
            Fail::Output(e) => fail(cmd, FAILED, format!("writing stdout: {e}")),
            Fail::TooLong { line, len, max } => fail(
                cmd,
                USAGE,
                format!(
                    "line {line} has {len} bytes or more, but the largest message of {name:?} \
                     is {max} bytes; use a ring with a larger --capacity (spsc) or \
                     --slot-size (mpmc)"
                ),
            ),
            Fail::Lost(n) => fail(
                cmd,
                FAILED,
                format!("{n} message(s) lost: a sender's process died while writing them"),
            ),
            // Quiet, like other tools stopped with Ctrl-C; the shell's
            // convention for the code.
            Fail::Interrupted(sig) => (128 + sig).clamp(0, 255) as u8,
        }
    }
}

/// A private descriptor for fd 0 or 1, so reads and writes bypass the
/// standard library's small (and, for stdout, line-flushing) buffers.
fn dup_fd(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    Ok(File::from(fd.try_clone_to_owned()?))
}

/// `Err(Interrupted)` once SIGINT, SIGTERM or SIGHUP was caught.
fn interrupted() -> Result<(), Fail> {
    match signals::caught() {
        Some(sig) => Err(Fail::Interrupted(sig)),
        None => Ok(()),
    }
}

/// Stdin, whose reads give up within [`TICK`] once a signal was caught.
struct Input(File);

impl Input {
    fn stdin() -> Result<Input, Fail> {
        dup_fd(io::stdin().as_fd()).map(Input).map_err(Fail::Input)
    }

    /// What a read error means: an interruption, or an input error.
    fn fail(e: io::Error) -> Fail {
        match signals::caught() {
            Some(sig) => Fail::Interrupted(sig),
            None => Fail::Input(e),
        }
    }

    /// One `read(2)`; 0 at end of input.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Fail> {
        self.read(buf).map_err(Input::fail)
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // Wait for input in slices of TICK, checking for a signal between
        // them: a signal that lands just before a blocking read(2) would
        // otherwise go unnoticed until more input came.
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            if signals::caught().is_some() {
                return Err(io::Error::other("interrupted by a signal"));
            }
            pfd.revents = 0;
            // SAFETY: `pfd` is a valid pollfd for the duration of the call;
            // the descriptor is ours (a dup of stdin).
            let n = unsafe { libc::poll(&mut pfd, 1, TICK.as_millis() as libc::c_int) };
            if n == 0 {
                continue;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

/// Runs a `_timeout` operation in slices of [`TICK`] until it completes,
/// fails, or a signal is caught.
fn blocking(mut op: impl FnMut(std::time::Duration) -> Result<(), Error>) -> Result<(), Fail> {
    loop {
        interrupted()?;
        match op(TICK) {
            Err(Error::Timeout) => {}
            r => return r.map_err(Fail::Ring),
        }
    }
}

/// Reads stdin line by line, at most `max + 1` bytes per line, and hands
/// each line (without its '\n') to `send`.
fn for_each_line(max: usize, mut send: impl FnMut(&[u8]) -> Result<(), Fail>) -> Result<(), Fail> {
    let mut rd = BufReader::with_capacity(IN_BUF, Input::stdin()?);
    let mut line = Vec::new();
    let mut no = 0u64;
    loop {
        line.clear();
        // Bounded: a huge input without newlines never grows `line` past
        // one byte more than the largest message.
        let n = (&mut rd)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(Input::fail)?;
        if n == 0 {
            return Ok(());
        }
        no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > max {
            return Err(Fail::TooLong {
                line: no,
                len: line.len(),
                max,
            });
        }
        send(&line)?;
    }
}

/// `shmq send NAME`: stdin into the ring.
pub fn send(a: SendArgs) -> u8 {
    signals::install();
    let r = match a.ring.kind {
        KindArg::Spsc => send_spsc(&a),
        KindArg::Mpmc => send_mpmc(&a),
    };
    match r {
        Ok(()) => OK,
        Err(f) => f.report("send", &a.ring.name),
    }
}

fn send_spsc(a: &SendArgs) -> Result<(), Fail> {
    let mut tx =
        spsc::Producer::open_or_create(&a.ring.name, &a.ring.options()).map_err(Fail::Open)?;
    if a.lines {
        let max = tx.max_message_len();
        return for_each_line(max, |l| blocking(|t| tx.send_timeout(l, t)));
    }
    let mut input = Input::stdin()?;
    let chunk = tx.max_message_len().min(CHUNK_MAX);
    let mut spare = Vec::new();
    loop {
        interrupted()?;
        // Zero-copy: read stdin straight into the ring, when there is room
        // for a whole chunk soon.
        match tx.reserve_timeout(chunk, ROOM_WAIT) {
            Ok(mut grant) => {
                let n = input.read_some(&mut grant)?;
                if n == 0 {
                    // End of input: the grant drops uncommitted (writes
                    // nothing); the producer detaches cleanly when `tx` drops.
                    return Ok(());
                }
                grant.commit(n);
            }
            // The ring stays full (a slow receiver, or none yet): read first
            // and wait for room for just what was read. Waiting for a chunk's
            // room before reading would never learn of the end of input if
            // the rest fits in the ring but a whole chunk does not.
            Err(Error::Timeout) => {
                spare.resize(chunk, 0);
                let n = input.read_some(&mut spare)?;
                if n == 0 {
                    return Ok(());
                }
                blocking(|t| tx.send_timeout(&spare[..n], t))?;
            }
            Err(e) => return Err(Fail::Ring(e)),
        }
    }
}

fn send_mpmc(a: &SendArgs) -> Result<(), Fail> {
    let mut tx =
        mpmc::Producer::open_or_create(&a.ring.name, &a.ring.options()).map_err(Fail::Open)?;
    let max = tx.max_message_len();
    if a.lines {
        return for_each_line(max, |l| blocking(|t| tx.send_timeout(l, t)));
    }
    let mut input = Input::stdin()?;
    let mut buf = vec![0u8; max];
    loop {
        interrupted()?;
        let n = input.read_some(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        blocking(|t| tx.send_timeout(&buf[..n], t))?;
    }
}

/// Buffered stdout, optionally with a '\n' after each message.
struct Output {
    w: BufWriter<File>,
    lines: bool,
}

impl Output {
    fn new(lines: bool) -> Result<Output, Fail> {
        let f = dup_fd(io::stdout().as_fd()).map_err(Fail::Output)?;
        Ok(Output {
            w: BufWriter::with_capacity(OUT_BUF, f),
            lines,
        })
    }

    fn put(&mut self, msg: &[u8]) -> Result<(), Fail> {
        self.w.write_all(msg).map_err(Fail::Output)?;
        if self.lines {
            self.w.write_all(b"\n").map_err(Fail::Output)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Fail> {
        self.w.flush().map_err(Fail::Output)
    }
}

/// `shmq recv NAME`: the ring to stdout.
pub fn recv(a: RecvArgs) -> u8 {
    signals::install();
    let r = Output::new(a.lines).and_then(|mut out| {
        let r = match a.ring.kind {
            KindArg::Spsc => recv_spsc(&a, &mut out),
            KindArg::Mpmc => recv_mpmc(&a, &mut out),
        };
        // Whatever happened, write out what was received first.
        let flushed = out.flush();
        r.and(flushed)
    });
    match r {
        Ok(()) => OK,
        Err(f) => f.report("recv", &a.ring.name),
    }
}

/// The receive loop for either ring kind: take what is there without
/// waiting; when the ring runs empty, flush stdout, then wait (in slices,
/// to notice signals).
macro_rules! recv_loop {
    ($rx:ident, $out:ident, $count:expr) => {{
        let mut left = $count.unwrap_or(u64::MAX);
        while left > 0 {
            interrupted()?;
            match $rx.try_recv() {
                Ok(m) => {
                    $out.put(&m)?;
                    left -= 1;
                    continue;
                }
                Err(Error::Empty) => {}
                Err(Error::Disconnected) => break,
                Err(e) => return Err(Fail::Ring(e)),
            }
            $out.flush()?;
            match $rx.recv_timeout(TICK) {
                Ok(m) => {
                    $out.put(&m)?;
                    left -= 1;
                }
                Err(Error::Timeout) => {}
                Err(Error::Disconnected) => break,
                Err(e) => return Err(Fail::Ring(e)),
            }
        }
    }};
}

/// Options of a receiver. With `--count`, the receiver may stop before the
/// sender is done: it keeps the segment (the last endpoint would remove it,
/// unread messages and all) and lets [`tidy`] decide afterwards.
fn recv_options(a: &RecvArgs) -> shmq::Options {
    a.ring.options().keep(a.count.is_some())
}

/// After a `--count` receiver detached: removes the segment if nobody uses
/// it any more and nothing is left to read.
fn tidy(a: &RecvArgs) {
    if a.count.is_none() {
        return;
    }
    if let Ok(info) = shmq::inspect(&a.ring.name) {
        if info.stale && info.used == 0 {
            let _ = shmq::remove(&a.ring.name);
        }
    }
}

fn recv_spsc(a: &RecvArgs, out: &mut Output) -> Result<(), Fail> {
    let mut rx =
        spsc::Consumer::open_or_create(&a.ring.name, &recv_options(a)).map_err(Fail::Open)?;
    let r = (|| {
        recv_loop!(rx, out, a.count);
        Ok(())
    })();
    drop(rx);
    tidy(a);
    r
}

fn recv_mpmc(a: &RecvArgs, out: &mut Output) -> Result<(), Fail> {
    let mut rx =
        mpmc::Consumer::open_or_create(&a.ring.name, &recv_options(a)).map_err(Fail::Open)?;
    let died_before = rx.producers_died();
    let r = (|| {
        recv_loop!(rx, out, a.count);
        Ok(())
    })();
    // An MPMC ring reports a dead sender as gone, like a clean one; the
    // ring's count of dead producers and of half-written messages tell them
    // apart.
    let lost = rx.stats().abandoned;
    let died = rx.producers_died() > died_before;
    drop(rx);
    tidy(a);
    match (r, lost) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) if !died => Ok(()),
        (Ok(()), 0) => Err(Fail::Ring(Error::PeerDied)),
        (Ok(()), n) => Err(Fail::Lost(n)),
    }
}
