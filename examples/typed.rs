//! The typed API: plain-old-data values through named rings.
//!
//! ```sh
//! cargo run --example typed
//! ```
//!
//! 1. An SPSC ring of `Quote`s: the sender fills each quote in place (a
//!    zero-copy loan), the receiver reads them in place.
//! 2. The element type is recorded in the segment: opening it as another
//!    type fails with `OpenError::TypeMismatch`.
//! 3. An MPMC ring of `u64` shared by two sender and two receiver threads.
//!
//! The peers are threads here to keep the demo short; with named segments
//! they can as well be processes (see `relay_sum` and `pipeline`).

use std::time::Instant;

use shmq::typed::{Mpmc, Receiver, Sender};
use shmq::{Error, OpenError, Options};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A market quote: `#[repr(C)]`, no padding, no pointers.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Quote {
    seq: u64,
    bid: f64,
    ask: f64,
    bid_size: u32,
    ask_size: u32,
}

fn quotes(name: &str) -> Res<()> {
    const N: u64 = 100_000;
    let opts = Options::new().capacity(1 << 16);
    let mut tx = Sender::<Quote>::create(name, &opts)?;
    let mut rx = Receiver::<Quote>::open(name, &opts)?;

    // 2. Another type on the same segment is refused.
    match Receiver::<[u64; 4]>::open(name, &opts) {
        Err(e @ OpenError::TypeMismatch { .. }) => println!("as expected: {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("a receiver of another type was let in".into()),
    }

    let start = Instant::now();
    let consumer = std::thread::spawn(move || -> Result<(u64, f64), Error> {
        let (mut n, mut spread) = (0u64, 0.0);
        loop {
            match rx.recv() {
                // Read in place: `q` points into the ring.
                Ok(q) => {
                    assert_eq!(q.seq, n, "quotes arrive in order");
                    spread += q.ask - q.bid;
                    n += 1;
                }
                Err(Error::Disconnected) => return Ok((n, spread)),
                Err(e) => return Err(e),
            }
        }
    });
    for seq in 0..N {
        // Written in place: no Quote is built on our stack.
        let mut q = tx.loan()?;
        q.seq = seq;
        q.bid = 100.0 + (seq % 7) as f64;
        q.ask = q.bid + 0.25;
        q.bid_size = 10;
        q.ask_size = 12;
        q.send();
    }
    drop(tx);
    let (n, spread) = consumer.join().map_err(|_| "consumer panicked")??;
    println!(
        "{n} quotes ({} bytes each) in {:.2?}; mean spread {:.2}",
        size_of::<Quote>(),
        start.elapsed(),
        spread / n as f64
    );
    Ok(())
}

fn work_queue(name: &str) -> Res<()> {
    let opts = Options::new().slots(256);
    let tx = Sender::<u64, Mpmc>::create(name, &opts)?;
    let rx = Receiver::<u64, Mpmc>::open(name, &opts)?;
    let mut senders = Vec::new();
    for (k, mut tx) in [tx.try_clone()?, tx].into_iter().enumerate() {
        senders.push(std::thread::spawn(move || -> Result<(), Error> {
            for i in 0..50_000u64 {
                tx.send(2 * i + k as u64)?;
            }
            Ok(())
        }));
    }
    let mut receivers = Vec::new();
    for mut rx in [rx.try_clone()?, rx] {
        receivers.push(std::thread::spawn(move || -> Result<(u64, u64), Error> {
            let (mut n, mut sum) = (0, 0);
            loop {
                match rx.recv() {
                    Ok(v) => (n, sum) = (n + 1, sum + *v),
                    Err(Error::Disconnected) => return Ok((n, sum)),
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    for s in senders {
        s.join().map_err(|_| "sender panicked")??;
    }
    let (mut n, mut sum) = (0, 0);
    for (i, r) in receivers.into_iter().enumerate() {
        let (k, s) = r.join().map_err(|_| "receiver panicked")??;
        println!("receiver {i} took {k} values");
        (n, sum) = (n + k, sum + s);
    }
    let want: u64 = (0..100_000u64).sum();
    println!("{n} values, sum {sum} (want {want})");
    if n != 100_000 || sum != want {
        return Err("values were lost or duplicated".into());
    }
    Ok(())
}

/// Removes a segment name when dropped (normally the last endpoint has
/// removed it already).
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmq::remove(&self.0);
    }
}

fn main() -> Res<()> {
    let pid = std::process::id();
    let (a, b) = (format!("typed-demo-{pid}-a"), format!("typed-demo-{pid}-b"));
    let _clean = (Cleanup(a.clone()), Cleanup(b.clone()));
    quotes(&a)?;
    work_queue(&b)?;
    Ok(())
}
