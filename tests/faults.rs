//! Fault tolerance and security: peers killed at random points, creators
//! killed during initialisation, squatted and foreign files, run-time
//! corruption of a live segment, and a full /dev/shm.
//!
//! Run in release mode: `cargo test -p shmq --release --test faults`.
//! `SHMQ_FAULT_ITERS` sets the kill iterations per case (default 200).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Name, Rng, env, fill, kill_after, spawn_child, spawn_role, wait_for_line};
use shmq::{Error, OpenError, Options, mpmc, spsc};

fn iters() -> u64 {
    std::env::var("SHMQ_FAULT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Fast liveness checks so that hundreds of kills finish quickly.
fn fast() -> Options {
    Options::new()
        .capacity(4096)
        .liveness_interval(Duration::from_millis(10))
}

fn fast_mpmc() -> Options {
    Options::new()
        .slots(64)
        .slot_size(64)
        .liveness_interval(Duration::from_millis(10))
        .abandon_timeout(Duration::from_millis(20))
}

/// An SPSC message: seq, then bytes derived from seq (a torn message would
/// not match).
fn spsc_msg(seq: u64, buf: &mut Vec<u8>) {
    let len = 8 + (seq % 97) as usize;
    buf.resize(len, 0);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    fill(&mut buf[8..], seq);
}

fn check_spsc_msg(m: &[u8]) -> u64 {
    assert!(m.len() >= 8, "torn message (len {})", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    let mut want = Vec::new();
    spsc_msg(seq, &mut want);
    assert_eq!(m, &want[..], "torn message {seq}");
    seq
}

/// Child processes' entry (run by `spawn_child`; ignored as a test).
#[test]
#[ignore = "child process entry point, run by spawn_child"]
fn child_entry() {
    let Some((role, name)) = common::child() else {
        return;
    };
    let (o, om) = (fast(), fast_mpmc());
    match role.as_str() {
        "spsc_producer" => {
            let mut tx = spsc::Producer::open(&name, &o).unwrap();
            println!("READY");
            let mut buf = Vec::new();
            for seq in 0.. {
                spsc_msg(seq, &mut buf);
                let Ok(mut g) = tx.reserve(buf.len()) else {
                    // The consumer left: wait to be killed, still attached.
                    std::thread::sleep(Duration::from_secs(600));
                    unreachable!();
                };
                g.copy_from_slice(&buf);
                g.commit(buf.len());
            }
        }
        "spsc_consumer" => {
            use std::io::Write;
            let mut rx = spsc::Consumer::open(&name, &o).unwrap();
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY").unwrap();
            loop {
                let g = rx.recv().unwrap();
                let seq = check_spsc_msg(&g);
                // Recorded before release: a kill in between re-delivers it.
                writeln!(out, "{seq}").unwrap();
                out.flush().unwrap();
                drop(g);
            }
        }
        "mpmc_producer" => {
            let mut tx = mpmc::Producer::open(&name, &om).unwrap();
            println!("READY");
            for seq in 0u64.. {
                let mut g = tx.reserve().unwrap();
                g[..8].copy_from_slice(&seq.to_le_bytes());
                g.commit(8);
            }
        }
        "mpmc_claim_then_wait" => {
            let mut tx = mpmc::Producer::open(&name, &om).unwrap();
            for seq in 0..3u64 {
                tx.send(&seq.to_le_bytes()).unwrap();
            }
            let _g = tx.reserve().unwrap();
            println!("CLAIMED");
            std::thread::sleep(Duration::from_secs(600));
        }
        "mpmc_consumer" => {
            use std::io::Write;
            let mut rx = mpmc::Consumer::open(&name, &om).unwrap();
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY").unwrap();
            loop {
                let g = rx.recv().unwrap();
                let seq = u64::from_le_bytes(g[..8].try_into().unwrap());
                writeln!(out, "{seq}").unwrap();
                out.flush().unwrap();
                drop(g);
            }
        }
        "stuck_creator" => {
            // Creates the file and holds the init lock (byte 0), as a creator
            // that is still initialising; never publishes READY.
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(format!("/dev/shm/shmq.{name}"))
                .unwrap();
            f.set_len(1 << 16).unwrap();
            // SAFETY: all-zero is a valid flock; fcntl gets a valid pointer.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as i16;
            fl.l_whence = libc::SEEK_SET as i16;
            fl.l_start = 0;
            fl.l_len = 1;
            // SAFETY: valid descriptor and flock.
            let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
            assert_eq!(rc, 0);
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        "small_tmpfs" => small_tmpfs_child(),
        "churn_consumer" => {
            let secs: u64 = env("SHMQ_SECS").parse().unwrap();
            let end = Instant::now() + Duration::from_secs(secs);
            let (mut n, mut orphans, mut errors) = (0u64, 0u64, 0u64);
            while Instant::now() < end {
                match spsc::Consumer::open_or_create(&name, &churn_opts()) {
                    Ok(rx) => {
                        n += 1;
                        orphans += u64::from(common::orphaned(&name));
                        drop(rx);
                    }
                    Err(e) => {
                        eprintln!("churn consumer: {e}");
                        errors += 1;
                    }
                }
            }
            println!("CHURN {n} {orphans} {errors}");
        }
        "big_producer" => {
            let o = Options::new().capacity(512 << 20).reclaim_stale(true);
            let mut tx = spsc::Producer::open_or_create(&name, &o).unwrap();
            println!("ATTACHED {}", common::orphaned(&name));
            tx.send(b"hello").unwrap();
            // Stay attached until the parent has checked.
            std::thread::sleep(Duration::from_secs(600));
        }
        "race_consumer" => {
            let count: u64 = env("SHMQ_COUNT").parse().unwrap();
            let (mut errors, mut orphans) = (0u64, 0u64);
            println!("READY");
            for i in 0..count {
                let n = format!("{name}-{i}");
                match spsc::Consumer::open_or_create(&n, &Options::new().capacity(4096)) {
                    Ok(mut rx) => {
                        orphans += u64::from(common::orphaned(&n));
                        match rx.recv_timeout(Duration::from_secs(5)) {
                            Ok(m) if *m == i.to_le_bytes() => {}
                            Ok(_) => errors += 1,
                            Err(e) => {
                                eprintln!("{n}: recv: {e}");
                                errors += 1;
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("{n}: open_or_create: {e}");
                        errors += 1;
                    }
                }
            }
            println!("RACE {errors} {orphans}");
        }
        "sem_consumer" => {
            let mut rx = mpmc::Consumer::open(&name, &sem_opts()).unwrap();
            println!("READY");
            let m = rx.recv().unwrap().to_vec();
            println!("GOT {}", String::from_utf8_lossy(&m));
        }
        "producer_churn" => {
            // Attached once before READY: the kills then land in the churn,
            // never before the first attach (which would leave the consumer
            // waiting for a producer that never came, rightly).
            drop(mpmc::Producer::open(&name, &churn_mpmc()).unwrap());
            println!("READY");
            loop {
                drop(mpmc::Producer::open(&name, &churn_mpmc()).unwrap());
            }
        }
        "forking_consumer" => {
            let _rx = spsc::Consumer::open(&name, &Options::new().capacity(4096)).unwrap();
            // SAFETY: the child only sleeps and exits, touching nothing.
            if unsafe { libc::fork() } == 0 {
                // SAFETY: async-signal-safe calls only.
                unsafe {
                    libc::sleep(8);
                    libc::_exit(0)
                }
            }
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        "fork_with_grants" => fork_with_grants_child(&name),
        "fork_at_fd_limit" => {
            let rx = spsc::Consumer::open(&name, &Options::new().capacity(4096)).unwrap();
            // Leave this process no free descriptor below its limit, so
            // that a child cannot open one either.
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: a valid rlimit for the call.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            let mut filler = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                filler.push(f);
            }
            // SAFETY: the child only drops what it inherited and exits.
            match unsafe { libc::fork() } {
                0 => {
                    drop(rx); // must not unlock the parent's endpoint
                    // SAFETY: plain exit of the child.
                    unsafe { libc::_exit(0) }
                }
                pid => {
                    let mut status = 0;
                    // SAFETY: our own child.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                    println!("CHILD GONE");
                    std::thread::sleep(Duration::from_secs(600));
                    drop((rx, filler));
                }
            }
        }
        "fork_uses_endpoint" => {
            let mut tx = spsc::Producer::open(&name, &Options::new().capacity(4096)).unwrap();
            tx.send(b"from the parent").unwrap();
            // SAFETY: the child uses only this crate's calls on an endpoint
            // it inherited (which must refuse), then exits.
            match unsafe { libc::fork() } {
                0 => {
                    let r = tx.send(b"from the child");
                    let code = if r == Err(Error::Forked) { 0 } else { 1 };
                    drop(tx); // must not detach the parent's endpoint
                    // SAFETY: plain exit of the child.
                    unsafe { libc::_exit(code) }
                }
                pid => {
                    let mut status = 0;
                    // SAFETY: our own child.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                    println!("CHILD {}", libc::WEXITSTATUS(status));
                    tx.send(b"after the child").unwrap();
                    std::thread::sleep(Duration::from_secs(600));
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn spsc_producer_killed_at_random_points() {
    let mut rng = Rng(7);
    let mut delivered = 0u64;
    for it in 0..iters() {
        let name = Name::new("kp");
        let mut rx = spsc::Consumer::create(&name, &fast()).unwrap();
        let (killer, _) = doom(&name, "spsc_producer", &mut rng);
        let mut next = 0u64;
        let err = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => {
                    assert_eq!(check_spsc_msg(&m), next, "iteration {it}: gap or duplicate");
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        let killed = killer.join().unwrap();
        assert_eq!(err, Error::PeerDied, "iteration {it}");
        assert!(Instant::now().duration_since(killed) < Duration::from_secs(5));
        delivered += next;
        // A new producer attaches once the dead one is detected.
        let mut tx = spsc::Producer::open(&name, &fast()).unwrap();
        let mut buf = Vec::new();
        spsc_msg(next, &mut buf);
        tx.send(&buf).unwrap();
        assert_eq!(check_spsc_msg(&rx.recv().unwrap()), next);
    }
    println!(
        "survived {} producer kills, {delivered} messages checked",
        iters()
    );
}

/// Starts `role` on segment `name`, waits until it has attached, and kills
/// it after a random delay of up to 3 ms. Returns the killer (it yields the
/// moment of the kill) and the numbers the child printed after READY.
fn doom(
    name: &Name,
    role: &str,
    rng: &mut Rng,
) -> (
    std::thread::JoinHandle<Instant>,
    std::thread::JoinHandle<Vec<u64>>,
) {
    let mut child = spawn_role(role, name, &[]);
    wait_for_line(&mut child, "READY");
    let reader = read_seqs(&mut child);
    let delay = Duration::from_micros(rng.below(3000));
    (std::thread::spawn(move || kill_after(child, delay)), reader)
}

/// Reads the numbers a consumer child printed (it prints before releasing).
fn read_seqs(child: &mut Child) -> std::thread::JoinHandle<Vec<u64>> {
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    })
}

#[test]
fn spsc_consumer_killed_at_random_points() {
    let mut rng = Rng(11);
    let mut checked = 0u64;
    for it in 0..iters() {
        let name = Name::new("kc");
        let total = 2000u64;
        let mut tx = spsc::Producer::create(&name, &fast()).unwrap();
        let (killer, reader) = doom(&name, "spsc_consumer", &mut rng);
        let mut buf = Vec::new();
        let mut sent = 0u64;
        while sent < total {
            spsc_msg(sent, &mut buf);
            match tx.send_timeout(&buf, Duration::from_secs(20)) {
                Ok(()) => sent += 1,
                Err(Error::PeerDied) => break,
                Err(e) => panic!("iteration {it}: {e}"),
            }
        }
        killer.join().unwrap();
        let seen = reader.join().unwrap();
        // A new consumer attaches and drains; the producer finishes.
        let mut rx = spsc::Consumer::open(&name, &fast()).unwrap();
        let mut got = Vec::new();
        loop {
            while let Ok(m) = rx.try_recv() {
                got.push(check_spsc_msg(&m));
            }
            if sent == total {
                break;
            }
            spsc_msg(sent, &mut buf);
            if tx.try_send(&buf).is_ok() {
                sent += 1;
            }
        }
        drop(tx);
        while let Ok(m) = rx.recv() {
            got.push(check_spsc_msg(&m));
        }
        // Exactly once, except that the message the dead consumer held (it
        // printed it but never released it) is delivered again.
        let dup = match (seen.last(), got.first()) {
            (Some(a), Some(b)) if a == b => 1,
            _ => 0,
        };
        assert_eq!(
            seen.len() + got.len(),
            total as usize + dup,
            "iteration {it}"
        );
        let all: Vec<u64> = seen.iter().chain(got.iter().skip(dup)).copied().collect();
        assert!(
            all.iter().copied().eq(0..total),
            "iteration {it}: loss or reorder"
        );
        checked += total;
    }
    println!(
        "survived {} consumer kills, {checked} messages checked",
        iters()
    );
}

#[test]
fn mpmc_producer_killed_at_random_points() {
    let mut rng = Rng(13);
    let (mut checked, mut abandoned) = (0u64, 0u64);
    for it in 0..iters() {
        let name = Name::new("mkp");
        let mut rx = mpmc::Consumer::create(&name, &fast_mpmc()).unwrap();
        let (killer, _) = doom(&name, "mpmc_producer", &mut rng);
        let mut next = 0u64;
        let err = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => {
                    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
                    assert_eq!(seq, next, "iteration {it}: gap or duplicate");
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        killer.join().unwrap();
        assert_eq!(err, Error::Disconnected, "iteration {it}");
        checked += next;
        abandoned += rx.stats().abandoned;
        let mut tx = mpmc::Producer::open(&name, &fast_mpmc()).unwrap();
        tx.send(&u64::MAX.to_le_bytes()).unwrap();
        assert_eq!(&rx.recv().unwrap()[..8], &u64::MAX.to_le_bytes());
    }
    // Random kills land between claim and commit only about 1% of the time,
    // so a child also claims a slot, says so, and waits to be killed there:
    // the slot is abandoned and every other message arrives once.
    for round in 0..5 {
        let name = Name::new("mkp-claim");
        let mut rx = mpmc::Consumer::create(&name, &fast_mpmc()).unwrap();
        let mut child = spawn_role("mpmc_claim_then_wait", &name, &[]);
        wait_for_line(&mut child, "CLAIMED");
        child.kill().unwrap();
        child.wait().unwrap();
        let mut tx = mpmc::Producer::open(&name, &fast_mpmc()).unwrap();
        for seq in 3..6u64 {
            tx.send(&seq.to_le_bytes()).unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4, 5], "round {round}");
        assert_eq!(rx.stats().abandoned, 1, "round {round}: the claimed slot");
        abandoned += 1;
    }
    println!(
        "survived {} mpmc producer kills, {checked} messages checked, {abandoned} abandoned slots skipped",
        iters()
    );
}

#[test]
fn mpmc_consumer_killed_at_random_points() {
    let mut rng = Rng(17);
    let mut checked = 0u64;
    for it in 0..iters() {
        let name = Name::new("mkc");
        let total = 1000u64;
        let mut tx = mpmc::Producer::create(&name, &fast_mpmc()).unwrap();
        let (killer, reader) = doom(&name, "mpmc_consumer", &mut rng);
        let mut sent = 0u64;
        while sent < total {
            match tx.send_timeout(&sent.to_le_bytes(), Duration::from_secs(20)) {
                Ok(()) => sent += 1,
                Err(Error::Disconnected) => break,
                Err(e) => panic!("iteration {it}: {e}"),
            }
        }
        killer.join().unwrap();
        let seen = reader.join().unwrap();
        let mut rx = mpmc::Consumer::open(&name, &fast_mpmc()).unwrap();
        let mut got: Vec<u64> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent < total {
            assert!(Instant::now() < deadline, "iteration {it}: producer stuck");
            while let Ok(m) = rx.try_recv() {
                got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
            }
            // Full while the dead consumer's slot waits to be reclaimed.
            match tx.try_send(&sent.to_le_bytes()) {
                Ok(()) => sent += 1,
                Err(Error::Full) => std::thread::yield_now(),
                Err(e) => panic!("iteration {it}: {e}"),
            }
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("iteration {it}: {e}"),
            }
        }
        let all: Vec<u64> = seen.iter().chain(got.iter()).copied().collect();
        let unique: HashSet<u64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "iteration {it}: duplicate");
        assert!(
            all.iter().all(|&v| v < total),
            "iteration {it}: a value that was never sent"
        );
        // Every message arrives exactly once, except at most the one the
        // dead consumer held when it died, before it printed it: the one
        // after the last it printed (it was the only consumer, and took
        // them in order).
        let missing: Vec<u64> = (0..total).filter(|v| !unique.contains(v)).collect();
        let held = seen.last().map_or(0, |&s| s + 1);
        assert!(
            missing.is_empty() || missing == [held],
            "iteration {it}: lost {missing:?} (the dead consumer could hold only {held})"
        );
        checked += all.len() as u64;
    }
    println!(
        "survived {} mpmc consumer kills, {checked} messages checked",
        iters()
    );
}

#[test]
fn creator_killed_during_init_times_out_then_is_reclaimed() {
    let name = Name::new("init");
    let mut child = spawn_role("stuck_creator", &name, &[]);
    wait_for_line(&mut child, "READY");
    let o = Options::new().open_timeout(Duration::from_millis(50));
    assert!(matches!(
        spsc::Consumer::open(&name, &o),
        Err(OpenError::Timeout { .. })
    ));
    let info = shmq::inspect(&name).unwrap();
    assert!(!info.ready && !info.stale, "creator still at work");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(
        spsc::Consumer::open(&name, &o),
        Err(OpenError::Timeout { .. })
    ));
    assert!(shmq::inspect(&name).unwrap().stale, "creator dead: stale");
    // open_or_create with reclaim_stale takes the name back.
    let rx = spsc::Consumer::open_or_create(&name, &o.clone().reclaim_stale(true)).unwrap();
    drop(rx);
    // And gc removes a stale half-made segment.
    let mut child = spawn_role("stuck_creator", &name, &[]);
    wait_for_line(&mut child, "READY");
    child.kill().unwrap();
    child.wait().unwrap();
    // (Only this test's segment: other tests keep stale segments on purpose.)
    let outcome = shmq::gc_one(&name);
    assert!(matches!(outcome, shmq::GcOutcome::Removed), "{outcome:?}");
    assert!(!std::path::Path::new(&name.path()).exists());
}

#[test]
fn gc_never_removes_a_live_segment_and_removes_a_dead_one() {
    let live = Name::new("gclive");
    let dead = Name::new("gcdead");
    let _tx = spsc::Producer::create(&live, &fast()).unwrap();
    // A segment whose only endpoints were a consumer that left (keeping the
    // segment) and a producer that was killed.
    let rx = spsc::Consumer::create(&dead, &fast().keep(true)).unwrap();
    let mut child = spawn_role("spsc_producer", &dead, &[]);
    wait_for_line(&mut child, "READY");
    drop(rx);
    assert!(matches!(shmq::gc_one(&dead), shmq::GcOutcome::InUse));
    child.kill().unwrap();
    child.wait().unwrap();
    let info = shmq::inspect(&dead).unwrap();
    assert!(info.stale, "{info:?}");
    assert!(
        info.endpoints
            .iter()
            .any(|e| e.state == shmq::EndpointState::Dead)
    );
    // A foreign file under a shmq name is not ours to remove.
    let foreign = Name::new("gcforeign");
    foreign.write_file(&[0x5A; 8192]);
    assert!(matches!(
        shmq::inspect(&foreign),
        Err(OpenError::NotShmq { .. })
    ));
    let report: Vec<_> = [&live, &dead, &foreign]
        .iter()
        .map(|n| shmq::gc_one(n))
        .collect();
    assert!(matches!(report[0], shmq::GcOutcome::InUse), "{report:?}");
    assert!(matches!(report[1], shmq::GcOutcome::Removed), "{report:?}");
    assert!(
        matches!(report[2], shmq::GcOutcome::Skipped(_)),
        "{report:?}"
    );
    assert!(std::path::Path::new(&live.path()).exists(), "{report:?}");
    assert!(!std::path::Path::new(&dead.path()).exists(), "{report:?}");
    assert!(std::path::Path::new(&foreign.path()).exists(), "{report:?}");
}

fn assert_untouched(name: &Name, before: &[u8]) {
    let after = std::fs::read(name.path()).unwrap();
    assert!(after == before, "the file was written through");
}

#[test]
fn symlink_under_a_shmq_name_is_refused() {
    let name = Name::new("link");
    let target = Name::new("linktarget");
    let _t = spsc::Producer::create(&target, &fast()).unwrap();
    std::os::unix::fs::symlink(target.path(), name.path()).unwrap();
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(matches!(err, OpenError::NotShmq { .. }), "{err}");
    assert!(matches!(
        spsc::Producer::create(&name, &fast()),
        Err(OpenError::AlreadyExists { .. })
    ));
}

/// Needs root (to give a file away); `.ci/run` runs it with `--ignored`
/// when it runs as root.
#[test]
#[ignore = "needs root to chown a file to another user: run with --ignored as root"]
fn file_owned_by_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "run this test as root");
    let name = Name::new("owner");
    let tx = spsc::Producer::create(&name, &fast().keep(true)).unwrap();
    drop(tx);
    std::os::unix::fs::chown(name.path(), Some(65534), Some(65534)).unwrap();
    let before = std::fs::read(name.path()).unwrap();
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(matches!(err, OpenError::PermissionDenied { .. }), "{err}");
    assert!(err.to_string().contains("owned by uid 65534"));
    assert_untouched(&name, &before);
}

#[test]
fn group_or_world_writable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o620, 0o602, 0o666] {
        let name = Name::new("perm");
        drop(spsc::Producer::create(&name, &fast().keep(true)).unwrap());
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let before = std::fs::read(name.path()).unwrap();
        let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
        assert!(
            matches!(err, OpenError::PermissionDenied { .. }),
            "{mode:o}: {err}"
        );
        assert_untouched(&name, &before);
    }
}

#[test]
fn wrong_size_garbage_magic_and_future_version_are_refused() {
    // A valid segment image to start from.
    let src = Name::new("src");
    drop(spsc::Producer::create(&src, &fast().keep(true)).unwrap());
    let image = std::fs::read(src.path()).unwrap();

    let name = Name::new("size");
    name.write_file(&image[..image.len() - 64]);
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(matches!(err, OpenError::Corrupted { .. }), "short: {err}");
    let mut longer = image.clone();
    longer.extend_from_slice(&[0; 4096]);
    name.write_file(&longer);
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(matches!(err, OpenError::Corrupted { .. }), "long: {err}");

    let mut bad = image.clone();
    bad[..8].copy_from_slice(b"NOTSHMQ!");
    name.write_file(&bad);
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(matches!(err, OpenError::NotShmq { .. }), "magic: {err}");
    assert_untouched(&name, &bad);

    let mut future = image.clone();
    future[8..12].copy_from_slice(&99u32.to_le_bytes());
    name.write_file(&future);
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(
        matches!(err, OpenError::VersionMismatch { found: 99, .. }),
        "version: {err}"
    );
    assert_untouched(&name, &future);

    let mut hash = image.clone();
    hash[16] ^= 1;
    name.write_file(&hash);
    let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
    assert!(
        matches!(err, OpenError::VersionMismatch { .. }),
        "layout hash: {err}"
    );
}

/// Writes `v` at byte `off` of the live segment file (same pages as the
/// mappings).
fn scribble(name: &Name, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.write_at(&v.to_le_bytes(), off).unwrap();
}

const PROD: u64 = 128;
const CONS: u64 = 256;
const DATA_SPSC: u64 = 768; // header 640 + a 2-entry endpoint table padded to 128

#[test]
fn runtime_corruption_of_spsc_cursors_and_lengths_is_detected() {
    let cases: [(&str, u64, u64); 3] = [
        (
            "record length huge",
            DATA_SPSC,
            (0x2147_534d_u64 << 32) | 0xFFFF,
        ),
        ("record tag garbage", DATA_SPSC, 0xDEAD_BEEF_0000_0010),
        (
            "padding in the wrong place",
            DATA_SPSC,
            (0x2144_4150_u64 << 32) | 8,
        ),
    ];
    for (what, off, v) in cases {
        let name = Name::new("corrupt");
        let mut tx = spsc::Producer::create(&name, &fast()).unwrap();
        let mut rx = spsc::Consumer::open(&name, &fast()).unwrap();
        tx.send(b"first message").unwrap();
        scribble(&name, off, v);
        let r = rx.recv_timeout(Duration::from_secs(5)).err();
        assert!(matches!(r, Some(Error::Corrupted(_))), "{what}: {r:?}");
        assert!(
            matches!(rx.try_recv().err(), Some(Error::Corrupted(_))),
            "{what}: poisoned"
        );
        assert!(shmq::inspect(&name).unwrap().poisoned);
    }
    // The write cursor: the consumer finds records by their header words,
    // so a scribbled `tail` does not stop the stream; an endpoint that
    // starts from it (a consumer attaching) reports it.
    for (what, v) in [("tail far ahead", 1 << 40), ("tail unaligned", 3)] {
        let name = Name::new("corrupt-tail");
        let mut tx = spsc::Producer::create(&name, &fast()).unwrap();
        let mut rx = spsc::Consumer::open(&name, &fast()).unwrap();
        tx.send(b"first message").unwrap();
        scribble(&name, PROD, v);
        let m = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&*m, b"first message", "{what}");
        drop(m);
        drop(rx);
        let err = spsc::Consumer::open(&name, &fast()).err().unwrap();
        assert!(matches!(err, OpenError::Corrupted { .. }), "{what}: {err}");
        assert!(shmq::inspect(&name).unwrap().poisoned);
    }
    // Head moved behind the producer's back.
    let name = Name::new("corrupt-head");
    let mut tx = spsc::Producer::create(&name, &fast()).unwrap();
    let _rx = spsc::Consumer::open(&name, &fast()).unwrap();
    while tx.try_send(&[0; 100]).is_ok() {}
    scribble(&name, CONS, 1 << 50);
    assert!(matches!(
        tx.try_send(&[0; 100]).err(),
        Some(Error::Corrupted(_))
    ));
}

#[test]
fn runtime_corruption_of_mpmc_sequences_and_lengths_is_detected() {
    // MPMC data area: header 640 + table of 128 endpoints x 16 bytes.
    let data = 640 + 64 * 2 * 16;
    let name = Name::new("mcorrupt");
    let mut tx = mpmc::Producer::create(&name, &fast_mpmc()).unwrap();
    let mut rx = mpmc::Consumer::open(&name, &fast_mpmc()).unwrap();
    tx.send(b"x").unwrap();
    // Slot 0's info word: a length beyond the slot.
    scribble(&name, data + 8, (0x2147_534d_u64 << 32) | 10_000);
    let r = rx.try_recv().err();
    assert!(matches!(r, Some(Error::Corrupted(_))), "{r:?}");
    // Poisoned: the copying receive says so too.
    let r = rx.try_recv_into(&mut [0u8; 64]).err();
    assert!(matches!(r, Some(Error::Corrupted(_))), "{r:?}");
    // The same scribble met by the copying receive's quick path.
    let name = Name::new("mcorrupt3");
    let mut tx = mpmc::Producer::create(&name, &fast_mpmc()).unwrap();
    let mut rx = mpmc::Consumer::open(&name, &fast_mpmc()).unwrap();
    tx.send(b"x").unwrap();
    scribble(&name, data + 8, (0x2147_534d_u64 << 32) | 10_000);
    let r = rx.recv_into(&mut [0u8; 64]).err();
    assert!(matches!(r, Some(Error::Corrupted(_))), "{r:?}");
    let r = rx.recv().err();
    assert!(matches!(r, Some(Error::Corrupted(_))), "{r:?}");

    let name = Name::new("mcorrupt2");
    let mut tx = mpmc::Producer::create(&name, &fast_mpmc()).unwrap();
    let _rx = mpmc::Consumer::open(&name, &fast_mpmc()).unwrap();
    // Slot 0's sequence far behind its lap: the producer refuses it.
    scribble(&name, PROD, 1 << 20);
    let r = tx.try_send(b"y").err();
    assert!(matches!(r, Some(Error::Corrupted(_))), "{r:?}");
}

fn small_tmpfs_child() {
    // SAFETY: unshare/mount are plain syscalls with valid C strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            println!("UNSUPPORTED unshare");
            return;
        }
        let none = c"none";
        let root = c"/";
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            println!("UNSUPPORTED private mount");
            return;
        }
        let shm = c"/dev/shm";
        let tmpfs = c"tmpfs";
        let opts = c"size=1m";
        if libc::mount(
            tmpfs.as_ptr(),
            shm.as_ptr(),
            tmpfs.as_ptr(),
            0,
            opts.as_ptr().cast(),
        ) != 0
        {
            println!("UNSUPPORTED tmpfs mount");
            return;
        }
    }
    let o = Options::new();
    let big = spsc::Producer::create("nospace-big", &o.clone().capacity(4 << 20));
    println!("BIG {}", matches!(big, Err(OpenError::NoSpace { .. })));
    let fits = spsc::Producer::create("nospace-fits", &o.clone().capacity(512 << 10));
    println!("FITS {}", fits.is_ok());
    let second = spsc::Producer::create("nospace-second", &o.clone().capacity(512 << 10));
    println!(
        "SECOND {}",
        matches!(second, Err(OpenError::NoSpace { .. }))
    );
    println!("LEFT {}", std::fs::read_dir("/dev/shm").unwrap().count());
}

