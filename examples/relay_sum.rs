//! Two processes take turns summing 1..=N, one block at a time: process A
//! adds 1..=1000 and passes the running total and the next block start to
//! process B through one SPSC ring; B adds 1001..=2000 and passes them back
//! through another; and so on up to N. A checks the total against
//! N(N+1)/2 and exits non-zero if it is wrong.
//!
//! ```sh
//! cargo run --example relay_sum              # N = 100000, blocks of 1000
//! cargo run --example relay_sum -- 1000000 25000
//! ```
//!
//! The second process is this program again (re-executed with an
//! environment variable). Messages are 16 bytes (total, next start) written
//! in place through write grants. Both rings are removed at the end.

use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use shmq::spsc::{Consumer, Producer};
use shmq::{Error, Options};

/// Set in the child: `A_TO_B,B_TO_A,N,BLOCK`.
const CHILD_ENV: &str = "SHMQ_RELAY_SUM_CHILD";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The running total and where the next block starts.
#[derive(Clone, Copy, Debug)]
struct Turn {
    total: u64,
    next: u64,
}

fn send(tx: &mut Producer, t: Turn) -> Result<(), Error> {
    // Zero-copy: write the 16 bytes straight into the ring.
    let mut g = tx.reserve(16)?;
    g[..8].copy_from_slice(&t.total.to_le_bytes());
    g[8..].copy_from_slice(&t.next.to_le_bytes());
    g.commit(16);
    Ok(())
}

fn decode(m: &[u8]) -> Res<Turn> {
    if m.len() != 16 {
        return Err(format!("unexpected message of {} bytes", m.len()).into());
    }
    let word = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().expect("8 bytes"));
    Ok(Turn {
        total: word(0),
        next: word(8),
    })
}

/// Adds the block starting at `t.next` and returns the new turn.
fn play(who: &str, t: Turn, n: u64, block: u64) -> Res<Turn> {
    let end = t.next.saturating_add(block - 1).min(n);
    let sum = (t.next..=end).try_fold(0u64, |s, k| s.checked_add(k));
    let total = sum
        .and_then(|s| t.total.checked_add(s))
        .ok_or("the total overflows u64; pick a smaller N")?;
    println!(
        "{who} (pid {}) added {}..={end}: total {total}",
        std::process::id(),
        t.next
    );
    Ok(Turn {
        total,
        next: end + 1,
    })
}

/// Receives one turn; `check` runs while waiting (the parent uses it to
/// notice a child that never started).
fn recv(rx: &mut Consumer, mut check: impl FnMut() -> Res<()>) -> Res<Option<Turn>> {
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => return decode(&m).map(Some),
            Err(Error::Timeout) => check()?,
            Err(Error::Disconnected) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes a segment name when dropped (normally the last endpoint has
/// removed it already).
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmq::remove(&self.0);
    }
}

fn parent(n: u64, block: u64) -> Res<()> {
    let pid = std::process::id();
    let (ab, ba) = (format!("relay-sum-{pid}-ab"), format!("relay-sum-{pid}-ba"));
    let _clean = (Cleanup(ab.clone()), Cleanup(ba.clone()));
    let opts = Options::new().capacity(4096);
    let mut tx = Producer::create(&ab, &opts)?;
    let mut rx = Consumer::create(&ba, &opts)?;
    let mut child: Child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, format!("{ab},{ba},{n},{block}"))
        .spawn()?;
    let start = Instant::now();
    let mut turn = Turn { total: 0, next: 1 };
    let total = loop {
        if turn.next > n {
            break turn.total;
        }
        turn = play("A", turn, n, block)?;
        send(&mut tx, turn)?;
        let got = recv(&mut rx, || match child.try_wait()? {
            Some(status) => Err(format!("process B exited early ({status})").into()),
            None => Ok(()),
        })?;
        turn = got.ok_or("process B left before the end")?;
    };
    let elapsed = start.elapsed();
    drop(tx); // B sees Disconnected and exits.
    drop(rx);
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("process B failed ({status})").into());
    }
    let want = u128::from(n) * (u128::from(n) + 1) / 2;
    println!(
        "total of 1..={n}: {total}; n(n+1)/2 = {want}; {} turns in {elapsed:.2?}",
        n.div_ceil(block)
    );
    if u128::from(total) != want {
        return Err(format!("wrong total: {total} != {want}").into());
    }
    println!("correct");
    Ok(())
}

fn child(spec: &str) -> Res<()> {
    let parts: Vec<&str> = spec.split(',').collect();
    let [ab, ba, n, block] = parts[..] else {
        return Err(format!("bad {CHILD_ENV}={spec:?}").into());
    };
    let (n, block): (u64, u64) = (n.parse()?, block.parse()?);
    let opts = Options::new();
    let mut rx = Consumer::open(ab, &opts)?;
    let mut tx = Producer::open(ba, &opts)?;
    while let Some(turn) = recv(&mut rx, || Ok(()))? {
        // Past the end: hand the final total back to A and wait for it to
        // disconnect.
        let next = if turn.next > n {
            turn
        } else {
            play("B", turn, n, block)?
        };
        send(&mut tx, next)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let r = match std::env::var(CHILD_ENV) {
        Ok(spec) => child(&spec),
        Err(_) => {
            let mut args = std::env::args().skip(1);
            let mut num = |default: u64| -> Res<u64> {
                args.next().map_or(Ok(default), |a| Ok(a.parse::<u64>()?))
            };
            match (num(100_000), num(1000)) {
                (Ok(n), Ok(block)) if n >= 1 && block >= 1 => parent(n, block),
                _ => Err("usage: relay_sum [N >= 1] [BLOCK >= 1]".into()),
            }
        }
    };
    r.map_or_else(
        |e| {
            eprintln!("relay_sum: {e}");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    )
}
