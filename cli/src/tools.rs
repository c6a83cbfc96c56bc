//! `shmq send|recv|ls|stat|rm|gc`: use and look after rings from a shell.
//!
//! Every failure is reported as one `shmq <cmd>: ...` line on stderr and an
//! exit code from [`EXIT_CODES`]; nothing panics on bad input.

use std::io::{self, Write};

use shmq::{OpenError, Options, WaitStrategy};

mod segments;
pub(crate) mod signals;
mod stdio;
mod stream;

pub use segments::{gc, ls, rm, stat};
pub use stream::{recv, send};

/// The exit codes as a literal, for `concat!` into subcommands' help.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  success; `recv`: the sender disconnected cleanly after everything was
     written (or stdout was closed by its reader, e.g. `| head`)
  1  the operation failed: the peer process died, the segment turned out
     corrupted, an I/O error (stdin, stdout, /dev/shm); `send`: the
     receiver left before the end of input (without --wait-receiver)
  2  bad usage or bad input: unknown option, invalid name or size, a line
     longer than the ring's largest message
  3  the segment is not usable: not found, not a shmq segment, other version
     or kind, wrong type, permission denied, busy, in use (`rm`)
  128+N  `send`, `recv`: stopped by signal N (130 SIGINT, 143 SIGTERM,
     129 SIGHUP) after detaching cleanly; the peer sees a clean disconnect"
    };
}

macro_rules! send_help {
    () => {
        "\
Opens the ring, or creates it if it does not exist yet, and sends stdin.
End of input (Ctrl-D, end of file) detaches cleanly: the receiver gets
everything sent, then exits 0. Messages nobody has read yet stay in
/dev/shm for a later `shmq recv`. SIGINT (Ctrl-C), SIGTERM and SIGHUP stop
sending and detach cleanly too (exit 130, 143, 129).

When the receiver leaves: by default `send` stops like a writer whose pipe
reader went away. If the receiver detached (Ctrl-C, `recv -n`, its stdout
closed) while input remains, `send` exits 1 at its next message; if it
died, once the ring is full (MPMC: once the queue is full and no receiver
is attached). The messages already in the ring stay there for the next
`shmq recv`; the rest of stdin is not sent. With --wait-receiver, `send`
waits for the next receiver instead and goes on where it stopped: every
message is sent once, in order. (What a killed receiver had taken: see
`shmq recv --help`.)

Examples:
  shmq send logs < app.log
  tail -f app.log | shmq send --lines logs
  shmq send --lines --wait-receiver jobs < work.txt"
    };
}

macro_rules! recv_help {
    () => {
        "\
Opens the ring, or creates it if it does not exist yet, waits for a sender
and writes every message to stdout, bytes exactly as sent. Exits 0 when the
sender detaches cleanly and everything was written; 1 when the sender's
process died (after writing everything it had committed). SIGINT (Ctrl-C),
SIGTERM and SIGHUP detach cleanly after writing what was taken (exit 130,
143, 129); the rest stays for the next receiver.

A receiver that is killed (SIGKILL, a crash):
  spsc  loses nothing. A message leaves the ring only after it was written
        to stdout, so the next `shmq recv` starts at the first message the
        killed one had not finished. It may write again what the killed one
        wrote last (at most 64 KiB of output, or one larger message).
  mpmc  loses what it had taken from the queue but not yet written (at most
        64 KiB of output, or one larger message): MPMC delivers each message
        once, and a slot a dead receiver held is freed, not delivered again.
A receiver that cannot write stdout (closed, disk full) stops; the
messages of the batch it could not write are freed with it.

Examples:
  shmq recv logs > copy.log
  shmq recv --lines logs | grep ERROR"
    };
}

/// The exit codes, shown after `--help` (and listed in the README).
pub const EXIT_CODES: &str = exit_codes!();

/// Success.
pub const OK: u8 = 0;
/// The operation failed (peer died, corrupted, I/O).
pub const FAILED: u8 = 1;
/// Bad usage or bad input.
pub const USAGE: u8 = 2;
/// The segment is not usable.
pub const UNUSABLE: u8 = 3;

/// Ring kind, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// One producer, one consumer, variable-length messages.
    Spsc,
    /// Many producers and consumers, fixed-size slots.
    Mpmc,
}

/// Wait strategy, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitArg {
    /// Busy-wait (burns a core while waiting).
    Spin,
    /// Spin, then `sched_yield` in a loop.
    Yield,
    /// Spin, then sleep on a futex (the default).
    Futex,
    /// Spin, then sleep on a POSIX semaphore.
    Sem,
}

