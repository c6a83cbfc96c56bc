//! Instruction counts of the hot paths, for `valgrind --tool=callgrind`.
//!
//! One thread, a named segment, the `Spin` strategy, N messages of 64 bytes
//! sent and received alternately (the ring never fills, never runs dry
//! except between a receive and the next send):
//!
//! ```text
//! cargo build --release --example callgrind_hot
//! for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$n \
//!     target/release/examples/callgrind_hot send_recv_into $n
//! done
//! # (total(100000) - total(0)) / 100000 = instructions per message
//! ```
//!
//! Modes: `send_recv_into` (send + recv_into), `grant` (reserve/commit +
//! recv/drop), `mpmc` (MPMC send + recv_into), `typed` (typed SPSC
//! send + recv of `[u8; 64]`), `typed_mpmc`. A third argument sets the
//! message size of the byte modes (default 64).

use shmq::{Options, WaitStrategy, mpmc, spsc, typed};

fn name(mode: &str) -> String {
    format!("cg-{mode}-{}", std::process::id())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "send_recv_into".into());
    let n: u64 = args.next().map_or(100_000, |s| s.parse().unwrap());
    // Message size for the byte modes (default 64).
    let size: usize = args.next().map_or(64, |s| s.parse().unwrap());
    let opts = Options::new().wait(WaitStrategy::Spin).capacity(1 << 16);
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    let mut sum = 0u64;
    let name = name(&mode);
    match mode.as_str() {
        "send_recv_into" => {
            let mut tx = spsc::Producer::create(&name, &opts).unwrap();
            let mut rx = spsc::Consumer::open(&name, &opts).unwrap();
            for _ in 0..n {
                tx.send(&msg).unwrap();
                sum += rx.recv_into(&mut buf).unwrap() as u64;
            }
        }
        "grant" => {
            let mut tx = spsc::Producer::create(&name, &opts).unwrap();
            let mut rx = spsc::Consumer::open(&name, &opts).unwrap();
            for _ in 0..n {
                let mut g = tx.reserve(size).unwrap();
                g[0] = 1;
                g.commit(size);
                let g = rx.recv().unwrap();
                sum += u64::from(g[0]);
            }
        }
        "mpmc" => {
            let opts = opts.slots(1024).slot_size(size + 16);
            let mut tx = mpmc::Producer::create(&name, &opts).unwrap();
            let mut rx = mpmc::Consumer::open(&name, &opts).unwrap();
            for _ in 0..n {
                tx.send(&msg).unwrap();
                sum += rx.recv_into(&mut buf).unwrap() as u64;
            }
        }
        "typed" => {
            let mut tx = typed::Sender::<[u8; 64], typed::Spsc>::create(&name, &opts).unwrap();
            let mut rx = typed::Receiver::<[u8; 64], typed::Spsc>::open(&name, &opts).unwrap();
            for _ in 0..n {
                tx.send([7; 64]).unwrap();
                sum += u64::from(rx.recv().unwrap()[0]);
            }
        }
        "typed_mpmc" => {
            let opts = opts.slots(1024);
            let mut tx = typed::Sender::<[u8; 64], typed::Mpmc>::create(&name, &opts).unwrap();
            let mut rx = typed::Receiver::<[u8; 64], typed::Mpmc>::open(&name, &opts).unwrap();
            for _ in 0..n {
                tx.send([7; 64]).unwrap();
                sum += u64::from(rx.recv().unwrap()[0]);
            }
        }
        m => panic!("unknown mode {m}"),
    }
    std::hint::black_box(sum);
}
