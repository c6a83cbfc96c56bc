//! The `shmq` binary end to end: `send | recv` transfers, a SIGKILLed
//! sender, `ls`, `stat`, `rm`, `gc`, exit codes, a closed stdout.
//!
//! Every test uses segment names with this process's id and removes them,
//! whatever happens. `gc` is only ever run on this test's own names, so that
//! it cannot touch segments of other programs running at the same time.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn shmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmq"))
}

/// A unique segment name, removed from /dev/shm when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("clitest-{}-{tag}", std::process::id()))
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/shmq.{}", self.0))
    }
    fn exists(&self) -> bool {
        self.path().exists()
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("shmq-cli-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a child if a test fails while it runs.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn run(args: &[&str]) -> Output {
    shmq().args(args).output().expect("run shmq")
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for a child to exit, at most `limit`; kills it and fails after.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` until it returns true, at most `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `shmq send NAME` with stdin held open by the test.
fn live_sender(name: &str, extra: &[&str]) -> (Reaper, ChildStdin) {
    let mut c = shmq()
        .args(["send", name])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = c.stdin.take().unwrap();
    (Reaper(c), stdin)
}

/// Waits until `name` shows a live producer with `pid`.
fn wait_attached(name: &str, pid: u32) {
    let want = format!("producer 0 alive pid {pid}");
    eventually(Duration::from_secs(10), "the sender to attach", || {
        stdout_of(&run(&["ls"]))
            .lines()
            .any(|l| l.starts_with(name) && l.contains(&want))
    });
}

/// `send < in | recv > out` for the given options; returns the time taken.
fn transfer(name: &str, data: &[u8], opts: &[&str], dir: &Scratch) -> Duration {
    let input = dir.file("in");
    let output = dir.file("out");
    std::fs::write(&input, data).unwrap();
    let start = Instant::now();
    let mut recv = Reaper(
        shmq()
            .args(["recv", name])
            .args(opts)
            .stdout(File::create(&output).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut send = Reaper(
        shmq()
            .args(["send", name])
            .args(opts)
            .stdin(File::open(&input).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let limit = Duration::from_secs(120);
    let s = wait_for(&mut send.0, limit, "send");
    let r = wait_for(&mut recv.0, limit, "recv");
    let took = start.elapsed();
    let mut err = String::new();
    if let Some(mut e) = recv.0.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    assert!(s.success(), "send failed: {s}");
    assert!(r.success(), "recv failed: {r}: {err}");
    let got = std::fs::read(&output).unwrap();
    assert_eq!(got.len(), data.len(), "length differs");
    assert!(got == data, "bytes differ");
    took
}

#[test]
fn random_32_mib_arrive_byte_identical() {
    let name = Name::new("big");
    let dir = Scratch::new("big");
    let data = random_bytes(32 << 20, 0x5eed);
    let took = transfer(&name, &data, &[], &dir);
    println!(
        "32 MiB through `shmq send | shmq recv` (spsc) in {took:.2?} ({:.0} MiB/s, process start included)",
        32.0 / took.as_secs_f64()
    );
    assert!(!name.exists(), "the segment should be gone");
}

#[test]
fn mpmc_and_small_rings_arrive_byte_identical() {
    let dir = Scratch::new("mpmc");
    let data = random_bytes(3 << 20, 7);
    let name = Name::new("mpmc");
    let took = transfer(&name, &data, &["--kind", "mpmc", "--slot-size", "4K"], &dir);
    println!("3 MiB through mpmc in {took:.2?}");
    let name = Name::new("small");
    transfer(&name, &data, &["--capacity", "4K", "--wait", "yield"], &dir);
    let name = Name::new("sem");
    transfer(&name, &data[..100_000], &["--wait", "sem"], &dir);
    assert!(!name.exists());
}

#[test]
fn lines_mode_round_trips_lines() {
    let name = Name::new("lines");
    let mut send = shmq()
        .args(["send", "--lines", &name])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(b"first\n\nthird line\nno newline at the end")
        .unwrap();
    assert!(send.wait().unwrap().success());
    // Nobody read them yet: the segment holds them for a later receiver.
    assert!(name.exists());
    let o = run(&["recv", "--lines", &name]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(
        stdout_of(&o),
        "first\n\nthird line\nno newline at the end\n"
    );
    assert!(!name.exists());
}

#[test]
fn send_first_then_recv_later() {
    let name = Name::new("later");
    let dir = Scratch::new("later");
    // Two messages: the largest of a 1 MiB ring (512 KiB - 8), the rest.
    let data = random_bytes(700_000, 3);
    std::fs::write(dir.file("in"), &data).unwrap();
    let s = shmq()
        .args(["send", &name])
        .stdin(File::open(dir.file("in")).unwrap())
        .status()
        .unwrap();
    assert!(s.success());
    let st = stdout_of(&run(&["stat", &name]));
    assert!(st.contains("stale") && st.contains("unread"), "{st}");
    let o = run(&["recv", "--count", "1", &name]);
    assert!(o.status.success());
    assert_eq!(o.stdout, data[..524_280], "one message: the largest chunk");
    let o = run(&["recv", &name]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(o.stdout, data[524_280..]);
    assert!(!name.exists());
}

#[test]
fn sigkilled_sender_makes_recv_fail() {
    let name = Name::new("kill");
    let (mut sender, mut stdin) = live_sender(&name, &[]);
    stdin.write_all(&[42u8; 1000]).unwrap();
    stdin.flush().unwrap();
    let mut recv = Reaper(
        shmq()
            .args(["recv", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The receiver got what was committed before the kill.
    let mut got = [0u8; 1000];
    recv.0
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    assert_eq!(got, [42u8; 1000]);
    sender.0.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let status = wait_for(&mut recv.0, Duration::from_secs(10), "recv after SIGKILL");
    let took = killed.elapsed();
    println!("recv noticed the SIGKILLed sender after {took:.2?}");
    let mut err = String::new();
    recv.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("died"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(stdin);
}

#[test]
fn gc_removes_dead_segments_never_live_ones() {
    let dead = Name::new("gc-dead");
    let live = Name::new("gc-live");
    let (mut d, mut d_in) = live_sender(&dead, &[]);
    d_in.write_all(b"left behind").unwrap();
    wait_attached(&dead, d.0.id());
    let (l, l_in) = live_sender(&live, &["--kind", "mpmc"]);
    wait_attached(&live, l.0.id());
    d.0.kill().unwrap();
    d.0.wait().unwrap();

    let ls = stdout_of(&run(&["ls"]));
    let row = ls.lines().find(|l| l.starts_with(&*dead.0)).unwrap();
    assert!(row.contains("stale") && row.contains("dead"), "{row}");

    let dry = run(&["gc", "--dry-run", &dead, &live]);
    assert!(dry.status.success());
    assert!(dead.exists() && live.exists());
    assert!(stdout_of(&dry).contains(&format!("would remove {}", &*dead)));

    let o = run(&["gc", &dead, &live]);
    let out = stdout_of(&o);
    println!("{out}");
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(out.contains(&format!("removed {}", &*dead)), "{out}");
    assert!(out.contains(&format!("kept    {}", &*live)), "{out}");
    assert!(!dead.exists());
    assert!(live.exists());

    // The live sender ends cleanly; with nothing unread it removes its segment.
    drop(l_in);
    let mut l = l;
    let s = wait_for(&mut l.0, Duration::from_secs(10), "live sender");
    assert!(s.success());
    assert!(!live.exists());
}

#[test]
fn ls_and_stat_show_a_live_segment() {
    let name = Name::new("ls");
    let (s, s_in) = live_sender(&name, &["--capacity", "64K"]);
    let pid = s.0.id();
    wait_attached(&name, pid);
    let ls = stdout_of(&run(&["ls"]));
    println!("{ls}");
    let row = ls.lines().find(|l| l.starts_with(&*name.0)).unwrap();
    assert!(row.contains("spsc") && row.contains("64 KiB") && row.contains("live"));

    let json = stdout_of(&run(&["ls", "--json"]));
    assert!(json.contains(&format!("\"name\":\"{}\"", &*name)), "{json}");

    let o = run(&["stat", &name]);
    let st = stdout_of(&o);
    println!("{st}");
    assert!(o.status.success());
    for want in [
        "kind:          spsc",
        "capacity:      65536 bytes",
        "largest msg:   32760 bytes",
        "mode:          0600",
        "status:        live",
        &format!("alive     pid {pid}"),
    ] {
        assert!(st.contains(want), "missing {want:?} in\n{st}");
    }
    let j = stdout_of(&run(&["stat", "--json", &name]));
    assert!(j.contains("\"capacity\":65536"), "{j}");

    // `rm` refuses a live segment without --force.
    let o = run(&["rm", &name]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr_of(&o).contains("in use"));
    assert!(name.exists());
    drop(s_in);
    let mut s = s;
    assert!(wait_for(&mut s.0, Duration::from_secs(10), "sender").success());
}

#[test]
fn exit_codes() {
    let name = Name::new("codes");
    let code = |args: &[&str]| run(args).status.code();
    // Not found.
    assert_eq!(code(&["stat", &name]), Some(3));
    assert_eq!(code(&["rm", &name]), Some(3));
    // Bad usage or input.
    assert_eq!(code(&["recv", "bad/name"]), Some(2));
    assert_eq!(code(&["send", "--capacity", "1000", &name]), Some(2));
    assert_eq!(code(&["send", "--capacity", "12Q", &name]), Some(2));
    assert_eq!(code(&["send", "--bogus", &name]), Some(2));
    assert_eq!(code(&["stat"]), Some(2));
    let o = run(&["--help"]);
    assert!(o.status.success());
    assert!(stdout_of(&o).contains("Exit codes:"));

    // A line longer than the largest message: 2, with a clear message.
    let mut send = shmq()
        .args(["send", "--lines", "--capacity", "64", &name])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin.take().unwrap().write_all(&[b'x'; 100]).unwrap();
    let o = send.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("largest message"),
        "{}",
        stderr_of(&o)
    );

    // A segment of the other kind: 3.
    let (s, s_in) = live_sender(&name, &[]);
    wait_attached(&name, s.0.id());
    let o = run(&["recv", "--kind", "mpmc", &name]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr_of(&o).contains("spsc"), "{}", stderr_of(&o));
    // A second sender on an SPSC ring: busy, 3.
    let o = shmq()
        .args(["send", &name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr_of(&o));
    drop(s_in);
    let mut s = s;
    assert!(wait_for(&mut s.0, Duration::from_secs(10), "sender").success());

    // A file that is not a shmq segment: listed as unreadable, `recv` 3.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(name.path())
            .unwrap();
        f.write_all(b"not a shmq segment").unwrap();
    }
    let o = run(&["recv", &name]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr_of(&o));
    let ls = stdout_of(&run(&["ls"]));
    let row = ls.lines().find(|l| l.starts_with(&*name.0)).unwrap();
    assert!(row.contains("unreadable"), "{row}");
    let o = run(&["rm", &name]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!name.exists());
}

#[test]
fn closed_stdout_ends_recv_quietly() {
    let name = Name::new("epipe");
    let dir = Scratch::new("epipe");
    std::fs::write(dir.file("in"), random_bytes(200_000, 9)).unwrap();
    let mut recv = Reaper(
        shmq()
            .args(["recv", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let send = shmq()
        .args(["send", &name])
        .stdin(File::open(dir.file("in")).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(send.success());
    // Like `shmq recv NAME | head -c 10`.
    let mut out = recv.0.stdout.take().unwrap();
    let mut ten = [0u8; 10];
    out.read_exact(&mut ten).unwrap();
    drop(out);
    let status = wait_for(&mut recv.0, Duration::from_secs(10), "recv");
    let mut err = String::new();
    recv.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(err, "");
    assert!(!name.exists());
}

#[test]
fn interrupted_endpoints_detach_cleanly() {
    let name = Name::new("sigint");
    // A receiver waiting for a sender that never comes: Ctrl-C.
    let mut recv = Reaper(shmq().args(["recv", &name]).spawn().unwrap());
    eventually(Duration::from_secs(10), "the receiver's segment", || {
        stdout_of(&run(&["stat", &name])).contains("consumer 0   alive")
    });
    let pid = recv.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = wait_for(&mut recv.0, Duration::from_secs(10), "interrupted recv");
    assert_eq!(s.code(), Some(130));
    assert!(
        !name.exists(),
        "an interrupted receiver removes its segment"
    );

    // A sender stopped by SIGTERM mid-stream: the receiver sees a clean end.
    let (mut send, mut s_in) = live_sender(&name, &["--lines"]);
    s_in.write_all(b"one\ntwo\n").unwrap();
    s_in.flush().unwrap();
    let mut recv = Reaper(
        shmq()
            .args(["recv", "--lines", &name])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut got = [0u8; 8];
    recv.0
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    assert_eq!(&got, b"one\ntwo\n");
    let pid = send.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = wait_for(&mut send.0, Duration::from_secs(10), "interrupted send");
    assert_eq!(s.code(), Some(143));
    let r = wait_for(&mut recv.0, Duration::from_secs(10), "recv");
    assert!(r.success(), "{r}");
    assert!(!name.exists());
    drop(s_in);
}