/// How to open or create the ring (shared by `send` and `recv`).
#[derive(clap::Args, Debug)]
pub struct RingArgs {
    /// Segment name (`/dev/shm/shmq.NAME`): 1-200 bytes of [A-Za-z0-9._-].
    pub name: String,
    /// Ring kind, used when this side creates the segment; an existing
    /// segment must be of this kind.
    #[arg(long, value_enum, default_value_t = KindArg::Spsc)]
    pub kind: KindArg,
    /// SPSC ring size in bytes when creating (power of two, 64 to 2^40;
    /// suffixes K, M, G). Largest message: capacity / 2 - 8. [default: 1M]
    #[arg(long, value_parser = parse_size, value_name = "BYTES")]
    pub capacity: Option<u64>,
    /// MPMC number of slots when creating (power of two, 2 to 2^24).
    /// [default: 1024]
    #[arg(long, value_parser = parse_size, value_name = "N")]
    pub slots: Option<u64>,
    /// MPMC bytes per slot when creating, including a 16-byte header
    /// (multiple of 8, 24 to 2^24; suffixes K, M). [default: 256]
    #[arg(long, value_parser = parse_size, value_name = "BYTES")]
    pub slot_size: Option<u64>,
    /// How to wait for the peer. A segment created with `sem` must be opened
    /// with `sem` or a spinning strategy, and likewise for `futex`.
    /// [default: futex; spin in a spin-only segment]
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub wait: Option<WaitArg>,
    /// Create a segment in which nobody sleeps (its endpoints spin or
    /// yield, and skip the check for sleepers on every message), or open
    /// only such a segment.
    #[arg(long)]
    pub spin_only: bool,
}

impl RingArgs {
    /// The library options these arguments ask for.
    pub fn options(&self) -> Options {
        let mut o = Options::new();
        if let Some(c) = self.capacity {
            o = o.capacity(c as usize);
        }
        if let Some(n) = self.slots {
            o = o.slots(n as usize);
        }
        if let Some(s) = self.slot_size {
            o = o.slot_size(s as usize);
        }
        if let Some(w) = self.wait {
            o = o.wait(match w {
                WaitArg::Spin => WaitStrategy::Spin,
                WaitArg::Yield => WaitStrategy::SpinThenYield,
                WaitArg::Futex => WaitStrategy::Futex,
                WaitArg::Sem => WaitStrategy::Semaphore,
            });
        }
        o.spin_only(self.spin_only)
    }
}

/// Arguments of `shmq send`.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!(send_help!(), "\n\n", exit_codes!()))]
pub struct SendArgs {
    #[command(flatten)]
    pub ring: RingArgs,
    /// One message per line of stdin, without its '\n' (default: chunks of
    /// up to the largest message, bytes exactly as read).
    #[arg(long, short = 'l')]
    pub lines: bool,
    /// When the receiver leaves or dies, wait for the next one and go on
    /// (default: exit 1, like a writer whose pipe reader went away).
    #[arg(long)]
    pub wait_receiver: bool,
}

/// Arguments of `shmq recv`.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!(recv_help!(), "\n\n", exit_codes!()))]
pub struct RecvArgs {
    #[command(flatten)]
    pub ring: RingArgs,
    /// Write a '\n' after every message (for `send --lines`).
    #[arg(long, short = 'l')]
    pub lines: bool,
    /// Stop after this many messages; the rest stay in the ring for the
    /// next receiver (a `shmq send` still running then stops, unless it
    /// runs with --wait-receiver).
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
}

/// Arguments of `shmq ls`.
#[derive(clap::Args, Debug)]
#[command(after_help = exit_codes!())]
pub struct LsArgs {
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `shmq stat`.
#[derive(clap::Args, Debug)]
#[command(after_help = exit_codes!())]
pub struct StatArgs {
    /// Segment name.
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `shmq rm`.
#[derive(clap::Args, Debug)]
#[command(after_help = exit_codes!())]
pub struct RmArgs {
    /// Segment names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Remove even a segment that live processes use (they keep working on
    /// their mapping, but nobody new can open it).
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// Arguments of `shmq gc`.
#[derive(clap::Args, Debug)]
#[command(after_help = exit_codes!())]
pub struct GcArgs {
    /// Only consider these segments (default: every shmq segment).
    pub names: Vec<String>,
    /// Show what would be removed, remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// Parses `4096`, `64K`, `4M`, `1G` (binary multiples; `KiB`, `MB`, … too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64K, 4M, 1G)"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Exit code for an error from opening or creating a segment.
pub fn open_code(e: &OpenError) -> u8 {
    match e {
        OpenError::InvalidName { .. } | OpenError::InvalidOptions(_) => USAGE,
        OpenError::NoSpace { .. } | OpenError::Io { .. } => FAILED,
        // Not found, exists, permission, foreign, version, kind, type, wait
        // backend, corrupted header, creator never finished, busy; and
        // whatever a later library version adds.
        _ => UNUSABLE,
    }
}

/// Prints `shmq CMD: MSG` on stderr and returns `code`.
pub fn fail(cmd: &str, code: u8, msg: impl std::fmt::Display) -> u8 {
    // Nowhere left to complain if stderr is gone.
    let _ = writeln!(io::stderr(), "shmq {cmd}: {msg}");
    code
}

/// Writes a command's output to stdout. A reader that went away early
/// (`shmq ls | head -1`) is not an error.
pub fn emit(cmd: &str, text: &str) -> u8 {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => OK,
        Err(e) => fail(cmd, FAILED, format!("writing stdout: {e}")),
    }
}

/// Human size: `1 MiB`, `512 KiB`, `100 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        let s = format!("{v:.1}");
        format!("{} {}", s.strip_suffix(".0").unwrap_or(&s), UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("9999999999999999T").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(100), "100 B");
        assert_eq!(human(1 << 20), "1 MiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
