//! `shmq send` (stdin into a ring) and `shmq recv` (a ring to stdout).
//!
//! SPSC `send` reads stdin straight into a write grant (zero-copy: one
//! `read(2)` into shared memory per message). MPMC `send` reads into a local
//! buffer first and then copies: a claimed MPMC slot blocks every message
//! behind it, so we never hold one across a read that may wait for input.
//!
//! SPSC `recv` frees ring space only after the messages it held were
//! written to stdout: it takes messages under a read batch, gathers them in
//! the output buffer (or writes a large one straight from the ring), and
//! releases the batch once `write(2)` returned. A receiver killed at any
//! point therefore loses nothing: its successor starts at the first
//! message not yet freed, and may write again what the killed one wrote
//! after its last release (at most [`OUT_BUF`] bytes, or one larger
//! message). MPMC delivers each message once, so a killed MPMC receiver
//! loses what it had taken and not yet written (at most the same amount).
//! Either way stdout is flushed whenever the ring runs empty, so
//! interactive pipelines see every message at once.

use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use shmq::{Error, OpenError, mpmc, spsc};

use super::signals;
use super::stdio::{Input, OUT_BUF, Output};
use super::{FAILED, KindArg, OK, RecvArgs, SendArgs, USAGE, fail, open_code};

/// Largest chunk `send` reads at once. Measured on a 2-core VM, 256 MiB
/// from a file: 64 KiB chunks 1.3 GiB/s, 256 KiB 1.4-1.7, the largest
/// message of a 1 MiB ring (512 KiB) 1.8-2.2: fewer, larger records win.
const CHUNK_MAX: usize = 1 << 20;
/// How long `send` waits for room for a whole chunk before it reads first.
const ROOM_WAIT: Duration = Duration::from_millis(20);
/// Input buffer of `send --lines`.
const IN_BUF: usize = 64 << 10;
/// How often `send --wait-receiver` looks for a new receiver.
const RECEIVER_POLL: Duration = Duration::from_millis(20);