#[test]
fn full_dev_shm_is_no_space_at_create_never_sigbus_later() {
    let child = spawn_child(
        "child_entry",
        "small_tmpfs",
        &[("SHMQ_NAME", "unused".into())],
    );
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("UNSUPPORTED") {
        eprintln!("no private tmpfs here ({text}); using a capacity beyond /dev/shm instead");
        let name = Name::new("nospace");
        let err = spsc::Producer::create(&name, &Options::new().capacity(1 << 40))
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::NoSpace { .. }), "{err}");
        assert!(!std::path::Path::new(&name.path()).exists());
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("BIG true"), "{text}");
    assert!(text.contains("FITS true"), "{text}");
    assert!(text.contains("SECOND true"), "{text}");
    // The failed creates left nothing behind (the one that fitted was
    // dropped, and removed, at exit).
    assert!(text.contains("LEFT 0") || text.contains("LEFT 1"), "{text}");
}

// ---------------------------------------------------------------------------
// Defects found by the hostile review (issue 12): races between processes
// that open, create, reclaim and remove segments, and a semaphore wakeup
// lost between sleepers.

fn churn_opts() -> Options {
    Options::new().capacity(4096)
}

/// Review 3: the last endpoint to leave unlinked the segment while another
/// process was between `shm_open` and taking its endpoint lock: that
/// process attached to an orphan, and every later opener made a new
/// segment (about 18% of attaches in a 5 s churn). Two processes attach and
/// detach as fast as they can; every attach must land on the linked
/// segment.
#[test]
fn review_03_attach_detach_churn_never_orphans() {
    let name = Name::new("churn");
    let secs = 4;
    let child = spawn_role("churn_consumer", &name, &[("SHMQ_SECS", secs.to_string())]);
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut n, mut orphans, mut errors) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        match spsc::Producer::open_or_create(&name, &churn_opts()) {
            Ok(tx) => {
                n += 1;
                orphans += u64::from(common::orphaned(&name));
                drop(tx);
            }
            Err(e) => {
                eprintln!("churn producer: {e}");
                errors += 1;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("CHURN "))
        .unwrap_or_else(|| panic!("{text}"));
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    println!(
        "producer: {n} attaches, {orphans} orphaned, {errors} errors; consumer: {} attaches, {} orphaned, {} errors",
        v[0], v[1], v[2]
    );
    assert!(n > 100 && v[0] > 100, "too few attaches to mean anything");
    assert_eq!((orphans, errors, v[1], v[2]), (0, 0, 0, 0));
}

