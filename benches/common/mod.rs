//! Shared by the criterion benches: cross-process peers (the bench binary
//! re-executes itself with `SHMQ_BENCH_PEER` set), pinning, unique segment
//! names, and tiny pipe / POSIX-mq transports written directly with libc so
//! the benches need no cargo feature.
//!
//! A peer reads its role from the environment, its commands from stdin and
//! answers on stdout (except `pipe-echo`, whose stdin/stdout are the data).
#![allow(dead_code, clippy::disallowed_types)]

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shmq::{Options, WaitStrategy, mpmc, spsc};

pub const ENV: &str = "SHMQ_BENCH_PEER";
pub const STOP: u8 = 0xff;
pub const SIZE: usize = 64;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique segment name; the segment is removed when this drops (normally
/// the last endpoint removed it already).
pub struct Name(pub String);

impl Name {
    pub fn new(tag: &str) -> Name {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Name(format!("crit-{}-{tag}-{n}", std::process::id()))
    }
    pub fn mq(&self) -> String {
        format!("/shmq-{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmq::remove(&self.0);
        if let Ok(c) = CString::new(self.mq()) {
            // SAFETY: `c` is NUL-terminated; unlinking a missing queue is harmless.
            unsafe { libc::mq_unlink(c.as_ptr()) };
        }
    }
}

/// Pins this process to `cpu` (best effort).
pub fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set` and bounds-checks `cpu`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid set of the size passed; pid 0 is this process.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

/// Parent on CPU 0, peers on CPU 1, if there are two CPUs.
pub fn two_cpus() -> bool {
    // Not available_parallelism: a pinned parent's children inherit its mask.
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) >= 2 }
}

/// User + system CPU time of this process (ns).
pub fn cpu_ns() -> u64 {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

pub fn wait_of(s: &str) -> WaitStrategy {
    match s {
        "spin" => WaitStrategy::Spin,
        "sem" => WaitStrategy::Semaphore,
        _ => WaitStrategy::Futex,
    }
}

pub fn opts(wait: &str, spin_us: Option<u64>) -> Options {
    let mut o = Options::new().wait(wait_of(wait));
    if let Some(s) = spin_us {
        o = o.spin(Duration::from_micros(s));
    }
    o
}

/// `opts` plus the MPMC geometry of the benches.
pub fn mpmc_opts(wait: &str, spin_us: Option<u64>) -> Options {
    opts(wait, spin_us)
        .slot_size(SIZE + 16)
        .slots(1024)
        .max_producers(4)
        .max_consumers(4)
}

/// A running peer; killed on drop if it has not exited.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Peer {
    /// Starts this bench binary as a peer with `role` (space-separated
    /// words), control through stdin/stdout.
    pub fn spawn(role: &str) -> Peer {
        Self::spawn_with(role, Stdio::piped(), Stdio::piped())
    }

    pub fn spawn_with(role: &str, stdin: Stdio, stdout: Stdio) -> Peer {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new(exe)
            .env(ENV, role)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let mut p = Peer {
            child,
            stdin,
            stdout,
        };
        if p.stdout.is_some() {
            assert_eq!(p.line(), "ready", "peer {role} failed to start");
        }
        p
    }

    pub fn say(&mut self, s: &str) {
        let w = self.stdin.as_mut().expect("stdin");
        writeln!(w, "{s}")
            .and_then(|_| w.flush())
            .expect("peer gone");
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout
            .as_mut()
            .expect("stdout")
            .read_line(&mut l)
            .expect("peer gone");
        l.trim().to_owned()
    }

    /// Closes stdin (the peer's cue to finish), returns its last line.
    pub fn finish(mut self) -> String {
        self.stdin = None;
        let l = if self.stdout.is_some() {
            self.line()
        } else {
            String::new()
        };
        let _ = self.child.wait();
        l
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal message transport for the peers.
pub trait Chan {
    fn send(&mut self, m: &[u8]);
    fn recv(&mut self, b: &mut [u8]) -> usize;
    fn wake_syscalls(&self) -> u64 {
        0
    }
}

impl Chan for spsc::Producer {
    fn send(&mut self, m: &[u8]) {
        spsc::Producer::send(self, m).expect("spsc send");
    }
    fn recv(&mut self, _b: &mut [u8]) -> usize {
        unreachable!()
    }
    fn wake_syscalls(&self) -> u64 {
        self.stats().wake_syscalls
    }
}

impl Chan for spsc::Consumer {
    fn send(&mut self, _m: &[u8]) {
        unreachable!()
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        self.recv_into(b).expect("spsc recv")
    }
    fn wake_syscalls(&self) -> u64 {
        self.stats().wake_syscalls
    }
}

impl Chan for mpmc::Producer {
    fn send(&mut self, m: &[u8]) {
        mpmc::Producer::send(self, m).expect("mpmc send");
    }
    fn recv(&mut self, _b: &mut [u8]) -> usize {
        unreachable!()
    }
    fn wake_syscalls(&self) -> u64 {
        self.stats().wake_syscalls
    }
}

impl Chan for mpmc::Consumer {
    fn send(&mut self, _m: &[u8]) {
        unreachable!()
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        self.recv_into(b).expect("mpmc recv")
    }
    fn wake_syscalls(&self) -> u64 {
        self.stats().wake_syscalls
    }
}

/// A POSIX message queue handle (read-write).
pub struct Mq(libc::mqd_t);

impl Mq {
    pub fn create(name: &str, depth: i64) -> Mq {
        let c = CString::new(name).unwrap();
        // SAFETY: mq_attr is plain old data.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = depth;
        attr.mq_msgsize = SIZE as i64;
        // SAFETY: NUL-terminated name, valid attr for the call.
        let q = unsafe {
            libc::mq_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        assert!(q >= 0, "mq_open: {}", std::io::Error::last_os_error());
        Mq(q)
    }
    pub fn open(name: &str) -> Mq {
        let c = CString::new(name).unwrap();
        // SAFETY: NUL-terminated name.
        let q = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(q >= 0, "mq_open: {}", std::io::Error::last_os_error());
        Mq(q)
    }
}

impl Chan for Mq {
    fn send(&mut self, m: &[u8]) {
        // SAFETY: `m` is a valid buffer of its length.
        let r = unsafe { libc::mq_send(self.0, m.as_ptr().cast(), m.len(), 0) };
        assert_eq!(r, 0, "mq_send: {}", std::io::Error::last_os_error());
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        // SAFETY: `b` is a valid writable buffer of its length.
        let r = unsafe {
            libc::mq_receive(self.0, b.as_mut_ptr().cast(), b.len(), std::ptr::null_mut())
        };
        assert!(r >= 0, "mq_receive: {}", std::io::Error::last_os_error());
        r as usize
    }
}

impl Drop for Mq {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open and not used after this.
        unsafe { libc::mq_close(self.0) };
    }
}

/// Length-prefixed messages over a pipe descriptor (one `write` per message,
/// two `read`s).
pub struct Pipe {
    pub rd: RawFd,
    pub wr: RawFd,
}

fn read_exact(fd: RawFd, mut b: &mut [u8]) -> bool {
    while !b.is_empty() {
        // SAFETY: `b` is a valid writable buffer of its length.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
        if n <= 0 {
            return false;
        }
        b = &mut b[n as usize..];
    }
    true
}

impl Chan for Pipe {
    fn send(&mut self, m: &[u8]) {
        let mut frame = Vec::with_capacity(4 + m.len());
        frame.extend_from_slice(&(m.len() as u32).to_le_bytes());
        frame.extend_from_slice(m);
        let mut b = &frame[..];
        while !b.is_empty() {
            // SAFETY: `b` is a valid buffer of its length.
            let n = unsafe { libc::write(self.wr, b.as_ptr().cast(), b.len()) };
            assert!(n > 0, "pipe write: {}", std::io::Error::last_os_error());
            b = &b[n as usize..];
        }
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        let mut h = [0u8; 4];
        assert!(read_exact(self.rd, &mut h), "pipe closed");
        let n = u32::from_le_bytes(h) as usize;
        assert!(read_exact(self.rd, &mut b[..n]), "pipe closed");
        n
    }
}

/// Pipes for a `pipe-echo` peer: (to-child write end, from-child read end,
/// child's stdin, child's stdout).
pub fn pipe_pair() -> (OwnedFd, OwnedFd, Stdio, Stdio) {
    let mk = || {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid out-array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 succeeded; the descriptors are ours alone.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    let (r1, w1) = mk();
    let (r2, w2) = mk();
    (w1, r2, Stdio::from(r1), Stdio::from(w2))
}

fn ready() {
    println!("ready");
}

fn done(words: &[u64]) {
    let s: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    println!("{}", s.join(" "));
}

/// Echo until a stop message.
fn echo(t: &mut dyn Chan) -> u64 {
    let mut buf = vec![0u8; SIZE + 64];
    let mut n = 0;
    loop {
        let len = t.recv(&mut buf);
        t.send(&buf[..len]);
        n += 1;
        if buf[0] == STOP {
            return n;
        }
    }
}

struct Dup<T, R>(T, R);

impl<T: Chan, R: Chan> Chan for Dup<T, R> {
    fn send(&mut self, m: &[u8]) {
        self.0.send(m)
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        self.1.recv(b)
    }
    fn wake_syscalls(&self) -> u64 {
        self.0.wake_syscalls() + self.1.wake_syscalls()
    }
}

/// If this process is a peer, runs its role and returns true.
///
/// Roles:
/// * `spsc-echo WAIT SPIN_US IN OUT`, `mpmc-echo WAIT IN OUT`: echo until a
///   stop message; then print `wake_syscalls cpu_ns`.
/// * `pipe-echo`: echo stdin to stdout until a stop message.
/// * `spsc-produce WAIT NAME`, `mpmc-produce NAME`, `mq-produce NAME`: for
///   each line `N` on stdin send N messages, then print `done`; at EOF print
///   `wake_syscalls`.
/// * `mpmc-consume NAME`, `mq-consume NAME`: receive until a stop message,
///   print the count; repeat until EOF.
pub fn peer_main() -> bool {
    let Ok(role) = std::env::var(ENV) else {
        return false;
    };
    if two_cpus() {
        // Consumers of the multi-process runs share CPU 0 with the idle
        // parent; every other peer runs on CPU 1.
        pin(if role.contains("-consume") { 0 } else { 1 });
    }
    let w: Vec<&str> = role.split_whitespace().collect();
    let spin = |s: &str| s.parse::<u64>().ok().filter(|&v| v != u64::MAX);
    match w[0] {
        "spsc-echo" => {
            let o = opts(w[1], spin(w[2]));
            let rx = spsc::Consumer::open(w[3], &o).expect("open");
            let tx = spsc::Producer::open(w[4], &o).expect("open");
            ready();
            let c0 = cpu_ns();
            let mut d = Dup(tx, rx);
            echo(&mut d);
            done(&[d.wake_syscalls(), cpu_ns() - c0]);
        }
        "mpmc-echo" => {
            let o = mpmc_opts(w[1], None);
            let rx = mpmc::Consumer::open(w[2], &o).expect("open");
            let tx = mpmc::Producer::open(w[3], &o).expect("open");
            ready();
            let mut d = Dup(tx, rx);
            echo(&mut d);
            done(&[d.wake_syscalls(), 0]);
        }
        "pipe-echo" => {
            let mut p = Pipe { rd: 0, wr: 1 };
            echo(&mut p);
        }
        "spsc-produce" | "mpmc-produce" | "mq-produce" => {
            let mut t: Box<dyn Chan> = match w[0] {
                "spsc-produce" => Box::new(spsc::Producer::open(w[2], &opts(w[1], None)).unwrap()),
                "mpmc-produce" => {
                    Box::new(mpmc::Producer::open(w[1], &mpmc_opts("futex", None)).unwrap())
                }
                _ => Box::new(Mq::open(w[1])),
            };
            ready();
            let msg = [0u8; SIZE];
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(n) = line.unwrap_or_default().trim().parse::<u64>() else {
                    break;
                };
                for _ in 0..n {
                    t.send(&msg);
                }
                done(&[0]);
            }
            done(&[t.wake_syscalls()]);
        }
        "mpmc-consume" | "mq-consume" => {
            let mut t: Box<dyn Chan> = match w[0] {
                "mpmc-consume" => {
                    Box::new(mpmc::Consumer::open(w[1], &mpmc_opts("futex", None)).unwrap())
                }
                _ => Box::new(Mq::open(w[1])),
            };
            ready();
            let mut buf = [0u8; SIZE + 64];
            let mut n = 0u64;
            loop {
                t.recv(&mut buf);
                if buf[0] == STOP {
                    done(&[n]);
                    n = 0;
                    // One more round, or EOF on the control line.
                    let mut l = String::new();
                    if std::io::stdin().read_line(&mut l).unwrap_or(0) == 0 {
                        break;
                    }
                } else {
                    n += 1;
                }
            }
        }
        other => panic!("unknown peer role {other}"),
    }
    true
}

/// Raw descriptor of an owned fd (for the `Pipe` chan).
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// Reads everything left on a reader (drains a peer's output).
pub fn drain(r: &mut impl Read) {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
}

/// Short criterion runs: this 2-core VM is noisy and CI compiles the benches.
pub fn config(warm_up: Duration, measure: Duration) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measure)
}

/// A bench binary's `main`: act as a peer if asked to, else pin to CPU 0 and
/// run `benches`.
pub fn run(benches: fn()) {
    if peer_main() {
        return;
    }
    if two_cpus() {
        pin(0);
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
