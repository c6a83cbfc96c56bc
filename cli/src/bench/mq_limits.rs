//! POSIX message-queue limits: raising `/proc/sys/fs/mqueue/msgsize_max`
//! for the run (as root; restored afterwards), choosing each size's queue
//! depth within `RLIMIT_MSGQUEUE`, and marking the sizes mq cannot do.

use std::collections::HashMap;

use shmq_bench::{Case, MessageQueue, Params, TransportName, WaitName, mq_msgsize_max};

const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";

/// Restores `/proc/sys/fs/mqueue/msgsize_max` when dropped.
pub struct MsgsizeGuard(usize);

impl Drop for MsgsizeGuard {
    fn drop(&mut self) {
        if std::fs::write(MSGSIZE_MAX, self.0.to_string()).is_err() {
            eprintln!(
                "warning: could not restore {MSGSIZE_MAX} to {}; do it by hand",
                self.0
            );
        }
    }
}

/// Raises the mq message size limit to `need` if it is lower and we may
/// (root); returns the guard that restores it. Otherwise larger mq sizes are
/// reported n/a.
fn raise_msgsize(need: usize) -> Option<MsgsizeGuard> {
    let old = mq_msgsize_max()?;
    if need <= old {
        return None;
    }
    match std::fs::write(MSGSIZE_MAX, need.to_string()) {
        Ok(()) => {
            eprintln!(
                "note: raised {MSGSIZE_MAX} from {old} to {need} for this run (restored at exit)"
            );
            Some(MsgsizeGuard(old))
        }
        Err(e) => {
            eprintln!("note: cannot raise {MSGSIZE_MAX} ({e}): mq is n/a above {old} bytes");
            None
        }
    }
}

/// The deepest queue (up to 64 messages) of which two fit the user's
/// `RLIMIT_MSGQUEUE`, or why there is none for this size.
fn depth(size: usize) -> Result<usize, String> {
    // SAFETY: rlimit is plain old data; all-zero is valid.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut rl) };
    let budget = (rl.rlim_cur as usize / 2).max(1);
    let want = (budget / (size + 128)).clamp(1, 64);
    let name = format!("/shmq-bench-{}-probe", std::process::id());
    let mut last = String::new();
    for depth in [want, want.min(10)] {
        match MessageQueue::create(&name, depth, size) {
            Ok(q) => {
                drop(q);
                return Ok(depth);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// What [`prepare`] settled: the sysctl guard (keep it for the run) and the
/// sizes mq cannot do, with the reason.
pub struct MqLimits {
    /// Restores the sysctl when dropped.
    _guard: Option<MsgsizeGuard>,
    /// (size, why) for each size mq is n/a at.
    na: Vec<(usize, String)>,
}

impl MqLimits {
    /// The mq cases not measured, with why: at each n/a size, the latency
    /// row and the 1x1 and 2x2 streams.
    pub fn skipped(&self) -> impl Iterator<Item = (Case, &str)> + '_ {
        self.na.iter().flat_map(|(size, why)| {
            let p = Params::new(TransportName::Mq, WaitName::Kernel, *size);
            [
                Case::latency(p.clone()),
                Case::throughput(p.clone(), 1, 1),
                Case::throughput(p, 2, 2),
            ]
            .map(|c| (c, why.as_str()))
        })
    }
}

/// Raises the sysctl for the largest mq size, gives every mq case its queue
/// depth, and drops the mq cases of the sizes that cannot be done.
pub fn prepare(cases: &mut Vec<Case>) -> MqLimits {
    let is_mq = |c: &Case| c.params.transport == TransportName::Mq;
    let need = cases
        .iter()
        .filter(|c| is_mq(c))
        .map(|c| c.params.size)
        .max()
        .unwrap_or(0);
    let guard = raise_msgsize(need);
    let mut na: Vec<(usize, String)> = Vec::new();
    let mut depth_of = HashMap::new();
    cases.retain_mut(|c| {
        if !is_mq(c) {
            return true;
        }
        let size = c.params.size;
        match depth_of.entry(size).or_insert_with(|| depth(size)) {
            Ok(d) => {
                c.params.mq_depth = *d;
                true
            }
            Err(e) => {
                if !na.iter().any(|(s, _)| *s == size) {
                    na.push((size, e.clone()));
                }
                false
            }
        }
    });
    for (s, e) in &na {
        eprintln!("note: mq n/a at {s} bytes: {e}");
    }
    MqLimits { _guard: guard, na }
}
