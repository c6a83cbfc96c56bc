//! Processes: spawning the `bench-peer` children (pinned, with inherited
//! descriptors), the control protocol on their stdin/stdout, and the child
//! side of every pattern.
//!
//! Protocol: the child opens its endpoints, prints `ready`, reads
//! `go START_NS STOP_NS` on stdin (CLOCK_MONOTONIC), runs its role, and
//! prints one JSON [`Report`] line.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmq::{Options, mpmc, spsc};
use shmq_bench::{Duplex, MessageQueue, PipeReceiver, PipeSender, SeqPacket, Transport};

use super::{PeerArgs, Role, TransportName, WaitName};
use shmq_bench::Floor;

/// First payload byte of the message that ends a run.
pub const STOP: u8 = 0xff;
/// First payload byte of every other message.
pub const DATA: u8 = 0;

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of this process, in nanoseconds.
pub fn cpu_ns() -> u64 {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// Pins the calling process to one CPU. Best effort: returns whether it
/// worked.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes inside `set`; it bounds-checks `cpu`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu set of the size we pass; pid 0 = us.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-pointer of the size we pass.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads `set`; `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// What a child reports when it is done.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy)]
pub struct Report {
    /// Messages sent plus received by this child's endpoints, per the shmq
    /// stats or counted here for kernel transports.
    pub messages: u64,
    /// Wake syscalls its shmq endpoints issued.
    pub wake_syscalls: u64,
    /// Times its shmq endpoints slept.
    pub waits: u64,
    /// Consumers: messages received inside the measurement window.
    pub counted: u64,
    /// CPU time from `go` to the end.
    pub cpu_ns: u64,
}

/// A running child with its control pipes.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: String,
}

