//! Peer processes: the parent starts copies of its own program (pinned, with
//! inherited descriptors) and drives them over their stdin/stdout; the
//! child side ([`serve`]) opens its endpoint and runs its role once per
//! `go`.
//!
//! Protocol: the child reads its [`PeerSpec`] from the `SHMQ_BENCH_PEER`
//! environment variable (JSON), opens its endpoint, prints `ready`; then for
//! every line `go START_NS STOP_NS COUNT` on stdin it runs its role and
//! prints one JSON [`Report`] line; at end of input it exits.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::case::Params;
use crate::endpoints::{Role, endpoint};
use crate::link::Link;
use crate::measure::{Go, consume, echo, produce};
use crate::sys::{allowed_cpus, cpu_ns, pin_to};
use crate::transport::Counters;

/// The environment variable that makes a program a peer: it holds the
/// [`PeerSpec`] as JSON.
pub const PEER_ENV: &str = "SHMQ_BENCH_PEER";

/// Everything a child needs to know.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerSpec {
    /// The measurement's shared settings.
    pub params: Params,
    /// What the child does.
    pub role: Role,
    /// The link's names (segments, queues).
    pub names: Vec<String>,
    /// The link's descriptors, inherited at the same numbers.
    pub fds: Vec<RawFd>,
    /// Pin the child to this CPU.
    pub cpu: Option<usize>,
    /// A producer ends each run with a stop message (one consumer).
    pub stop: bool,
}

/// How this program runs its peers: which arguments make a copy of it a
/// peer, and where parent and peers run.
#[derive(Clone, Debug)]
pub struct Host {
    /// Arguments after the program's path that make it call [`serve`]
    /// (`["bench-peer"]` for the CLI; none for a bench binary whose `main`
    /// calls [`serve_if_peer`] first).
    pub peer_args: Vec<String>,
    /// The CPU this process is pinned to; consumers of many-to-many
    /// streams run here too.
    pub parent_cpu: Option<usize>,
    /// The CPU every other peer is pinned to.
    pub child_cpu: Option<usize>,
}

impl Host {
    /// Pins this process to the first CPU it may use and its peers to the
    /// second, if `pin` and there are two; otherwise nobody is pinned.
    pub fn new(peer_args: &[&str], pin: bool) -> Host {
        let cpus = allowed_cpus();
        let (parent_cpu, child_cpu) = if pin && cpus.len() >= 2 && pin_to(cpus[0]) {
            (Some(cpus[0]), Some(cpus[1]))
        } else {
            (None, None)
        };
        Host {
            peer_args: peer_args.iter().map(|s| (*s).to_owned()).collect(),
            parent_cpu,
            child_cpu,
        }
    }
}

/// What a child reports after each run.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy)]
pub struct Report {
    /// Its endpoint's shmq counters during the run (messages sent plus
    /// received are counted here for kernel transports).
    pub counters: Counters,
    /// Consumers: data messages received in the measurement window.
    pub counted: u64,
    /// Consumers: data messages received in all.
    pub total: u64,
    /// CPU time of the run.
    pub cpu_ns: u64,
}

/// A running child with its control pipes.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl Peer {
    /// The next line, waiting at most `timeout` for it to start.
    fn line(&mut self, timeout: Duration) -> Result<String, String> {
        if self.stdout.buffer().is_empty() {
            let mut pfd = libc::pollfd {
                fd: self.stdout.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let deadline = Instant::now() + timeout;
            loop {
                // 1 ms slices, not one long sleep: the parent of a
                // many-to-many stream waits here during the measurement,
                // on the CPU its consumers share, and it must wake as
                // often as the first harness's wait did (a 1 ms sleep
                // loop). Left idle, that CPU answered the consumers'
                // wake-ups slower on this VM: MPMC 2P2C median 1.8 M
                // msgs/s against 2.6-2.8 M, 30 rounds each.
                // SAFETY: `pfd` is one valid pollfd for the call.
                let r = unsafe { libc::poll(&mut pfd, 1, 1) };
                if r > 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                if r < 0 && e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("waiting for the {}: {e}", self.what));
                }
                if Instant::now() >= deadline {
                    let _ = self.child.kill();
                    return Err(format!(
                        "the {} did not answer within {timeout:?}; killed it",
                        self.what
                    ));
                }
            }
        }
        // Children write each line at once (far below PIPE_BUF), so a
        // readable pipe holds a whole line.
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => {
                let st = self.child.wait().ok();
                Err(format!(
                    "the {} exited ({})",
                    self.what,
                    st.map_or("no status".into(), |s| s.to_string())
                ))
            }
            Ok(_) => Ok(line.trim().to_owned()),
            Err(e) => Err(format!("reading from the {}: {e}", self.what)),
        }
    }
}

