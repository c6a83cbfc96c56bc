//! One-way SPSC stream, producer and consumer on two threads (pinned to
//! CPUs 1 and 0), through a named segment: the consumer either polls
//! `try_recv_into` in a loop or blocks in `recv_into`. Prints msgs/s for
//! each, alternating, and the medians.
//!
//! ```text
//! cargo run --release --example poll_vs_block [rounds] [msgs] [size] [spin|futex]
//! ```

use std::time::Instant;

use shmq::{Error, Options, WaitStrategy, spsc};

fn pin(cpu: usize) {
    // SAFETY: plain libc calls on a zeroed, local cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn run(poll: bool, msgs: u64, size: usize, wait: WaitStrategy) -> f64 {
    let name = format!("pvb-{}-{}", std::process::id(), poll);
    let opts = Options::new().wait(wait).capacity(1 << 20);
    let mut rx = spsc::Consumer::create(&name, &opts).unwrap();
    let mut tx = spsc::Producer::open(&name, &opts).unwrap();
    let p = std::thread::spawn(move || {
        pin(1);
        let msg = vec![7u8; size];
        for _ in 0..msgs {
            tx.send(&msg).unwrap();
        }
    });
    pin(0);
    let mut buf = vec![0u8; size];
    let mut got = 0;
    let mut t0 = None;
    while got < msgs {
        let r = if poll {
            rx.try_recv_into(&mut buf)
        } else {
            rx.recv_into(&mut buf)
        };
        match r {
            Ok(_) => {
                got += 1;
                if got == 1 {
                    t0 = Some(Instant::now());
                }
            }
            Err(Error::Empty) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let dt = t0.unwrap().elapsed().as_secs_f64();
    p.join().unwrap();
    (msgs - 1) as f64 / dt
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(5, |s| s.parse().unwrap());
    let msgs: u64 = args.next().map_or(2_000_000, |s| s.parse().unwrap());
    let size: usize = args.next().map_or(64, |s| s.parse().unwrap());
    let wait = match args.next().as_deref() {
        Some("futex") => WaitStrategy::Futex,
        _ => WaitStrategy::Spin,
    };
    let (mut polled, mut blocked) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let b = run(false, msgs, size, wait);
        let p = run(true, msgs, size, wait);
        println!(
            "round {r}: recv_into {:.2} M msgs/s, try_recv_into {:.2} M msgs/s",
            b / 1e6,
            p / 1e6
        );
        blocked.push(b);
        polled.push(p);
    }
    let (b, p) = (median(&mut blocked), median(&mut polled));
    println!(
        "median: recv_into {:.2} M msgs/s, try_recv_into {:.2} M msgs/s, ratio {:.2}",
        b / 1e6,
        p / 1e6,
        p / b
    );
}