/// The children of one measurement. Dropping it kills whatever still runs,
/// so no child outlives an error.
#[derive(Default)]
pub struct Peers {
    pub list: Vec<Peer>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        for p in &mut self.list {
            if let Ok(None) = p.child.try_wait() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// Everything a child needs to know.
pub struct PeerSpec {
    pub transport: TransportName,
    pub wait: WaitName,
    pub role: Role,
    pub size: usize,
    pub spin_us: Option<u64>,
    pub names: Vec<String>,
    pub fds: Vec<RawFd>,
    pub cpu: Option<usize>,
    pub stop: bool,
    pub slots: Option<usize>,
}

impl Peers {
    /// Starts a child. Its `fds` are inherited (close-on-exec cleared in the
    /// child only).
    pub fn spawn(&mut self, spec: &PeerSpec) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-peer")
            .arg("--transport")
            .arg(spec.transport.as_str())
            .arg("--wait")
            .arg(spec.wait.as_str())
            .arg("--role")
            .arg(spec.role.as_str())
            .arg("--size")
            .arg(spec.size.to_string());
        if let Some(s) = spec.spin_us {
            cmd.arg("--spin-us").arg(s.to_string());
        }
        if !spec.names.is_empty() {
            cmd.arg("--names").arg(spec.names.join(","));
        }
        if !spec.fds.is_empty() {
            let fds: Vec<String> = spec.fds.iter().map(|f| f.to_string()).collect();
            cmd.arg("--fds").arg(fds.join(","));
        }
        if let Some(c) = spec.cpu {
            cmd.arg("--cpu").arg(c.to_string());
        }
        if spec.stop {
            cmd.arg("--stop");
        }
        if let Some(s) = spec.slots {
            cmd.arg("--slots").arg(s.to_string());
        }
        let fds = spec.fds.clone();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls fcntl, which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the peer process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        self.list.push(Peer {
            child,
            stdin,
            stdout,
            what: format!("{} {} peer", spec.transport.as_str(), spec.role.as_str()),
        });
        Ok(())
    }

    /// Waits until every child has printed `ready`.
    pub fn ready(&mut self) -> Result<(), String> {
        for p in &mut self.list {
            let mut line = String::new();
            match p.stdout.read_line(&mut line) {
                Ok(_) if line.trim() == "ready" => {}
                Ok(_) => {
                    let st = p.child.wait().ok();
                    return Err(format!(
                        "the {} failed to start ({})",
                        p.what,
                        st.map_or("no status".into(), |s| s.to_string())
                    ));
                }
                Err(e) => return Err(format!("reading from the {}: {e}", p.what)),
            }
        }
        Ok(())
    }

    /// Tells every child to start: warm up until `start_ns`, measure until
    /// `stop_ns`.
    pub fn go(&mut self, start_ns: u64, stop_ns: u64) -> Result<(), String> {
        for p in &mut self.list {
            let w = p.stdin.as_mut().expect("stdin");
            writeln!(w, "go {start_ns} {stop_ns}")
                .and_then(|_| w.flush())
                .map_err(|e| format!("the {} is gone: {e}", p.what))?;
        }
        Ok(())
    }

    /// Waits for children `range` to finish (each within `timeout`) and
    /// collects their reports.
    pub fn finish(
        &mut self,
        range: std::ops::Range<usize>,
        timeout: Duration,
    ) -> Result<Vec<Report>, String> {
        let mut out = Vec::new();
        for p in &mut self.list[range] {
            let deadline = Instant::now() + timeout;
            let status = loop {
                match p.child.try_wait() {
                    Ok(Some(st)) => break st,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        return Err(format!(
                            "the {} did not finish within {:?}; killed it",
                            p.what, timeout
                        ));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(format!("waiting for the {}: {e}", p.what)),
                }
            };
            if !status.success() {
                return Err(format!("the {} failed ({status})", p.what));
            }
            let mut line = String::new();
            p.stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the {}'s report: {e}", p.what))?;
            let r: Report = serde_json::from_str(line.trim())
                .map_err(|e| format!("bad report from the {}: {e}: {line:?}", p.what))?;
            out.push(r);
        }
        Ok(out)
    }
}

/// Shmq options for a transport, wait and message size (the same on both
/// sides of a measurement).
pub fn shmq_options(
    wait: WaitName,
    size: usize,
    spin_us: Option<u64>,
    slots: Option<usize>,
) -> Options {
    let mut o = Options::new()
        .wait(wait.strategy())
        .capacity(1 << 20)
        .slot_size((size + 16).div_ceil(8) * 8)
        .slots(slots.unwrap_or_else(|| mpmc_slots(size)))
        .max_producers(4)
        .max_consumers(4);
    if let Some(s) = spin_us {
        o = o.spin(Duration::from_micros(s));
    }
    o
}

/// MPMC slot count: up to 1024, at most about 4 MiB of slots.
pub fn mpmc_slots(size: usize) -> usize {
    let slot = (size + 16).div_ceil(8) * 8;
    let fit = (4usize << 20) / slot;
    let p = if fit.is_power_of_two() {
        fit
    } else {
        fit.next_power_of_two() / 2
    };
    p.clamp(2, 1024)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the parent handed this descriptor number to us alone (inherited
    // across exec, close-on-exec cleared); nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn oerr(e: shmq::OpenError) -> String {
    e.to_string()
}

/// The child's endpoint(s) for its role.
fn open_endpoint(a: &PeerArgs) -> Result<Box<dyn Transport>, String> {
    let o = shmq_options(a.wait, a.size, a.spin_us, a.slots);
    let name = |i: usize| {
        a.names
            .get(i)
            .cloned()
            .ok_or_else(|| format!("missing --names entry {i}"))
    };
    let fd = |i: usize| {
        a.fds
            .get(i)
            .copied()
            .ok_or_else(|| format!("missing --fds entry {i}"))
    };
    let io = |e: io::Error| e.to_string();
    Ok(match (a.transport, a.role) {
        (TransportName::Floor, Role::Echo) => Box::new(Floor::open(fd(0)?, a.size).map_err(io)?),
        (TransportName::ShmqSpsc, Role::Echo) => Box::new(Duplex::new(
            spsc::Producer::open(&name(1)?, &o).map_err(oerr)?,
            spsc::Consumer::open(&name(0)?, &o).map_err(oerr)?,
        )),
        (TransportName::ShmqSpsc, Role::Produce) => {
            Box::new(spsc::Producer::open(&name(0)?, &o).map_err(oerr)?)
        }
        (TransportName::ShmqSpsc, Role::Consume) => {
            Box::new(spsc::Consumer::open(&name(0)?, &o).map_err(oerr)?)
        }
        (TransportName::ShmqMpmc, Role::Echo) => Box::new(Duplex::new(
            mpmc::Producer::open(&name(1)?, &o).map_err(oerr)?,
            mpmc::Consumer::open(&name(0)?, &o).map_err(oerr)?,
        )),
        (TransportName::ShmqMpmc, Role::Produce) => {
            Box::new(mpmc::Producer::open(&name(0)?, &o).map_err(oerr)?)
        }
        (TransportName::ShmqMpmc, Role::Consume) => {
            Box::new(mpmc::Consumer::open(&name(0)?, &o).map_err(oerr)?)
        }
        (TransportName::Pipe, Role::Echo) => Box::new(Duplex::new(
            PipeSender::from_fd(owned(fd(1)?)),
            PipeReceiver::from_fd(owned(fd(0)?)),
        )),
        (TransportName::Pipe, Role::Produce) => Box::new(PipeSender::from_fd(owned(fd(0)?))),
        (TransportName::Pipe, Role::Consume) => Box::new(PipeReceiver::from_fd(owned(fd(0)?))),
        (TransportName::Uds, _) => Box::new(SeqPacket::from_fd(owned(fd(0)?))),
        (TransportName::Mq, Role::Echo) => Box::new(Duplex::new(
            MessageQueue::open(&name(1)?).map_err(io)?,
            MessageQueue::open(&name(0)?).map_err(io)?,
        )),
        (TransportName::Mq, _) => Box::new(MessageQueue::open(&name(0)?).map_err(io)?),
        (TransportName::Floor, r) => {
            return Err(format!("the floor transport has no {} role", r.as_str()));
        }
    })
}

/// Echoes messages until (and including) the stop message; returns how many.
pub fn echo(t: &mut dyn Transport, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0;
    loop {
        let len = t.recv(buf)?;
        t.send(&buf[..len])?;
        n += 1;
        if len > 0 && buf[0] == STOP {
            return Ok(n);
        }
    }
}

/// Sends `size`-byte messages until `stop_ns`; then a stop message if
/// `stop`. Returns how many were sent.
pub fn produce(t: &mut dyn Transport, size: usize, stop_ns: u64, stop: bool) -> io::Result<u64> {
    let mut msg = vec![0u8; size.max(1)];
    msg[0] = DATA;
    let every = if size < 1024 { 64 } else { 1 };
    let mut n: u64 = 0;
    loop {
        t.send(&msg)?;
        n += 1;
        if n % every == 0 && mono_ns() >= stop_ns {
            break;
        }
    }
    if stop {
        msg[0] = STOP;
        t.send(&msg)?;
    }
    Ok(n)
}

/// What a consumer saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Consumed {
    /// Data messages received in total.
    pub total: u64,
    /// Data messages received inside `[start_ns, stop_ns)`.
    pub counted: u64,
}

/// Receives until a stop message; counts the messages inside the window.
pub fn consume(
    t: &mut dyn Transport,
    buf: &mut [u8],
    size: usize,
    start_ns: u64,
    stop_ns: u64,
) -> io::Result<Consumed> {
    let every = if size < 1024 { 64 } else { 1 };
    let mut total: u64 = 0;
    let mut at_start: Option<u64> = None;
    let mut at_stop: Option<u64> = None;
    loop {
        let len = t.recv(buf)?;
        if len > 0 && buf[0] == STOP {
            break;
        }
        total += 1;
        if at_stop.is_none() && total % every == 0 {
            let now = mono_ns();
            if at_start.is_none() && now >= start_ns {
                at_start = Some(total);
            }
            if now >= stop_ns {
                at_stop = Some(total);
            }
        }
    }
    let s = at_start.unwrap_or(total);
    let e = at_stop.unwrap_or(total);
    Ok(Consumed {
        total,
        counted: e.saturating_sub(s),
    })
}

/// The `bench-peer` process body.
pub fn run_peer(a: &PeerArgs) -> Result<(), String> {
    if let Some(c) = a.cpu {
        pin_to(c);
    }
    let mut t = open_endpoint(a)?;
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let mut it = line.split_whitespace();
    let (start_ns, stop_ns) = match (it.next(), it.next(), it.next()) {
        (Some("go"), Some(a), Some(b)) => (
            a.parse::<u64>().map_err(|e| e.to_string())?,
            b.parse::<u64>().map_err(|e| e.to_string())?,
        ),
        _ => return Err("the bench process went away before `go`".into()),
    };
    let cpu0 = cpu_ns();
    // mq receives need a buffer of the queue's full message size.
    let mut buf = vec![0u8; a.size.max(1) + 64];
    let mut report = Report::default();
    let io = |e: io::Error| format!("{} {}: {e}", a.transport.as_str(), a.role.as_str());
    match a.role {
        Role::Echo => report.messages = 2 * echo(t.as_mut(), &mut buf).map_err(io)?,
        Role::Produce => {
            report.messages = produce(t.as_mut(), a.size, stop_ns, a.stop).map_err(io)?
        }
        Role::Consume => {
            let c = consume(t.as_mut(), &mut buf, a.size, start_ns, stop_ns).map_err(io)?;
            report.messages = c.total;
            report.counted = c.counted;
        }
    }
    if let Some(s) = t.stats() {
        report.messages = s.messages;
        report.wake_syscalls = s.wake_syscalls;
        report.waits = s.waits;
    }
    drop(t);
    report.cpu_ns = cpu_ns() - cpu0;
    let j = serde_json::to_string(&report).map_err(|e| e.to_string())?;
    writeln!(out, "{j}")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    Ok(())
}
