//! The arguments of `shmq bench`, and the run-wide settings they resolve
//! to.

use std::time::Duration;

use shmq_bench::{KERNEL_BUFFER, Pattern, TransportName, Until};

/// Arguments of `shmq bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short run: sizes 64 and 4096, 3 short rounds (well under a minute).
    #[arg(long)]
    pub quick: bool,
    /// One JSON object per measurement on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw latency distributions and throughput bars into this SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Instead of the comparison: sweep the futex and semaphore spin window
    /// (0, 1, 10, 50 µs) and report round trip and CPU time per round trip.
    #[arg(long)]
    pub spin_sweep: bool,
    /// Message sizes in bytes (default 8,64,1024,65536; --quick: 64,4096).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Rounds (default 5; --quick: 3).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Measured time per case and round, in ms (default 300; --quick: 100).
    #[arg(long)]
    pub measure_ms: Option<u64>,
    /// Only these transports (floor, floor-ring, limit, limit-32, shmq-spsc, shmq-mpmc,
    /// pipe, mq, uds).
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<TransportName>())]
    pub transports: Vec<TransportName>,
    /// Only these patterns (latency, throughput).
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<Pattern>())]
    pub patterns: Vec<Pattern>,
    /// Kernel buffer for pipes (F_SETPIPE_SZ) and sockets (SO_SNDBUF), in
    /// bytes; 0 keeps the kernel defaults (64 KiB pipes).
    #[arg(long, default_value_t = KERNEL_BUFFER)]
    pub kernel_buffer: usize,
    /// Do not pin the processes to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Streams send and receive in batches of up to this many (1 to
    /// 4096): shmq SPSC under one `batch()` on each side (one publish, one
    /// release), `limit` with one cursor store per batch on each side, the
    /// others (and polling consumers) one message at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub batch: u16,
}

/// Arguments of the hidden peer process: none, it reads its spec from the
/// environment (`shmq_bench::peer::PEER_ENV`).
#[derive(clap::Args, Debug)]
pub struct PeerArgs {}

/// What the arguments resolve to.
pub struct Plan {
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Rounds.
    pub rounds: usize,
    /// Each run's warm-up.
    pub warmup: Duration,
    /// Each run's measured window.
    pub measure: Duration,
}

impl Plan {
    /// Applies the defaults (`--quick` or not) and checks the ranges.
    ///
    /// # Errors
    /// A message size outside 8 B to 1 MiB.
    pub fn new(a: &BenchArgs) -> Result<Plan, String> {
        let sizes: Vec<usize> = if !a.sizes.is_empty() {
            a.sizes.clone()
        } else if a.quick {
            vec![64, 4096]
        } else {
            vec![8, 64, 1024, 65536]
        };
        if let Some(&s) = sizes.iter().find(|&&s| !(8..=1 << 20).contains(&s)) {
            return Err(format!(
                "message size {s} is out of range (8 to 1048576 bytes)"
            ));
        }
        let rounds = a.rounds.unwrap_or(if a.quick { 3 } else { 5 }).max(1);
        let measure_ms = a.measure_ms.unwrap_or(if a.quick { 100 } else { 300 });
        Ok(Plan {
            sizes,
            rounds,
            warmup: Duration::from_millis((measure_ms / 5).max(20)),
            measure: Duration::from_millis(measure_ms),
        })
    }

    /// Each run: warm up, then measure.
    pub fn until(&self) -> Until {
        Until::Window {
            warmup: self.warmup,
            measure: self.measure,
        }
    }
}
