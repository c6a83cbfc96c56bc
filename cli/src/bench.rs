//! `shmq bench`: shmq rings against the floors (ping-pong) and the limit
//! (one-way stream) of bare shared memory, pipes, POSIX message queues
//! and Unix sockets, every one cross-process and through the one harness
//! (the `shmq-bench` crate: its `Transport` trait, endpoint factory, peer
//! runner and measurement loops).
//!
//! Method: the peer is a child `shmq bench-peer` process pinned to another
//! CPU; every case runs once per round, cases alternate within a round so
//! that machine drift hits all alike, and the table reports medians across
//! rounds. Each run warms up before it measures. Around each measurement
//! a line round trip between the two CPUs ([`shmq_bench::line_rtt`]) says
//! which placement of a VM's CPUs it ran on; ratios are also given from
//! the rounds where both sides ran on the same one.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use shmq_bench::{Case, Host, Pattern, line_rtt, measure};

// The signal handling of `send`/`recv`, reused as it is.
use crate::tools::signals;

mod args;
mod cases;
mod mq_limits;
mod report;
mod summary;

pub use args::{BenchArgs, PeerArgs};
use summary::{Round, Summary, summarize};

/// How long each placement probe bounces its line.
const PROBE: Duration = Duration::from_millis(2);

/// Measures every case once per round, with a placement probe just before
/// and just after each; stops early (with an error) on a caught signal,
/// after cleaning up the current measurement.
fn run_rounds(cases: &[Case], host: &Host, plan: &args::Plan) -> Result<Vec<Vec<Round>>, String> {
    let started = Instant::now();
    let rounds = plan.rounds;
    let mut samples: Vec<Vec<Round>> = cases.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            let interrupted = || signals::caught().is_some();
            if interrupted() {
                return Err("interrupted".into());
            }
            let before = line_rtt(host, PROBE);
            let s = measure(c, host, plan.until()).map_err(|e| {
                if interrupted() {
                    "interrupted".to_owned()
                } else {
                    format!("{} {} B: {e}", c.label(), c.params.size)
                }
            })?;
            let what = match (&s.hist, c.pattern) {
                (Some(h), _) => format!("p50 {}", report::ns(h.value_at_quantile(0.5) as f64)),
                (None, Pattern::Throughput) => format!("{} msgs/s", report::si(s.rate())),
                _ => String::new(),
            };
            let c2c = before.zip(line_rtt(host, PROBE)).map(|(a, b)| [a, b]);
            let line = c2c.map_or_else(String::new, |[a, b]| {
                format!("  (line rtt {} / {})", report::ns(a), report::ns(b))
            });
            eprintln!(
                "[{:>4.0}s] round {}/{rounds} {:<22} {:<10} {:>6} B  {what}{line}",
                started.elapsed().as_secs_f64(),
                r + 1,
                c.label(),
                c.pattern.as_str(),
                c.params.size,
            );
            samples[i].push(Round { sample: s, c2c });
        }
    }
    Ok(samples)
}

fn run_inner(a: BenchArgs) -> Result<(), String> {
    signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let machine = machine_label();
    let plan = args::Plan::new(&a)?;
    let host = Host::new(&["bench-peer"], !a.no_pin);
    let mut cases = if a.spin_sweep {
        cases::sweep(&a)
    } else {
        cases::comparison(&a, &plan.sizes)
    };
    // Held for the run: restores the mq sysctl when dropped.
    let mq = mq_limits::prepare(&mut cases);
    if cases.is_empty() {
        return Err(
            "nothing to measure: no case matches --transports / --patterns / --sizes \
             (the floors have no throughput pattern, the limit no latency pattern)"
                .into(),
        );
    }
    let cpu = |c: Option<usize>| c.map_or("any".into(), |c| c.to_string());
    eprintln!(
        "shmq bench: {} cases x {} rounds, {} ms each (+{} ms warm-up); parent on CPU {}, peers on CPU {}",
        cases.len(),
        plan.rounds,
        plan.measure.as_millis(),
        plan.warmup.as_millis(),
        cpu(host.parent_cpu),
        cpu(host.child_cpu),
    );
    let started = Instant::now();
    let samples = run_rounds(&cases, &host, &plan)?;
    let mut sums: Vec<Summary> = cases
        .into_iter()
        .zip(samples)
        .map(|(c, s)| summarize(c, &s))
        .collect();
    let mut out = io::stdout().lock();
    let w = |e: io::Error| format!("writing output: {e}");
    if a.spin_sweep {
        report::sweep(&mut out, &sums, a.json).map_err(w)?;
    } else {
        for (case, why) in mq.skipped() {
            sums.push(summary::not_measured(case, why));
        }
        if a.json {
            report::json(&mut out, &sums).map_err(w)?;
        } else {
            report::table(&mut out, &sums).map_err(w)?;
        }
    }
    out.flush().map_err(w)?;
    if let Some(p) = &a.plot {
        report::plot(p, &sums, &machine).map_err(|e| format!("plot {}: {e}", p.display()))?;
        eprintln!("plot written to {}", p.display());
    }
    eprintln!(
        "done in {:.0} s; {machine}",
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// `nproc`, CPU model and date, for labelling results.
pub(crate) fn machine_label() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    // The `hypervisor` CPU flag: running under virtualisation.
    let vm = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    // Not available_parallelism: this process may be pinned to one CPU.
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kind = if vm { "VM" } else { "machine" };
    format!("{n}-core {kind} (nproc {n}), {model}, {date}")
}

fn guarded<F: FnOnce() -> Result<(), String> + std::panic::UnwindSafe>(what: &str, f: F) -> u8 {
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(f) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("shmq {what}: error: {e}");
            1
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown".into());
            eprintln!("shmq {what}: internal error: {msg}");
            1
        }
    }
}

/// `shmq bench`: returns the exit code.
pub fn run(a: BenchArgs) -> u8 {
    guarded("bench", move || run_inner(a))
}

/// The hidden `shmq bench-peer` process.
pub fn peer(_a: PeerArgs) -> u8 {
    guarded("bench-peer", shmq_bench::peer::serve)
}