/// Review 4: the creator took its init lock only after sizing and mapping
/// the file (and released it before attaching), so `gc` and
/// `open_or_create(reclaim_stale)` saw a segment still being created as
/// stale, removed it and made their own: the creator ended on an orphan.
/// A 512 MiB ring makes the creation slow enough to race every time.
#[test]
fn review_04_reclaim_and_gc_never_remove_a_segment_being_created() {
    for gc in [false, true] {
        let name = Name::new(if gc { "big-gc" } else { "big-reclaim" });
        let mut child = spawn_role("big_producer", &name, &[]);
        let lines = common::line_channel(&mut child);
        // Strike as soon as anything of the segment shows under its name.
        let t0 = Instant::now();
        while !std::path::Path::new(&name.path()).exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never created");
            std::hint::spin_loop();
        }
        let attached = || loop {
            let l = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("child reports");
            if l.starts_with("ATTACHED") {
                return l;
            }
        };
        let rx = if gc {
            // Sweep while the creator works, until it reports.
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            let sweeper = {
                let n = name.0.clone();
                std::thread::spawn(move || {
                    let mut removed = 0;
                    while stopped.try_recv().is_err() {
                        if let shmq::GcOutcome::Removed = shmq::gc_one(&n) {
                            removed += 1;
                        }
                    }
                    removed
                })
            };
            let a = attached();
            stop.send(()).unwrap();
            assert_eq!(
                sweeper.join().unwrap(),
                0,
                "gc removed a segment being created"
            );
            assert_eq!(a, "ATTACHED false", "the creator is on an orphan");
            spsc::Consumer::open(&name, &Options::new()).unwrap()
        } else {
            let o = Options::new().reclaim_stale(true);
            let rx = spsc::Consumer::open_or_create(&name, &o).unwrap();
            assert_eq!(attached(), "ATTACHED false", "the creator is on an orphan");
            rx
        };
        let mut rx = rx;
        assert!(!common::orphaned(&name));
        // Both ends on one segment: the message arrives.
        assert_eq!(&*rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"hello");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Review 5: `open_or_create` from two processes at once: the loser opened
/// the winner's file between its `O_EXCL` create and its `ftruncate` and
/// failed with `NotShmq` ("0 bytes, fewer than a header"), 7 of 4000
/// times. Thousands of fresh names, a producer here and a consumer in a
/// child: every pair must meet, with no error and no orphan.
#[test]
fn review_05_open_or_create_race_across_processes() {
    let count: u64 = 2000;
    let base = Name::new("race");
    let names: Vec<Name> = (0..count)
        .map(|i| Name(format!("{}-{i}", base.0)))
        .collect();
    let child = spawn_role("race_consumer", &base, &[("SHMQ_COUNT", count.to_string())]);
    let (mut errors, mut orphans) = (0u64, 0u64);
    for (i, n) in names.iter().enumerate() {
        match spsc::Producer::open_or_create(n, &Options::new().capacity(4096)) {
            Ok(mut tx) => {
                orphans += u64::from(common::orphaned(n));
                if let Err(e) = tx.send(&(i as u64).to_le_bytes()) {
                    eprintln!("{}: send: {e}", n.0);
                    errors += 1;
                }
                drop(tx);
                // Lockstep: the consumer removes the segment when it leaves;
                // then both race for the next name at once.
                let t0 = Instant::now();
                while std::path::Path::new(&n.path()).exists()
                    && t0.elapsed() < Duration::from_secs(5)
                {
                    std::hint::spin_loop();
                }
            }
            Err(e) => {
                eprintln!("{}: open_or_create: {e}", n.0);
                errors += 1;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RACE "))
        .unwrap_or_else(|| panic!("{text}"));
    println!("producer: {errors} errors, {orphans} orphans; consumer: {line}");
    assert_eq!((errors, orphans), (0, 0));
    assert_eq!(line, "RACE 0 0");
}

fn sem_opts() -> Options {
    Options::new()
        .slots(8)
        .slot_size(32)
        .wait(shmq::WaitStrategy::Semaphore)
        .spin(Duration::ZERO)
        .liveness_interval(Duration::from_secs(30))
}

/// Review 7: with the semaphore backend, a sleeper that registered after a
/// wake could take the token posted for an earlier sleeper, and then
/// unregister itself too: two sleepers, one counted. The next message then
/// waited a whole liveness interval (30 s here) while a consumer slept.
///
/// Scripted with SIGSTOP: A sleeps; A is stopped; a message is sent (its
/// wake takes A's registration and posts one token) and taken by a third,
/// non-sleeping consumer; B registers, finds nothing, and its wait takes
/// A's token; A continues and sleeps again. Two more messages must each
/// reach a sleeping consumer at once.
#[test]
fn review_07_semaphore_token_taken_by_a_later_sleeper_is_not_lost() {
    let name = Name::new("semsteal");
    let mut tx = mpmc::Producer::create(&name, &sem_opts()).unwrap();
    let mut stealer = mpmc::Consumer::open(&name, &sem_opts()).unwrap();
    let env = [("SHMQ_NAME", name.0.clone())];
    let mut a = spawn_child("child_entry", "sem_consumer", &env);
    wait_for_line(&mut a, "READY");
    std::thread::sleep(Duration::from_millis(300)); // A is asleep
    let a_pid = a.id() as libc::pid_t;
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(a_pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    tx.send(b"m1").unwrap();
    assert_eq!(&*stealer.try_recv().unwrap(), b"m1");
    let mut b = spawn_child("child_entry", "sem_consumer", &env);
    wait_for_line(&mut b, "READY");
    std::thread::sleep(Duration::from_millis(300)); // B took the token, sleeps
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(a_pid, libc::SIGCONT) }, 0);
    std::thread::sleep(Duration::from_millis(300)); // A sleeps again
    let (la, lb) = (common::line_channel(&mut a), common::line_channel(&mut b));
    let got = |want: &str| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            for l in [&la, &lb] {
                if let Ok(line) = l.try_recv() {
                    assert_eq!(line, format!("GOT {want}"));
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    };
    tx.send(b"m2").unwrap();
    let m2 = got("m2");
    tx.send(b"m3").unwrap();
    let m3 = got("m3");
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    assert!(
        m2 && m3,
        "a message waited while a consumer slept (m2 {m2}, m3 {m3})"
    );
}

fn churn_mpmc() -> Options {
    Options::new()
        .slots(8)
        .slot_size(64)
        .max_producers(2)
        .max_consumers(2)
        .liveness_interval(Duration::from_millis(10))
}

/// Review 2, R2, with real kills: a producer attaching and detaching in a
/// loop is SIGKILLed at random points (some land between the slot state
/// change and the count update the first fix kept). Every time, the
/// consumer must then see every producer gone.
#[test]
fn review2_r2_producer_killed_while_attaching_or_detaching() {
    let mut rng = Rng(99);
    for it in 0..iters() {
        let name = Name::new("r2kill");
        let mut rx = mpmc::Consumer::create(&name, &churn_mpmc()).unwrap();
        let mut child = spawn_role("producer_churn", &name, &[]);
        wait_for_line(&mut child, "READY");
        std::thread::sleep(Duration::from_micros(200 + rng.below(5000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).map(|g| g.len());
        assert_eq!(r, Err(Error::Disconnected), "iteration {it}");
    }
}

/// Review 2, R6: OFD locks belong to the open file description, which a
/// forked child shares: a consumer that forked a helper and was then killed
/// still looked alive while the helper lived.
#[test]
fn review2_r6_forked_child_does_not_keep_a_dead_parent_alive() {
    let name = Name::new("r6");
    let o = Options::new()
        .capacity(4096)
        .liveness_interval(Duration::from_millis(50));
    let mut tx = spsc::Producer::create(&name, &o).unwrap();
    let mut child = spawn_role("forking_consumer", &name, &[]);
    wait_for_line(&mut child, "READY");
    while tx.try_send(&[0u8; 100]).is_ok() {}
    child.kill().unwrap();
    child.wait().unwrap();
    let r = tx.reserve_timeout(100, Duration::from_secs(3)).map(|_| ());
    assert_eq!(r, Err(Error::PeerDied));
}

/// The parent holds a read grant and then a write grant across a `fork()`;
/// the child releases the one and writes and commits the other. Neither
/// reaches the parent's ring (the child's view of it is private zero pages):
/// the held message's space stays taken and its bytes intact, nothing is
/// published but the parent's own commit. The segment under test is opened
/// after `SHMQ_EXTRA` others, so that the fork handler's registry must have
/// grown to hold it.
fn fork_with_grants_child(name: &str) {
    let extra: Vec<String> = env("SHMQ_EXTRA").split(',').map(str::to_owned).collect();
    let o = Options::new().capacity(4096);
    let others: Vec<_> = extra
        .iter()
        .map(|n| spsc::Producer::create(n, &o).unwrap())
        .collect();
    let mut tx = spsc::Producer::create(name, &o).unwrap();
    let mut rx = spsc::Consumer::open(name, &o).unwrap();
    let fork_and_wait = |child: &mut dyn FnMut()| {
        // SAFETY: this process has one thread; the child runs shmq calls on
        // what it inherited, then exits without unwinding.
        match unsafe { libc::fork() } {
            0 => {
                child();
                // SAFETY: plain exit of the child.
                unsafe { libc::_exit(0) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(status, 0, "child status");
            }
        }
    };

    // A read grant on the first message of a full ring.
    let mut n = 0u8;
    while tx.try_send(&[n; 100]).is_ok() {
        n += 1;
    }
    let held = rx.try_recv().unwrap();
    let mut held = Some(held);
    fork_and_wait(&mut || drop(held.take()));
    let held = held.unwrap();
    assert_eq!(
        tx.try_send(&[0; 100]),
        Err(Error::Full),
        "the child's release of an inherited read grant freed the parent's space"
    );
    assert_eq!(&*held, &[0u8; 100][..]);
    drop(held);
    while rx.try_recv().is_ok() {}

    // A write grant, written by the parent, then by the child, who commits.
    let mut g = tx.try_reserve(6).unwrap();
    g.copy_from_slice(b"parent");
    let mut g = Some(g);
    fork_and_wait(&mut || {
        let mut g = g.take().unwrap();
        g.copy_from_slice(b"child!");
        g.commit(6);
    });
    let g = g.unwrap();
    assert_eq!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(Error::Empty),
        "the child's commit of an inherited write grant published"
    );
    assert_eq!(&*g, b"parent", "the child wrote into the parent's grant");
    g.commit(6);
    assert_eq!(&*rx.try_recv().unwrap(), b"parent");
    drop((tx, rx, others));
    println!("GRANTS OK");
}

#[test]
fn grants_inherited_through_fork_do_not_reach_the_parents_ring() {
    let name = Name::new("forkgrant");
    let extra: Vec<Name> = (0..70).map(|_| Name::new("forkextra")).collect();
    let list = extra
        .iter()
        .map(|n| n.0.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut child = spawn_role("fork_with_grants", &name, &[("SHMQ_EXTRA", list)]);
    let lines = common::line_channel(&mut child);
    let ok = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(30)).ok())
        .any(|l| l == "GRANTS OK");
    let status = child.wait().unwrap();
    assert!(ok && status.success(), "child: {status}");
    for n in extra.iter().chain([&name]) {
        assert!(
            !std::path::Path::new(&n.path()).exists(),
            "{} left behind",
            n.0
        );
    }
}

/// A process with no descriptor to spare forks, and the child drops the
/// consumer it inherited: the fork handler could not open `/dev/null` to
/// point the inherited descriptor at, and the drop unlocked the open file
/// description the parent shares, so the parent's live consumer looked dead
/// to its producer (which could then let a successor attach beside it).
#[test]
fn a_child_forked_at_the_descriptor_limit_leaves_the_parent_alive() {
    let name = Name::new("forkfd");
    let o = Options::new().capacity(4096);
    let tx = spsc::Producer::create(&name, &o).unwrap();
    let mut child = spawn_role("fork_at_fd_limit", &name, &[]);
    wait_for_line(&mut child, "CHILD GONE");
    let alive = tx.peer_alive();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        alive,
        "the parent's consumer looked dead after its child left"
    );
}

/// An endpoint inherited through fork() refuses to work in the child
/// (`Error::Forked`), and the child dropping it leaves the parent's
/// endpoint attached and working.
#[test]
fn forked_child_cannot_use_or_detach_the_parents_endpoint() {
    let name = Name::new("forkuse");
    let o = Options::new().capacity(4096);
    let mut rx = spsc::Consumer::create(&name, &o).unwrap();
    let mut child = spawn_role("fork_uses_endpoint", &name, &[]);
    let lines = common::line_channel(&mut child);
    let status = loop {
        let l = lines.recv_timeout(Duration::from_secs(10)).unwrap();
        if let Some(code) = l.strip_prefix("CHILD ") {
            break code.to_owned();
        }
    };
    assert_eq!(status, "0", "the child's send was not refused with Forked");
    let t = Duration::from_secs(5);
    assert_eq!(&*rx.recv_timeout(t).unwrap(), b"from the parent");
    assert_eq!(&*rx.recv_timeout(t).unwrap(), b"after the child");
    child.kill().unwrap();
    child.wait().unwrap();
}