/// The children of one measurement. Dropping it kills whatever still runs,
/// so no child outlives an error.
#[derive(Default)]
pub struct Peers {
    list: Vec<Peer>,
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

impl Peers {
    /// How many children.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Starts a child. Its `fds` are inherited (close-on-exec cleared in
    /// the child only).
    ///
    /// # Errors
    /// The program cannot be found or started.
    pub fn spawn(&mut self, host: &Host, spec: &PeerSpec) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(&host.peer_args).env(PEER_ENV, json);
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
            what: format!(
                "{} {} peer",
                spec.params.transport.as_str(),
                spec.role.as_str()
            ),
        });
        Ok(())
    }

    /// Waits until every child has printed `ready`.
    ///
    /// # Errors
    /// A child failed to start (it said why on stderr).
    pub fn ready(&mut self) -> Result<(), String> {
        for p in &mut self.list {
            let line = p.line(Duration::from_secs(30))?;
            if line != "ready" {
                return Err(format!("the {} said {line:?}, not ready", p.what));
            }
        }
        Ok(())
    }

    /// Tells every child to run.
    ///
    /// # Errors
    /// A child is gone.
    pub fn go(&mut self, go: &Go) -> Result<(), String> {
        for p in &mut self.list {
            let w = p.stdin.as_mut().expect("stdin");
            writeln!(w, "go {} {} {}", go.start_ns, go.stop_ns, go.count)
                .and_then(|_| w.flush())
                .map_err(|e| format!("the {} is gone: {e}", p.what))?;
        }
        Ok(())
    }

    /// The reports of children `range`, each waited for at most `timeout`.
    ///
    /// # Errors
    /// A child did not answer in time (it is killed), exited, or said
    /// something else.
    pub fn reports(
        &mut self,
        range: std::ops::Range<usize>,
        timeout: Duration,
    ) -> Result<Vec<Report>, String> {
        let mut out = Vec::new();
        for p in &mut self.list[range] {
            let line = p.line(timeout)?;
            let r: Report = serde_json::from_str(&line)
                .map_err(|e| format!("bad report from the {}: {e}: {line:?}", p.what))?;
            out.push(r);
        }
        Ok(out)
    }

    /// Closes every child's input (its cue to exit) and waits for them,
    /// each at most `timeout`.
    ///
    /// # Errors
    /// A child failed, or did not exit in time (it is killed).
    pub fn finish(&mut self, timeout: Duration) -> Result<(), String> {
        for p in &mut self.list {
            p.stdin = None;
        }
        for p in &mut self.list {
            let deadline = Instant::now() + timeout;
            let status = loop {
                match p.child.try_wait() {
                    Ok(Some(st)) => break st,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = p.child.kill();
                        return Err(format!(
                            "the {} did not exit within {timeout:?}; killed it",
                            p.what
                        ));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(format!("waiting for the {}: {e}", p.what)),
                }
            };
            if !status.success() {
                return Err(format!("the {} failed ({status})", p.what));
            }
        }
        Ok(())
    }
}

/// If this process was started as a peer ([`PEER_ENV`] is set), serves
/// and returns the outcome; otherwise `None`. A bench binary's `main` calls
/// this first.
pub fn serve_if_peer() -> Option<Result<(), String>> {
    std::env::var_os(PEER_ENV)?;
    Some(serve())
}

/// The peer process body: reads the [`PeerSpec`] from [`PEER_ENV`], opens
/// the endpoint, then runs its role once per `go` until end of input.
///
/// # Errors
/// A bad spec, the endpoint cannot be opened, or the run failed.
pub fn serve() -> Result<(), String> {
    let json = std::env::var(PEER_ENV).map_err(|e| format!("{PEER_ENV}: {e}"))?;
    let spec: PeerSpec =
        serde_json::from_str(&json).map_err(|e| format!("bad {PEER_ENV} spec: {e}"))?;
    if let Some(c) = spec.cpu {
        pin_to(c);
    }
    let p = &spec.params;
    let what = format!("{} {}", p.transport.as_str(), spec.role.as_str());
    let io = |e: io::Error| format!("{what}: {e}");
    // SAFETY: the parent passed these descriptors for our use alone
    // (inherited across exec); nothing else in this process owns them.
    let mut link = unsafe { Link::inherited(spec.names.clone(), &spec.fds) };
    let mut t = endpoint(spec.role, p, &mut link).map_err(io)?;
    // Our endpoint holds its own copies: the inherited ones go, so that the
    // parent's exit reads as end of file here.
    drop(link);
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    // mq receives need a buffer of the queue's full message size.
    let mut buf = vec![0u8; p.size.max(1) + 64];
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let go = Go::parse(&line).ok_or_else(|| format!("{what}: bad command {line:?}"))?;
        let cpu0 = cpu_ns();
        let before = t.stats();
        let mut r = Report::default();
        match spec.role {
            Role::Echo => r.counters.messages = 2 * echo(t.as_mut(), &mut buf).map_err(io)?,
            Role::Produce => {
                r.counters.messages =
                    produce(t.as_mut(), p.size, p.stream_batch(), &go, spec.stop).map_err(io)?
            }
            Role::Consume => {
                let c = consume(t.as_mut(), &mut buf, p.size, p.stream_batch(), go.window())
                    .map_err(io)?;
                r.counters.messages = c.total;
                r.counted = c.counted;
                r.total = c.total;
            }
            Role::Ping => return Err("a peer does not ping".into()),
        }
        if let (Some(a), Some(b)) = (before, t.stats()) {
            r.counters = b - a;
        }
        r.cpu_ns = cpu_ns() - cpu0;
        let j = serde_json::to_string(&r).map_err(|e| e.to_string())?;
        writeln!(out, "{j}")
            .and_then(|_| out.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
