//! The `shmq` binary end to end: `send | recv` transfers, SIGKILLed and
//! interrupted senders and receivers (what the next receiver gets),
//! `send --wait-receiver`, `gc` racing a sender, `ls`, `stat`, `rm`, exit
//! codes, a closed stdout, `shmq bench` holding shmq-spsc to the limit.
//!
//! Every test uses segment names with this process's id and removes them,
//! whatever happens. `gc` is only ever run on this test's own names, so that
//! it cannot touch segments of other programs running at the same time.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
fn spin_only_rings_carry_data_say_so_and_refuse_sleepers() {
    let dir = Scratch::new("spinonly");
    let data = random_bytes(1 << 20, 11);
    let name = Name::new("spinonly");
    transfer(&name, &data, &["--spin-only"], &dir);
    assert!(!name.exists());

    let (s, s_in) = live_sender(&name, &["--spin-only"]);
    wait_attached(&name, s.0.id());
    let st = stdout_of(&run(&["stat", &name]));
    assert!(st.contains("wake:          spin-only"), "{st}");
    // A receiver that asks to sleep is refused (3) and told what to do.
    let o = run(&["recv", "--wait", "futex", &name]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("spin strategy"), "{}", stderr_of(&o));
    drop(s_in);
    let mut s = s;
    assert!(wait_for(&mut s.0, Duration::from_secs(10), "sender").success());
    // Asking for a spin-only ring and a sleeping wait at once: usage, 2.
    let o = run(&["recv", "--spin-only", "--wait", "sem", &name]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    let _ = run(&["rm", "--force", &name]);
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
fn bench_holds_spsc_streams_to_the_limit_of_the_same_run() {
    // Short and cross-process: the limit's producer is a `bench-peer`
    // child, as every transport's is. Segments are the bench's own
    // (`bench-PID-N`), removed by it.
    let args = [
        "bench",
        "--sizes",
        "64",
        "--rounds",
        "1",
        "--measure-ms",
        "20",
        "--patterns",
        "throughput",
        "--transports",
        "limit,shmq-spsc,pipe",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = stdout_of(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("limit      spin   throughput     64")),
        "{out}"
    );
    assert!(
        out.contains("shmq-spsc / limit (one-way stream, same run): 64 B x"),
        "{out}"
    );
    assert!(
        out.contains("limit / pipe (one-way stream, same run): 64 B x"),
        "{out}"
    );
    let o = run(&[&args[..], &["--json"]].concat());
    assert!(o.status.success(), "{}", stderr_of(&o));
    let json = stdout_of(&o);
    assert!(json.contains(r#""transport":"limit""#), "{json}");
    // Batches on both sides (the stop message can come inside a batch).
    let o = run(&[&args[..], &["--batch", "8"]].concat());
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = stdout_of(&o);
    assert!(
        out.contains("--batch 8: streams send 8 messages at a time and receive up to 8"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("shmq-spsc  spin   throughput     64")),
        "{out}"
    );
    // The limit only streams.
    let o = run(&["bench", "--patterns", "latency", "--transports", "limit"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("no latency pattern"),
        "{}",
        stderr_of(&o)
    );
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
    signal_expect(&mut recv.0, "-INT", 130, "interrupted recv");
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
    signal_expect(&mut send.0, "-TERM", 143, "interrupted send");
    let r = wait_for(&mut recv.0, Duration::from_secs(10), "recv");
    assert!(r.success(), "{r}");
    assert!(!name.exists());
    drop(s_in);
}

/// A seed for random kill points: `SHMQ_TEST_SEED`, or the clock. Printed,
/// so that a failing run can be replayed.
fn seed(test: &str) -> u64 {
    let s = std::env::var("SHMQ_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{test}: SHMQ_TEST_SEED={s}");
    s
}

/// xorshift64*, for kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// In `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Line `i` of the test inputs (without its '\n'): its number and a tail
/// whose length depends on it, so that a torn line never passes for
/// another one.
fn line(i: u64) -> String {
    const TAIL: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
    format!("{i} {}", &TAIL[..(i * 7 % 37) as usize])
}

/// Lines `first..=last`, each with its '\n'.
fn lines(first: u64, last: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in first..=last {
        out.extend_from_slice(line(i).as_bytes());
        out.push(b'\n');
    }
    out
}

/// The numbers of the complete lines in `out`, each checked intact. A
/// last line without its '\n' (a receiver killed in the middle of a
/// write(2)) is left out.
fn parse_lines(out: &[u8], what: &str) -> Vec<u64> {
    let text = std::str::from_utf8(out).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let complete = &text[..text.rfind('\n').map_or(0, |p| p + 1)];
    complete
        .lines()
        .map(|l| {
            let i = l
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what}: torn line {l:?}"));
            assert_eq!(l, line(i), "{what}: torn line");
            i
        })
        .collect()
}

/// Asserts that `nums` are `first, first + 1, …`.
fn assert_run(nums: &[u64], first: u64, what: &str) {
    for (k, &n) in nums.iter().enumerate() {
        let want = first + k as u64;
        assert_eq!(
            n, want,
            "{what}: line {want} expected at position {k}, got line {n}"
        );
    }
}

/// Waits until `path` holds at least `bytes`, failing if `child` exits
/// first.
fn wait_output(path: &std::path::Path, bytes: u64, child: &mut Child, what: &str) {
    let start = Instant::now();
    loop {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len >= bytes {
            return;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("{what} exited ({s}) after writing {len} of the {bytes} bytes waited for");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what} wrote only {len} of {bytes} bytes in 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `child` the signal `sig` (`kill -INT`, `-TERM`) and checks that
/// it exits within 10 s with status `code` (128 + the signal number: the
/// tool's exit after a clean detach).
fn signal_expect(child: &mut Child, sig: &str, code: i32, what: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = wait_for(child, Duration::from_secs(10), what);
    assert_eq!(s.code(), Some(code), "{what}: {}", stderr_text(child));
}

fn stderr_text(c: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    err
}

/// Starts `shmq VERB --lines NAME [extra]` with this stdin and stdout
/// (stderr piped, for the failure messages).
fn lines_cmd(verb: &str, name: &str, extra: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    shmq()
        .args([verb, "--lines", name])
        .args(extra)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `shmq recv --lines NAME [extra]` writing to `out`.
fn recv_to(name: &str, out: &std::path::Path, extra: &[&str]) -> Reaper {
    let out = File::create(out).unwrap().into();
    Reaper(lines_cmd("recv", name, extra, Stdio::inherit(), out))
}

/// Starts `shmq recv --lines NAME [extra]` whose stdout is a pipe that a
/// thread drains slowly into `out`: the receiver is the bottleneck, so the
/// ring stays full and it spends its time in write(2), holding messages,
/// which is where a kill or a signal finds it. Join the thread to have
/// everything it wrote in `out`.
fn recv_slowly(
    name: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> (Reaper, std::thread::JoinHandle<()>) {
    let mut c = lines_cmd("recv", name, extra, Stdio::inherit(), Stdio::piped());
    let mut pipe = c.stdout.take().unwrap();
    let mut file = File::create(out).unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => file.write_all(&buf[..n]).unwrap(),
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    (Reaper(c), drain)
}

/// Starts `shmq send --lines NAME [extra] < input`.
fn send_from(name: &str, input: &std::path::Path, extra: &[&str]) -> Reaper {
    let input = File::open(input).unwrap().into();
    Reaper(lines_cmd("send", name, extra, input, Stdio::inherit()))
}

/// A scratch directory (`tag`) holding `in`: the lines 1 to `n`, which it
/// also returns.
fn lines_input(tag: &str, n: u64) -> (Scratch, Vec<u8>) {
    let dir = Scratch::new(tag);
    let input = lines(1, n);
    std::fs::write(dir.file("in"), &input).unwrap();
    (dir, input)
}

/// One round of a receiver hand-over: a sender streams `input` into
/// `name` (`send_extra`), a slow first receiver (`recv_extra`) writes to
/// `dir/a` until a random point, `stop` ends it (a kill, a signal), and a
/// second receiver takes the rest into `dir/b`. Both the second receiver
/// and the sender must succeed; returns the two outputs.
fn handover(
    name: &str,
    dir: &Scratch,
    input_len: usize,
    rng: &mut Rng,
    (send_extra, recv_extra): (&[&str], &[&str]),
    stop: impl FnOnce(&mut Reaper, &mut Rng),
) -> (Vec<u8>, Vec<u8>) {
    let mut send = send_from(name, &dir.file("in"), send_extra);
    wait_attached(name, send.0.id());
    let (a_path, b_path) = (dir.file("a"), dir.file("b"));
    let (mut a, drain) = recv_slowly(name, &a_path, recv_extra);
    let at = rng.range(16 << 10, input_len as u64 * 6 / 10);
    wait_output(&a_path, at, &mut a.0, "the first receiver");
    stop(&mut a, rng);
    drain.join().unwrap();
    let mut b = recv_to(name, &b_path, recv_extra);
    let s = wait_for(&mut b.0, Duration::from_secs(120), "the second receiver");
    assert!(
        s.success(),
        "second receiver: {s}: {}",
        stderr_text(&mut b.0)
    );
    let s = wait_for(&mut send.0, Duration::from_secs(60), "the sender");
    assert!(s.success(), "sender: {s}: {}", stderr_text(&mut send.0));
    (
        std::fs::read(&a_path).unwrap(),
        std::fs::read(&b_path).unwrap(),
    )
}

/// The outputs of a killed first receiver (`a`) and the second one (`b`)
/// of lines 1 to `n`: each a run of consecutive lines, `a` from line 1,
/// `b` through line `n`. Returns `a`'s last line and `b`'s first (`n + 1`
/// if `b` is empty); the caller judges the seam between them.
fn killed_then_next(a: &[u8], b: &[u8], n: u64) -> (u64, u64) {
    let got_a = parse_lines(a, "killed receiver");
    assert_run(&got_a, 1, "killed receiver");
    let got_b = parse_lines(b, "second receiver");
    let x = got_a.len() as u64;
    let y = got_b.first().copied().unwrap_or(n + 1);
    assert_run(&got_b, y, "second receiver");
    assert_eq!(
        y + got_b.len() as u64 - 1,
        n,
        "the second receiver stopped early"
    );
    (x, y)
}

/// SIGKILLs the first receiver of a hand-over after a random pause.
fn sigkill_after_a_pause(a: &mut Reaper, rng: &mut Rng) {
    std::thread::sleep(Duration::from_micros(rng.range(0, 3000)));
    a.0.kill().unwrap(); // SIGKILL
    a.0.wait().unwrap();
}

/// Issue 13: a receiver SIGKILLed mid-stream loses nothing. Its output and
/// the next receiver's, joined, are the input; the next one may repeat
/// the end of the killed one's output (written, but its ring space not yet
/// freed), at most 64 KiB of it.
#[test]
fn sigkilled_receiver_loses_nothing() {
    const N: u64 = 300_000;
    let (dir, input) = lines_input("rkill", N);
    let mut rng = Rng::new(seed("sigkilled_receiver_loses_nothing"));
    for round in 0..6 {
        let name = Name::new(&format!("rkill{round}"));
        let send_opts: &[&str] = &["--wait-receiver", "--capacity", "64K"];
        let (a_out, b_out) = handover(
            &name,
            &dir,
            input.len(),
            &mut rng,
            (send_opts, &[]),
            sigkill_after_a_pause,
        );
        assert!(
            b_out.ends_with(b"\n"),
            "the second receiver's output is cut"
        );
        let (x, y) = killed_then_next(&a_out, &b_out, N);
        assert!(
            y <= x + 1,
            "round {round}: lines {} to {} lost",
            x + 1,
            y - 1
        );
        let repeated: usize = (y..=x).map(|i| line(i).len() + 1).sum();
        assert!(
            repeated <= 64 << 10,
            "round {round}: {repeated} bytes written twice, more than the documented 64 KiB"
        );
        println!(
            "round {round}: killed after {} bytes ({x} whole lines); the next receiver started \
             at line {y}: {} line(s), {repeated} bytes written again",
            a_out.len(),
            x + 1 - y
        );
        assert!(!name.exists(), "the segment should be gone");
    }
}

/// A killed MPMC receiver loses at most what it had taken and not yet
/// written (documented: 64 KiB of output, plus the message it held), and
/// nothing is delivered twice.
#[test]
fn sigkilled_mpmc_receiver_loses_at_most_its_buffer() {
    const N: u64 = 200_000;
    let (dir, input) = lines_input("mkill", N);
    let mut rng = Rng::new(seed("sigkilled_mpmc_receiver_loses_at_most_its_buffer"));
    for round in 0..3 {
        let name = Name::new(&format!("mkill{round}"));
        let send_opts: &[&str] = &["--kind", "mpmc", "--slots", "8192", "--wait-receiver"];
        let (a_out, b_out) = handover(
            &name,
            &dir,
            input.len(),
            &mut rng,
            (send_opts, &["--kind", "mpmc"]),
            sigkill_after_a_pause,
        );
        let (x, y) = killed_then_next(&a_out, &b_out, N);
        assert!(y > x, "round {round}: lines {y} to {x} delivered twice");
        let lost: usize = (x + 1..y).map(|i| line(i).len() + 1).sum();
        assert!(
            lost <= (64 << 10) + 256,
            "round {round}: {lost} bytes lost, more than the documented 64 KiB and one message"
        );
        println!(
            "round {round}: killed after {x} lines; lost {} line(s), {lost} bytes",
            y - x - 1
        );
        assert!(!name.exists(), "the segment should be gone");
    }
}

/// A receiver stopped with SIGINT mid-stream detaches after writing what
/// it took; with `--wait-receiver` the next receiver gets exactly the rest.
#[test]
fn interrupted_receiver_then_next_resumes() {
    const N: u64 = 200_000;
    let (dir, input) = lines_input("rint", N);
    let mut rng = Rng::new(seed("interrupted_receiver_then_next_resumes"));
    for round in 0..4 {
        let name = Name::new(&format!("rint{round}"));
        let send_opts: &[&str] = &["--wait-receiver", "--capacity", "64K"];
        let (mut joined, b_out) = handover(
            &name,
            &dir,
            input.len(),
            &mut rng,
            (send_opts, &[]),
            |a, _| signal_expect(&mut a.0, "-INT", 130, "the interrupted receiver"),
        );
        let a_len = joined.len();
        assert!(
            joined.ends_with(b"\n"),
            "the interrupted receiver's output is cut"
        );
        joined.extend(b_out);
        let got = parse_lines(&joined, "both receivers");
        assert_run(&got, 1, "both receivers");
        assert_eq!(got.len() as u64, N, "lines missing at the end");
        assert!(joined == input);
        println!(
            "round {round}: interrupted after {a_len} bytes; the next receiver wrote the rest"
        );
        assert!(!name.exists(), "the segment should be gone");
    }
}

/// Issue 13: `recv -n 3` leaves. By default the sender stops (exit 1, and
/// says why) and what it had sent stays for the next receiver; with
/// `--wait-receiver` the next receivers get the rest, nothing lost or
/// repeated.
#[test]
fn a_receiver_that_leaves_ends_the_stream_unless_wait_receiver() {
    const N: u64 = 20_000;
    let (dir, _) = lines_input("leave", N);
    let out = dir.file("out");
    let recv = |name: &str, extra: &[&str]| -> Vec<u64> {
        let mut r = recv_to(name, &out, extra);
        let s = wait_for(&mut r.0, Duration::from_secs(60), "recv");
        assert!(
            s.success(),
            "recv {extra:?}: {s}: {}",
            stderr_text(&mut r.0)
        );
        let o = std::fs::read(&out).unwrap();
        assert!(o.is_empty() || o.ends_with(b"\n"));
        parse_lines(&o, "recv")
    };

    // Default: like a writer whose pipe reader went away.
    let name = Name::new("leave-default");
    let mut send = send_from(&name, &dir.file("in"), &["--capacity", "64K"]);
    wait_attached(&name, send.0.id());
    assert_eq!(recv(&name, &["-n", "3"]), [1, 2, 3]);
    let s = wait_for(&mut send.0, Duration::from_secs(30), "the sender");
    let err = stderr_text(&mut send.0);
    assert_eq!(s.code(), Some(1), "{err}");
    assert!(
        err.contains("detached") && err.contains("--wait-receiver"),
        "{err}"
    );
    let rest = recv(&name, &[]);
    assert!(!rest.is_empty() && (rest.len() as u64) < N - 3);
    assert_run(&rest, 4, "what the stopped sender left");
    assert!(!name.exists());

    // --wait-receiver: the stream stays open for the next receiver.
    let name = Name::new("leave-wait");
    let mut send = send_from(
        &name,
        &dir.file("in"),
        &["--capacity", "64K", "--wait-receiver"],
    );
    wait_attached(&name, send.0.id());
    assert_eq!(recv(&name, &["-n", "3"]), [1, 2, 3]);
    let second = recv(&name, &["-n", "1000"]);
    assert_eq!(second.len(), 1000);
    assert_run(&second, 4, "second receiver");
    let third = recv(&name, &[]);
    assert_run(&third, 1004, "third receiver");
    assert_eq!(third.len() as u64, N - 1003, "lines missing at the end");
    let s = wait_for(&mut send.0, Duration::from_secs(30), "the sender");
    assert!(s.success(), "{s}: {}", stderr_text(&mut send.0));
    assert!(!name.exists());
}

/// Issue 13: `gc NAME` racing a sender that opens a stale segment of that
/// name never leaves the sender on an unlinked segment: a receiver that
/// comes afterwards gets its message.
#[test]
fn gc_during_a_live_stream_never_orphans_the_sender() {
    let mut rng = Rng::new(seed("gc_during_a_live_stream_never_orphans_the_sender"));
    let bin = env!("CARGO_BIN_EXE_shmq");
    for round in 0..30 {
        let name = Name::new(&format!("gcrace{round:02}"));
        // A stale segment: its sender left an unread message behind.
        let mut stale = shmq()
            .args(["send", "--lines", &name])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        stale.stdin.take().unwrap().write_all(b"one\n").unwrap();
        assert!(stale.wait().unwrap().success());
        assert!(name.exists());

        let mut send = Reaper(
            Command::new("sh")
                .args([
                    "-c",
                    "(echo two; sleep .3) | \"$0\" send -l \"$1\"",
                    bin,
                    &name,
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_micros(rng.range(0, 8000)));
        let gc = run(&["gc", &name]);
        assert!(gc.status.success(), "{}", stderr_of(&gc));

        let mut recv = Reaper(
            shmq()
                .args(["recv", "--lines", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let s = wait_for(
            &mut recv.0,
            Duration::from_secs(10),
            "a receiver (its sender was left on an unlinked segment?)",
        );
        let mut got = String::new();
        recv.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert!(s.success(), "{s}: {}", stderr_text(&mut recv.0));
        assert!(
            got == "two\n" || got == "one\ntwo\n",
            "round {round}: got {got:?} (gc said {:?})",
            stdout_of(&gc)
        );
        let s = wait_for(&mut send.0, Duration::from_secs(10), "the sender");
        assert!(s.success(), "{s}: {}", stderr_text(&mut send.0));
        assert!(!name.exists());
    }
}

/// A sender SIGKILLed mid-stream while input keeps flowing: the receiver
/// writes a clean prefix of the input (whole messages only: no torn line),
/// then reports the dead sender and exits 1.
#[test]
fn sigkilled_sender_leaves_a_clean_prefix() {
    let mut rng = Rng::new(seed("sigkilled_sender_leaves_a_clean_prefix"));
    let dir = Scratch::new("skill");
    for round in 0..6 {
        let by_lines = round % 2 == 0;
        let name = Name::new(&format!("skill{round}"));
        let mode: &[&str] = if by_lines { &["--lines"] } else { &[] };
        let mut send = Reaper(
            shmq()
                .args(["send", "--capacity", "64K", &name])
                .args(mode)
                .stdin(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut stdin = send.0.stdin.take().unwrap();
        // Input keeps coming until the sender is gone.
        let writer = std::thread::spawn(move || {
            let mut i = 1;
            while stdin.write_all(&lines(i, i + 99)).is_ok() {
                i += 100;
            }
        });
        let out = dir.file("out");
        let mut recv = Reaper(
            shmq()
                .args(["recv", &name])
                .args(mode)
                .stdout(File::create(&out).unwrap())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let at = rng.range(4 << 10, 4 << 20);
        wait_output(&out, at, &mut recv.0, "the receiver");
        std::thread::sleep(Duration::from_micros(rng.range(0, 3000)));
        send.0.kill().unwrap(); // SIGKILL
        send.0.wait().unwrap();
        let s = wait_for(&mut recv.0, Duration::from_secs(10), "recv after SIGKILL");
        let err = stderr_text(&mut recv.0);
        assert_eq!(
            s.code(),
            Some(1),
            "round {round}: recv should report the SIGKILLed sender: {err:?}"
        );
        assert!(err.contains("died"), "{err}");
        writer.join().unwrap();

        let got = std::fs::read(&out).unwrap();
        if by_lines {
            assert!(got.ends_with(b"\n"), "round {round}: a torn last line");
            let nums = parse_lines(&got, "receiver");
            assert_run(&nums, 1, "receiver");
            println!("round {round} (--lines): {} whole lines", nums.len());
        } else {
            let mut want = Vec::new();
            let mut i = 1;
            while want.len() < got.len() {
                want.extend(lines(i, i + 99));
                i += 100;
            }
            assert!(
                got == want[..got.len()],
                "round {round}: not a prefix of the input"
            );
            println!("round {round} (chunks): a prefix of {} bytes", got.len());
        }
        assert!(
            !name.exists(),
            "the receiver, last to leave, removes the segment"
        );
    }
}

/// A sender waiting for room in a full ring (nobody receives) is ended by
/// SIGINT at once (the handler interrupts its blocking call) and detaches
/// cleanly: a later receiver gets whole lines from the first, then a clean
/// end.
#[test]
fn interrupted_sender_waiting_for_room_detaches() {
    let name = Name::new("fullint");
    let dir = Scratch::new("fullint");
    std::fs::write(dir.file("in"), lines(1, 10_000)).unwrap();
    let mut send = send_from(&name, &dir.file("in"), &["--capacity", "4K"]);
    wait_attached(&name, send.0.id());
    eventually(Duration::from_secs(10), "a full ring", || {
        let st: serde_json::Value =
            serde_json::from_str(&stdout_of(&run(&["stat", "--json", &name]))).unwrap();
        st["used"].as_u64().unwrap() > 3 << 10
    });
    signal_expect(&mut send.0, "-INT", 130, "the interrupted sender");
    let o = run(&["recv", "--lines", &name]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let got = parse_lines(&o.stdout, "receiver");
    assert!(o.stdout.ends_with(b"\n") && !got.is_empty());
    assert_run(&got, 1, "receiver");
    assert!(!name.exists());
}

/// A signal that lands after `send` last looked for one and before it
/// waits for stdin still ends the wait (the handler writes to a pipe that
/// the wait polls along with stdin). `SHMQ_CLI_TEST_STALL_MS` holds the
/// sender in that window for 2 s; the signal comes during it.
#[test]
fn signal_just_before_the_stdin_wait_is_not_missed() {
    let name = Name::new("stall");
    let mut c = shmq()
        .args(["send", "--lines", &name])
        .env("SHMQ_CLI_TEST_STALL_MS", "2000")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open and empty: only a signal can end the wait.
    let stdin = c.stdin.take().unwrap();
    let mut send = Reaper(c);
    wait_attached(&name, send.0.id());
    signal_expect(&mut send.0, "-TERM", 143, "the signalled sender");
    assert!(!name.exists());
    drop(stdin);
}
