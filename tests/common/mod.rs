//! Helpers shared by the integration tests: unique segment names that are
//! removed on drop, child processes that re-run this test binary, and a tiny
//! deterministic PRNG.
#![allow(dead_code, clippy::disallowed_types)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique segment name for this process and test, removed when dropped.
pub struct Name(pub String);

impl Name {
    pub fn new(tag: &str) -> Name {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("test-{}-{tag}-{n}", std::process::id()))
    }
    pub fn path(&self) -> String {
        format!("/dev/shm/shmq.{}", self.0)
    }
    /// Writes `bytes` as the segment file, mode 0600 (as shmq creates them).
    pub fn write_file(&self, bytes: &[u8]) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.path())
            .unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// Env var that tells this test binary it runs as a child.
pub const CHILD_ROLE: &str = "SHMQ_TEST_CHILD_ROLE";

/// Re-runs the current test binary, running only `entry` (an ignored test
/// function that dispatches on `CHILD_ROLE`), with `role` and extra env vars.
/// `spawn_child` of this binary's `child_entry` in `role`, on segment
/// `name`, with more env vars `env`.
pub fn spawn_role(role: &str, name: &Name, env: &[(&str, String)]) -> Child {
    let mut all = vec![("SHMQ_NAME", name.0.clone())];
    all.extend(env.iter().cloned());
    spawn_child("child_entry", role, &all)
}

pub fn spawn_child(entry: &str, role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(CHILD_ROLE, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// Reads the child's stdout until a line equal to `marker` (the child prints
/// it when it is ready).
pub fn wait_for_line(child: &mut Child, marker: &str) {
    use std::io::{BufRead, BufReader};
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("read child stdout");
        assert!(n > 0, "child exited before printing {marker:?}");
        if line.trim() == marker {
            return;
        }
    }
}

/// Sleeps `delay`, SIGKILLs `child`, reaps it, and says when.
pub fn kill_after(mut child: std::process::Child, delay: Duration) -> Instant {
    std::thread::sleep(delay);
    child.kill().unwrap();
    child.wait().unwrap();
    Instant::now()
}

/// In a child process (see `spawn_child`): its role and the segment name.
pub fn child() -> Option<(String, String)> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    Some((role, env("SHMQ_NAME")))
}

pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"))
}

/// xorshift64*: deterministic sizes and payloads on both sides of a test.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fills `buf` with bytes derived from `(seed, index)`.
pub fn fill(buf: &mut [u8], index: u64) {
    let mut r = Rng(index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for chunk in buf.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Lists shmq segments this process's tests left behind.
pub fn leftovers() -> Vec<String> {
    let prefix = format!("shmq.test-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process maps segment `name` through a file that is no
/// longer linked under that name: an endpoint attached to an orphan, which
/// no later opener can find. (`/proc/self/maps` marks such mappings
/// "(deleted)".)
pub fn orphaned(name: &str) -> bool {
    let path = format!("/dev/shm/shmq.{name}");
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .any(|l| {
            l.contains(&path) && l.ends_with("(deleted)") && {
                // Exactly this name, not a longer one with it as a prefix.
                l.split_whitespace().nth(5) == Some(path.as_str())
            }
        })
}

/// Forwards the child's stdout lines over a channel, so a test can wait
/// for one with a timeout.
pub fn line_channel(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
