//! The placement probe: how far apart the two CPUs of a run are, now.
//!
//! On a VM the hypervisor may move the virtual CPUs between physical cores
//! while a benchmark runs. On the 2-core VM shmq is developed on, one cache
//! line bounced between the two pinned CPUs took about 50 ns a round trip
//! (the two on one physical core), about 125 ns (two cores that share a
//! cache) or 500-1200 ns (farther apart), changing every few seconds; a
//! cross-process stream's rate follows it (64 B, same binary: 20-26 M
//! msgs/s at 125 ns, 4-7 M at 550-650 ns). [`line_rtt`], taken around
//! every measurement, says which of these a sample ran in, so that two
//! samples are compared only when they saw the same machine.

// The probe is a reference point outside the library, as the floor is: it
// uses std atomics, not the library's loom shim.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Host;
use crate::sys::pin_to;

/// One word alone on its cache lines (128 bytes: the adjacent-line
/// prefetcher pairs lines).
#[repr(align(128))]
struct Line(AtomicU64);

/// Round trips per timed batch: enough to make the clock's cost small.
const BATCH: u32 = 64;

/// Gives up on a round trip after this long (the other CPU is taken).
const PATIENCE: Duration = Duration::from_millis(200);

/// The median round trip (ns) of one cache line bounced between the
/// caller's CPU and `host.child_cpu`, over about `window`: a thread pinned
/// to the child CPU echoes a counter the caller stores. `None` when the
/// host does not pin (no second CPU, or `--no-pin`), the thread cannot be
/// pinned, or a round trip takes longer than 200 ms.
///
/// Call it with the caller on `host.parent_cpu` (where [`Host::new`] pins
/// it) and nothing else running on the child CPU.
///
/// ```
/// use shmq_bench::{Host, line_rtt};
/// use std::time::Duration;
///
/// let host = Host::new(&[], true);
/// if let Some(ns) = line_rtt(&host, Duration::from_millis(2)) {
///     assert!(ns > 0.0);
/// }
/// ```
pub fn line_rtt(host: &Host, window: Duration) -> Option<f64> {
    let (Some(_), Some(child)) = (host.parent_cpu, host.child_cpu) else {
        return None;
    };
    let ping = Line(AtomicU64::new(0));
    let pong = Line(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            if !pin_to(child) {
                return;
            }
            let mut seen = 0;
            // Relaxed: the flag only ends the loop; nothing is read after it.
            while !stop.load(Ordering::Relaxed) {
                // Acquire/Release: the counter carries no data; the orders
                // only keep the two stores of a round trip apart, as a
                // ring's publish and release are.
                let v = ping.0.load(Ordering::Acquire);
                if v != seen {
                    seen = v;
                    pong.0.store(v, Ordering::Release);
                }
            }
        });
        let rtt = bounce(&ping, &pong, window);
        // Relaxed: only ends the echo loop; nothing is published with it.
        stop.store(true, Ordering::Relaxed);
        rtt
    })
}

/// The caller's side of [`line_rtt`]: timed batches of round trips until
/// `window` has passed; the median batch's mean.
fn bounce(ping: &Line, pong: &Line, window: Duration) -> Option<f64> {
    let mut n = 0u64;
    let mut round_trip = || {
        n += 1;
        // Release: pairs with the echo's Acquire load of `ping` (the counter
        // carries no data; see the echo loop).
        ping.0.store(n, Ordering::Release);
        let since = Instant::now();
        let mut k = 0u32;
        // Acquire: pairs with the echo's Release store (see above).
        while pong.0.load(Ordering::Acquire) != n {
            k = k.wrapping_add(1);
            if k % 4096 == 0 && since.elapsed() > PATIENCE {
                return false;
            }
        }
        true
    };
    // Not timed: waits for the echo thread to be pinned and running.
    if !round_trip() {
        return None;
    }
    let start = Instant::now();
    let mut means = Vec::new();
    while means.is_empty() || start.elapsed() < window {
        let t = Instant::now();
        for _ in 0..BATCH {
            if !round_trip() {
                return None;
            }
        }
        means.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    means.sort_by(f64::total_cmp);
    Some(means[means.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpinned_host_has_no_probe() {
        let host = Host {
            peer_args: Vec::new(),
            parent_cpu: None,
            child_cpu: None,
        };
        assert_eq!(line_rtt(&host, Duration::from_millis(1)), None);
    }

    #[test]
    fn the_probe_measures_a_round_trip() {
        let cpus = crate::allowed_cpus();
        if cpus.len() < 2 {
            return;
        }
        // Pinned in a thread of its own: the test runner's other threads
        // keep their CPUs.
        std::thread::spawn(move || {
            assert!(pin_to(cpus[0]));
            let host = Host {
                peer_args: Vec::new(),
                parent_cpu: Some(cpus[0]),
                child_cpu: Some(cpus[1]),
            };
            // Another test may hold the child CPU for a while: then there
            // is no figure, which is allowed; a figure must be a time.
            if let Some(ns) = line_rtt(&host, Duration::from_millis(2)) {
                assert!(ns.is_finite() && ns > 0.0, "{ns}");
            }
        })
        .join()
        .unwrap();
    }
}
