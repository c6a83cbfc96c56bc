//! A three-stage pipeline across processes: this process hands out jobs
//! through a typed MPMC ring to several worker processes, which compete for
//! them and send their results through a second MPMC ring (several
//! producers, so MPMC: an SPSC ring allows one producer) to a collector
//! thread back in this process. Prints the throughput and how the jobs were
//! shared, and checks the combined result.
//!
//! ```sh
//! cargo run --release --example pipeline            # 200000 jobs, 3 workers
//! cargo run --release --example pipeline -- 1000000 4
//! ```
//!
//! Workers are this program again (re-executed with an environment
//! variable). Both rings are removed at the end.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use shmq::typed::{Mpmc, Receiver, Sender};
use shmq::{Error, Options};

/// Set in workers: `JOBS_RING,RESULTS_RING`.
const WORKER_ENV: &str = "SHMQ_PIPELINE_WORKER";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One unit of work: hash the numbers `first..first + count`.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Job {
    id: u64,
    first: u64,
    count: u64,
}

/// What a worker made of a job.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Done {
    id: u64,
    value: u64,
    worker_pid: u32,
    _pad: u32,
}

/// `Done::id` of the message a worker sends once it is attached.
const HELLO: u64 = u64::MAX;

/// Numbers each job covers.
const PER_JOB: u64 = 16;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn work(j: &Job) -> u64 {
    (j.first..j.first + j.count).fold(0u64, |h, k| h.wrapping_add(splitmix(k)))
}

struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmq::remove(&self.0);
    }
}

fn check_workers(workers: &mut [Child]) -> Res<()> {
    for w in workers.iter_mut() {
        if let Some(status) = w.try_wait()? {
            return Err(format!("worker {} exited early ({status})", w.id()).into());
        }
    }
    Ok(())
}

fn parent(jobs: u64, n_workers: usize) -> Res<()> {
    let pid = std::process::id();
    let (jobs_ring, results_ring) = (
        format!("pipeline-{pid}-jobs"),
        format!("pipeline-{pid}-results"),
    );
    let _clean = (Cleanup(jobs_ring.clone()), Cleanup(results_ring.clone()));
    let opts = Options::new().slots(1024);
    let mut tx = Sender::<Job, Mpmc>::create(&jobs_ring, &opts)?;
    let mut results = Receiver::<Done, Mpmc>::create(&results_ring, &opts)?;
    let mut workers = (0..n_workers)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .env(WORKER_ENV, format!("{jobs_ring},{results_ring}"))
                .spawn()
        })
        .collect::<Result<Vec<Child>, _>>()?;
    // Wait until every worker is attached to both rings: a worker that came
    // late could find the work done and the rings gone.
    let mut hellos = 0;
    while hellos < n_workers {
        match results.recv_timeout(Duration::from_millis(200)) {
            Ok(d) if d.id == HELLO => hellos += 1,
            Ok(_) => return Err("a result before the start".into()),
            Err(Error::Timeout) => check_workers(&mut workers)?,
            Err(e) => return Err(e.into()),
        }
    }
    let start = Instant::now();

    // The collector: every result, until every worker has left.
    let collector = std::thread::spawn(move || -> Result<_, Error> {
        let (mut n, mut sum) = (0u64, 0u64);
        let mut per_worker = BTreeMap::new();
        loop {
            match results.recv() {
                Ok(d) => {
                    n += 1;
                    sum = sum.wrapping_add(d.value);
                    *per_worker.entry(d.worker_pid).or_insert(0u64) += 1;
                }
                Err(Error::Disconnected) => return Ok((n, sum, per_worker)),
                Err(e) => return Err(e),
            }
        }
    });

    // The producer: fill each job in place in the ring.
    for id in 0..jobs {
        let mut job = loop {
            match tx.loan_timeout(Duration::from_millis(200)) {
                Ok(l) => break l,
                Err(Error::Timeout) => check_workers(&mut workers)?,
                Err(e) => return Err(e.into()),
            }
        };
        job.id = id;
        job.first = id * PER_JOB;
        job.count = PER_JOB;
        job.send();
    }
    drop(tx); // Workers drain the ring, then see Disconnected.
    let sent = start.elapsed();

    for w in &mut workers {
        let status = w.wait()?;
        if !status.success() {
            return Err(format!("worker {} failed ({status})", w.id()).into());
        }
    }
    let (n, sum, per_worker) = collector.join().map_err(|_| "collector panicked")??;
    let elapsed = start.elapsed();

    let want = (0..jobs * PER_JOB).fold(0u64, |h, k| h.wrapping_add(splitmix(k)));
    println!(
        "{jobs} jobs through {n_workers} worker processes: sent in {sent:.2?}, all results in \
         {elapsed:.2?} ({:.0} jobs/s, {:.0} messages/s over both rings)",
        jobs as f64 / elapsed.as_secs_f64(),
        2.0 * jobs as f64 / elapsed.as_secs_f64()
    );
    for (pid, count) in &per_worker {
        println!("  worker pid {pid}: {count} jobs");
    }
    if n != jobs || sum != want {
        return Err(format!(
            "wrong result: {n} results (want {jobs}), checksum {sum:#x} (want {want:#x})"
        )
        .into());
    }
    println!("checksum {sum:#018x} correct");
    Ok(())
}

fn worker(spec: &str) -> Res<()> {
    let (jobs_ring, results_ring) = spec.split_once(',').ok_or("bad worker spec")?;
    let opts = Options::new();
    let mut rx = Receiver::<Job, Mpmc>::open(jobs_ring, &opts)?;
    let mut tx = Sender::<Done, Mpmc>::open(results_ring, &opts)?;
    let pid = std::process::id();
    tx.send(Done {
        id: HELLO,
        value: 0,
        worker_pid: pid,
        _pad: 0,
    })?;
    loop {
        let job = match rx.recv() {
            Ok(j) => j,
            Err(Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        tx.send(Done {
            id: job.id,
            value: work(&job),
            worker_pid: pid,
            _pad: 0,
        })?;
    }
}

fn main() -> ExitCode {
    let r = match std::env::var(WORKER_ENV) {
        Ok(spec) => worker(&spec),
        Err(_) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let jobs = args.first().map_or(Ok(200_000), |a| a.parse::<u64>());
            let workers = args.get(1).map_or(Ok(3), |a| a.parse::<usize>());
            match (jobs, workers) {
                (Ok(j), Ok(w)) if (1..=64).contains(&w) => parent(j, w),
                _ => Err("usage: pipeline [JOBS] [WORKERS 1..=64]".into()),
            }
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}