/// Why `send` or `recv` stopped early.
enum Fail {
    Setup(io::Error),
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
        let rest = if cmd == "send" {
            format!(
                "; the rest of the input was not sent (what was sent but not read stays \
                 for a later `shmq recv {name}`; `shmq send --wait-receiver` waits for \
                 the next receiver instead)"
            )
        } else {
            " (everything it had committed was written)".to_owned()
        };
        match self {
            Fail::Setup(e) => fail(cmd, FAILED, format!("setting up signal handling: {e}")),
            Fail::Open(e) => fail(cmd, open_code(&e), e),
            Fail::Ring(Error::PeerDied) => fail(
                cmd,
                FAILED,
                format!("the {peer}'s process died without detaching from {name:?}{rest}"),
            ),
            Fail::Ring(Error::Disconnected) => fail(
                cmd,
                FAILED,
                format!("the {peer} detached from {name:?} before everything was sent{rest}"),
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

/// `Err(Interrupted)` once SIGINT, SIGTERM or SIGHUP was caught.
fn interrupted() -> Result<(), Fail> {
    match signals::caught() {
        Some(sig) => Err(Fail::Interrupted(sig)),
        None => Ok(()),
    }
}

/// What a ring error means: an interruption (the signal handler ended a
/// blocking call), or a ring failure.
fn ring_fail(e: Error) -> Fail {
    match (e, signals::caught()) {
        (Error::Interrupted, Some(sig)) => Fail::Interrupted(sig),
        (Error::Interrupted, None) => Fail::Interrupted(libc::SIGINT),
        (e, _) => Fail::Ring(e),
    }
}

/// What a stdin error means: an interruption, or an input error.
fn input_fail(e: io::Error) -> Fail {
    match signals::caught() {
        Some(sig) => Fail::Interrupted(sig),
        None => Fail::Input(e),
    }
}

/// Reads stdin line by line, at most `max + 1` bytes per line, and hands
/// each line (without its '\n') to `send`.
fn for_each_line(max: usize, mut send: impl FnMut(&[u8]) -> Result<(), Fail>) -> Result<(), Fail> {
    let mut rd = BufReader::with_capacity(IN_BUF, Input::stdin().map_err(Fail::Input)?);
    let mut line = Vec::new();
    let mut no = 0u64;
    loop {
        interrupted()?;
        line.clear();
        // Bounded: a huge input without newlines never grows `line` past
        // one byte more than the largest message.
        let n = (&mut rd)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(input_fail)?;
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

/// The receiver left or died: with `--wait-receiver`, pause before trying
/// again (a new receiver takes the slot and the send goes through);
/// without, that is the end, as for a writer whose pipe reader closed.
fn receiver_gone(wait: bool, e: Error) -> Result<(), Fail> {
    if wait && matches!(e, Error::Disconnected | Error::PeerDied) {
        return signals::pause(RECEIVER_POLL).map_err(Fail::Interrupted);
    }
    Err(ring_fail(e))
}

/// Runs a blocking send until it went through (see [`receiver_gone`]).
fn deliver(wait: bool, mut send: impl FnMut() -> Result<(), Error>) -> Result<(), Fail> {
    loop {
        match send() {
            Ok(()) => return Ok(()),
            Err(e) => receiver_gone(wait, e)?,
        }
    }
}

/// `shmq send NAME`: stdin into the ring.
pub fn send(a: SendArgs) -> u8 {
    let r = signals::install()
        .map_err(Fail::Setup)
        .and_then(|()| match a.ring.kind {
            KindArg::Spsc => send_spsc(&a),
            KindArg::Mpmc => send_mpmc(&a),
        });
    match r {
        Ok(()) => OK,
        Err(f) => f.report("send", &a.ring.name),
    }
}

fn send_spsc(a: &SendArgs) -> Result<(), Fail> {
    let mut tx =
        spsc::Producer::open_or_create(&a.ring.name, &a.ring.options()).map_err(Fail::Open)?;
    let _armed = signals::arm(tx.interrupter());
    let wait = a.wait_receiver;
    if a.lines {
        let max = tx.max_message_len();
        return for_each_line(max, |l| deliver(wait, || tx.send(l)));
    }
    let mut input = Input::stdin().map_err(Fail::Input)?;
    let chunk = tx.max_message_len().min(CHUNK_MAX);
    let mut spare = Vec::new();
    loop {
        interrupted()?;
        // Zero-copy: read stdin straight into the ring, when there is room
        // for a whole chunk soon.
        match tx.reserve_timeout(chunk, ROOM_WAIT) {
            Ok(mut grant) => {
                let n = input.read(&mut grant).map_err(input_fail)?;
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
                let n = input.read(&mut spare).map_err(input_fail)?;
                if n == 0 {
                    return Ok(());
                }
                deliver(wait, || tx.send(&spare[..n]))?;
            }
            Err(e) => receiver_gone(wait, e)?,
        }
    }
}

fn send_mpmc(a: &SendArgs) -> Result<(), Fail> {
    let mut tx =
        mpmc::Producer::open_or_create(&a.ring.name, &a.ring.options()).map_err(Fail::Open)?;
    let _armed = signals::arm(tx.interrupter());
    let wait = a.wait_receiver;
    let max = tx.max_message_len();
    if a.lines {
        return for_each_line(max, |l| deliver(wait, || tx.send(l)));
    }
    let mut input = Input::stdin().map_err(Fail::Input)?;
    let mut buf = vec![0u8; max];
    loop {
        interrupted()?;
        let n = input.read(&mut buf).map_err(input_fail)?;
        if n == 0 {
            return Ok(());
        }
        deliver(wait, || tx.send(&buf[..n]))?;
    }
}

/// `shmq recv NAME`: the ring to stdout.
pub fn recv(a: RecvArgs) -> u8 {
    let r = signals::install()
        .map_err(Fail::Setup)
        .and_then(|()| Output::stdout(a.lines).map_err(Fail::Output))
        .and_then(|mut out| match a.ring.kind {
            KindArg::Spsc => recv_spsc(&a, &mut out),
            KindArg::Mpmc => recv_mpmc(&a, &mut out),
        });
    match r {
        Ok(()) => OK,
        Err(f) => f.report("recv", &a.ring.name),
    }
}

/// Options of a receiver. With `--count`, the receiver may stop before the
/// sender is done: it keeps the segment (the last endpoint would remove it,
/// unread messages and all) and lets [`tidy`] decide afterwards.
fn recv_options(a: &RecvArgs) -> shmq::Options {
    a.ring.options().keep(a.count.is_some())
}

/// After a `--count` receiver detached: removes the segment if nobody uses
/// it any more and nothing is left to read. The removal itself is
/// [`shmq::gc_one`], which decides again under the segment's gate lock, so
/// a sender opening the segment meanwhile keeps it (an `inspect` followed by
/// `remove` could unlink it under that sender).
fn tidy(a: &RecvArgs) {
    if a.count.is_none() {
        return;
    }
    if let Ok(info) = shmq::inspect(&a.ring.name) {
        if info.stale && info.used == 0 {
            let _ = shmq::gc_one(&a.ring.name);
        }
    }
}

/// Bytes of messages taken between two releases: the output buffer, or a
/// quarter of the ring, so that the sender can go on writing while we do.
fn round_bytes(capacity: usize) -> usize {
    (capacity / 4).min(OUT_BUF)
}

fn recv_spsc(a: &RecvArgs, out: &mut Output) -> Result<(), Fail> {
    let mut rx =
        spsc::Consumer::open_or_create(&a.ring.name, &recv_options(a)).map_err(Fail::Open)?;
    let armed = signals::arm(rx.interrupter());
    let round = round_bytes(rx.capacity());
    let mut left = a.count.unwrap_or(u64::MAX);
    let r = (|| {
        while left > 0 {
            interrupted()?;
            // Every message taken so far was written and its space freed:
            // wait for the next one. Messages taken under the batch keep
            // their space until it drops (a receive that finds the ring
            // empty would free it, so only what `ready` says is there
            // is taken after the first).
            let mut batch = rx.batch();
            let mut taken = match batch.recv() {
                Ok(m) => {
                    out.put(&m).map_err(Fail::Output)?;
                    m.len() + 1
                }
                Err(Error::Disconnected) => return Ok(()),
                Err(e) => return Err(ring_fail(e)),
            };
            left -= 1;
            // Then whatever is known to be there, up to a round's worth.
            while left > 0 && taken < round && batch.ready() {
                // Not `Empty`: `ready` found a message there.
                let m = batch.try_recv().map_err(ring_fail)?;
                out.put(&m).map_err(Fail::Output)?;
                taken += m.len() + 1;
                drop(m);
                left -= 1;
            }
            // Out first, then free: a receiver killed in between leaves
            // these messages to its successor, which writes them again.
            out.flush().map_err(Fail::Output)?;
            drop(batch);
        }
        Ok(())
    })();
    // Whatever ended the loop, write what was taken before freeing it (the
    // consumer's drop frees it; after an output error that loses it).
    let flushed = out.flush().map_err(Fail::Output);
    drop(armed);
    drop(rx);
    tidy(a);
    r.and(flushed)
}

fn recv_mpmc(a: &RecvArgs, out: &mut Output) -> Result<(), Fail> {
    let mut rx =
        mpmc::Consumer::open_or_create(&a.ring.name, &recv_options(a)).map_err(Fail::Open)?;
    let armed = signals::arm(rx.interrupter());
    let died_before = rx.producers_died();
    let mut left = a.count.unwrap_or(u64::MAX);
    // An MPMC slot is freed when its grant drops (a consumer can hold one
    // at a time, and a slot a dead consumer held is reclaimed, not
    // delivered again), so messages are copied to the output buffer and
    // freed at once; the buffer is written when full and whenever the
    // queue runs empty.
    let r = (|| {
        while left > 0 {
            interrupted()?;
            match rx.try_recv() {
                Ok(m) => {
                    out.put(&m).map_err(Fail::Output)?;
                    left -= 1;
                    continue;
                }
                Err(Error::Empty) => {}
                Err(Error::Disconnected) => break,
                Err(e) => return Err(ring_fail(e)),
            }
            out.flush().map_err(Fail::Output)?;
            match rx.recv() {
                Ok(m) => {
                    out.put(&m).map_err(Fail::Output)?;
                    left -= 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => return Err(ring_fail(e)),
            }
        }
        Ok(())
    })();
    let flushed = out.flush().map_err(Fail::Output);
    // An MPMC ring reports a dead sender as gone, like a clean one; the
    // ring's count of dead producers and of half-written messages tell them
    // apart.
    let lost = rx.stats().abandoned;
    let died = rx.producers_died() > died_before;
    drop(armed);
    drop(rx);
    tidy(a);
    match (r.and(flushed), lost) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) if !died => Ok(()),
        (Ok(()), 0) => Err(Fail::Ring(Error::PeerDied)),
        (Ok(()), n) => Err(Fail::Lost(n)),
    }
}
