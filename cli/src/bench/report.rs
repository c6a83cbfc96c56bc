//! Output of `shmq bench`: the table, JSON lines, the spin-sweep table and
//! the SVG plot.

use std::io::{self, Write};
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use shmq_bench::{Pattern, TransportName, WaitName};

use super::Summary;
use super::summary::{Turns, agree, median, placements, ratio_by_placement};

/// `v` in the first unit of `steps` (from, divisor, decimals, suffix) it
/// reaches, else as it is with `plain` after it.
fn scaled(v: f64, steps: &[(f64, f64, usize, &str)], plain: &str) -> String {
    match steps.iter().find(|s| v >= s.0) {
        Some(&(_, div, decimals, suffix)) => format!("{:.*} {suffix}", decimals, v / div),
        None => format!("{v:.0}{plain}"),
    }
}

/// Nanoseconds, human-readable.
pub fn ns(v: f64) -> String {
    let steps = [
        (1e6, 1e6, 2, "ms"),
        (1e4, 1e3, 1, "us"),
        (1e3, 1e3, 2, "us"),
    ];
    scaled(v, &steps, " ns")
}

/// A rate with an SI suffix.
pub fn si(v: f64) -> String {
    scaled(
        v,
        &[(1e9, 1e9, 2, "G"), (1e6, 1e6, 2, "M"), (1e3, 1e3, 1, "k")],
        "",
    )
}

/// One JSON line per measurement, exactly these fields.
#[derive(Serialize)]
struct Row {
    transport: &'static str,
    wait: &'static str,
    pattern: &'static str,
    size: usize,
    producers: usize,
    consumers: usize,
    rtt_ns_p50: Option<u64>,
    rtt_ns_p99: Option<u64>,
    msgs_per_s: Option<f64>,
    bytes_per_s: Option<f64>,
    wake_syscalls_per_msg: Option<f64>,
    /// Median line round trip between the two CPUs around the rounds (ns).
    line_rtt_ns: Option<u64>,
    /// Every round: its figure and the line round trips before and after.
    rounds: Vec<RoundRow>,
    /// The `alternate` case only: its turn-by-turn ratios.
    #[serde(skip_serializing_if = "Option::is_none")]
    turns: Option<TurnsRow>,
}

/// An alternating consumer's turns in the JSON output: each way's rate
/// over the blocking one's (paced, polling, and the control: odd blocking
/// turns over even ones), all rounds pooled, and round by round.
#[derive(Serialize)]
struct TurnsRow {
    paced_over_blocking: f64,
    polling_over_blocking: f64,
    /// Odd blocking turns over even ones.
    control: f64,
    /// Each round's three ratios.
    rounds: Vec<[f64; 3]>,
}

/// One round in the JSON output.
#[derive(Serialize)]
struct RoundRow {
    /// msgs/s (throughput) or the round trip's median in ns (latency).
    value: f64,
    line_rtt_ns_before: Option<u64>,
    line_rtt_ns_after: Option<u64>,
}

fn row(s: &Summary) -> Row {
    let c = &s.case;
    Row {
        transport: c.params.transport.as_str(),
        wait: c.params.wait.as_str(),
        pattern: c.pattern.as_str(),
        size: c.params.size,
        producers: c.producers,
        consumers: c.consumers,
        rtt_ns_p50: s.rtt_p50.map(|v| v as u64),
        rtt_ns_p99: s.rtt_p99.map(|v| v as u64),
        msgs_per_s: s.msgs_per_s.map(|v| v.round()),
        bytes_per_s: s.msgs_per_s.map(|v| (v * c.params.size as f64).round()),
        wake_syscalls_per_msg: s.wake_per_msg.map(|v| (v * 1e6).round() / 1e6),
        line_rtt_ns: s.c2c.map(|v| v.round() as u64),
        rounds: s
            .rounds
            .iter()
            .map(|r| RoundRow {
                value: r.value.round(),
                line_rtt_ns_before: r.c2c.map(|c| c[0].round() as u64),
                line_rtt_ns_after: r.c2c.map(|c| c[1].round() as u64),
            })
            .collect(),
        turns: s
            .round_turns
            .iter()
            .fold(Turns::default(), |a, &b| a.add(b))
            .ratios()
            .map(|[p, q, c]| TurnsRow {
                paced_over_blocking: p,
                polling_over_blocking: q,
                control: c,
                rounds: s.round_turns.iter().filter_map(Turns::ratios).collect(),
            }),
    }
}

/// Whether a row belongs in the table and the plot: every case but the
/// `alternate` one, whose figure mixes three ways of receiving (its turns
/// have their own line).
fn tabled(s: &Summary) -> bool {
    s.case.params.wait != WaitName::Alternate
}

/// The `alternate` case's line: per size, the paced and the bare polling
/// ways' rates over the blocking way's, the rounds' median and range, and
/// the control.
fn turn_lines(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    let per_size: Vec<String> = sums
        .iter()
        .filter(|s| !tabled(s) && s.na.is_none())
        .filter_map(|s| {
            let rounds: Vec<[f64; 3]> = s.round_turns.iter().filter_map(Turns::ratios).collect();
            let at = |k: usize| {
                let v = rounds.iter().map(|r| r[k]);
                let (lo, hi) = (
                    v.clone().fold(f64::INFINITY, f64::min),
                    v.clone().fold(0.0, f64::max),
                );
                Some(format!("x{:.2} ({lo:.2}-{hi:.2})", median(v.collect())?))
            };
            Some(format!(
                "{} B paced {}, poll {}, control {}",
                s.case.params.size,
                at(0)?,
                at(1)?,
                at(2)?
            ))
        })
        .collect();
    if per_size.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "polling / blocking, taking turns in one stream (shmq-spsc 1x1: one consumer receives \
         by blocking recv_into, by try_recv_into paced by shmq::Pacer and by bare \
         try_recv_into in turn, eight ring capacities each, so all three see the same \
         placements; per round, each way's messages over its time over the blocking way's; \
         the rounds' median and range; control: the odd blocking turns over the even): {}",
        per_size.join("; ")
    )
}

/// Writes one JSON object per measured case.
pub fn json(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    for s in sums.iter().filter(|s| s.na.is_none()) {
        serde_json::to_writer(&mut *out, &row(s))?;
        writeln!(out)?;
    }
    Ok(())
}

/// The pipe's result for the same pattern and size (the ratio's base).
fn pipe_of<'a>(sums: &'a [Summary], s: &Summary) -> Option<&'a Summary> {
    sums.iter().find(|p| {
        p.case.params.transport == TransportName::Pipe
            && p.case.pattern == s.case.pattern
            && p.case.params.size == s.case.params.size
            && p.na.is_none()
    })
}

/// How many times better than the pipe: lower round trip, or more msgs/s.
fn vs_pipe(sums: &[Summary], s: &Summary) -> Option<f64> {
    let p = pipe_of(sums, s)?;
    if s.case.pattern == Pattern::Latency {
        Some(p.rtt_p50? / s.rtt_p50?)
    } else {
        Some(s.msgs_per_s? / p.msgs_per_s?)
    }
}

/// The human-readable table.
pub fn table(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    writeln!(
        out,
        "{:<10} {:<6} {:<10} {:>6} {:>4} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8} {:>9}",
        "transport",
        "wait",
        "pattern",
        "size",
        "PxC",
        "rtt p50",
        "rtt p99",
        "msgs/s",
        "MB/s",
        "wake/msg",
        "vs pipe",
        "line rtt"
    )?;
    let mut order: Vec<&Summary> = sums.iter().filter(|s| tabled(s)).collect();
    order.sort_by_key(|s| (s.case.pattern != Pattern::Latency, s.case.params.size));
    let mut last = None;
    for s in order {
        let key = (s.case.pattern, s.case.params.size);
        if last.is_some() && last != Some(key) {
            writeln!(out)?;
        }
        last = Some(key);
        let c = &s.case;
        let dash = || "-".to_owned();
        let line = s.c2c.map_or_else(String::new, ns);
        let (p50, p99, mps, mbs, wake, ratio) = if let Some(why) = &s.na {
            let short = if why.contains("msgsize_max") {
                "n/a (msgsize_max)"
            } else {
                "n/a"
            };
            (
                short.to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            )
        } else {
            (
                s.rtt_p50.map_or_else(dash, ns),
                s.rtt_p99.map_or_else(dash, ns),
                s.msgs_per_s.map_or_else(dash, si),
                s.msgs_per_s
                    .map_or_else(dash, |m| format!("{:.1}", m * c.params.size as f64 / 1e6)),
                s.wake_per_msg.map_or_else(dash, |w| format!("{w:.4}")),
                vs_pipe(sums, s).map_or_else(dash, |r| format!("x{r:.2}")),
            )
        };
        writeln!(
            out,
            "{:<10} {:<6} {:<10} {:>6} {:>4} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8} {:>9}",
            c.params.transport.as_str(),
            c.params.wait.as_str(),
            c.pattern.as_str(),
            c.params.size,
            format!("{}x{}", c.producers, c.consumers),
            p50,
            p99,
            mps,
            mbs,
            wake,
            ratio,
            line
        )?;
    }
    writeln!(
        out,
        "\nrtt: round trip (ping-pong), medians across rounds; msgs/s: one-way stream; \
         wake/msg: shmq wake syscalls per message; vs pipe: times better than pipe \
         (same pattern and size, same run); line rtt: a cache line's round trip between \
         the two CPUs around the row's rounds (median; see \"placement\" below)."
    )?;
    for (wait, what) in [
        (WaitName::Poll, "try_recv polling"),
        (WaitName::Paced, "try_recv polling paced by shmq::Pacer"),
    ] {
        let polling: Vec<String> = sums
            .iter()
            .filter_map(|s| Some((s.case.params.size, poll_vs_blocking(sums, s, wait)?)))
            .map(|(size, r)| format!("{size} B x{r:.2}"))
            .collect();
        if !polling.is_empty() {
            writeln!(
                out,
                "{what} / blocking recv (shmq-spsc 1x1 stream, msgs/s, same run): {}",
                polling.join(", ")
            )?;
        }
    }
    turn_lines(out, sums)?;
    if let Some(b) = sums
        .iter()
        .map(|s| s.case.params.batch)
        .find(|&b| b > 1 && sums.iter().any(|s| s.case.pattern == Pattern::Throughput))
    {
        writeln!(
            out,
            "--batch {b}: streams send {b} messages at a time and receive up to {b} (what is \
             there): shmq-spsc under one batch() on each side (one publish, one release), limit \
             with one cursor store per batch on each side, the others (and polling consumers) \
             one message at a time."
        )?;
    }
    limit_lines(out, sums)?;
    limit_batch_lines(out, sums)?;
    placement_lines(out, sums)
}

/// A row's transport, wait and pattern.
type Key = (TransportName, WaitName, Pattern);

/// Rows held to a base row, per size (a ratio line of `placement_lines`).
struct Held {
    what: &'static str,
    base: Key,
    /// Many-to-many rows (2x2) rather than 1x1.
    multi: bool,
    rows: Vec<(&'static str, Key)>,
}

/// The measured row of `t` / `w` / `pattern` at `size`, 1x1 or not.
fn find(sums: &[Summary], (t, w, pattern): Key, size: usize, multi: bool) -> Option<&Summary> {
    sums.iter().find(|s| {
        let c = &s.case;
        c.params.transport == t
            && c.params.wait == w
            && c.pattern == pattern
            && c.params.size == size
            && c.is_multi() == multi
            && s.na.is_none()
    })
}

/// The placement of the run (how far apart the two CPUs were around the
/// measurements), and issue 15's ratios again, placement by placement
/// ([`ratio_by_placement`]).
fn placement_lines(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    let mut all: Vec<f64> = Vec::new();
    let (mut moved, mut probed) = (0, 0);
    for r in sums.iter().flat_map(|s| &s.rounds) {
        if let Some([a, b]) = r.c2c {
            all.extend([a, b]);
            probed += 1;
            if !agree(a, b) {
                moved += 1;
            }
        }
    }
    if all.is_empty() {
        return Ok(());
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| ns(all[((all.len() - 1) as f64 * q).round() as usize]);
    writeln!(
        out,
        "placement: a cache line's round trip between the two CPUs, probed before and after \
         every measurement: min {}, p10 {}, median {}, p90 {}, max {}; {moved} of {probed} \
         measurements saw it change by more than 1.5x (a VM's CPUs move between cores).",
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9),
        at(1.0),
    )?;
    let centers = placements(sums);
    if centers.is_empty() {
        return Ok(());
    }
    let mut sizes: Vec<usize> = sums.iter().map(|s| s.case.params.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let lat = |t, w| (t, w, Pattern::Latency);
    let thr = |t, w| (t, w, Pattern::Throughput);
    use TransportName::{Floor, FloorRing, LimitBatch, Mq, Pipe, ShmqMpmc, ShmqSpsc};
    use WaitName::{Futex, Kernel, Paced, Poll, Sem, Spin};
    let spsc_waits = [Spin, Futex, Poll, Paced, Sem];
    let groups = [
        Held {
            what: "shmq-spsc rtt / floor",
            base: lat(Floor, Spin),
            multi: false,
            rows: [Spin, Futex, Sem]
                .map(|w| (w.as_str(), lat(ShmqSpsc, w)))
                .to_vec(),
        },
        Held {
            what: "shmq-spsc rtt / floor-ring",
            base: lat(FloorRing, Spin),
            multi: false,
            rows: vec![("spin", lat(ShmqSpsc, Spin))],
        },
        Held {
            what: "stream / pipe",
            base: thr(Pipe, Kernel),
            multi: false,
            rows: spsc_waits
                .map(|w| (w.as_str(), thr(ShmqSpsc, w)))
                .into_iter()
                .chain([
                    ("mpmc", thr(ShmqMpmc, Futex)),
                    ("limit-32", thr(LimitBatch, Spin)),
                ])
                .collect(),
        },
        Held {
            what: "shmq-mpmc 2x2 / mq 2x2",
            base: thr(Mq, Kernel),
            multi: true,
            rows: vec![("futex", thr(ShmqMpmc, Futex))],
        },
        Held {
            what: "shmq-spsc / limit-32",
            base: thr(LimitBatch, Spin),
            multi: false,
            rows: spsc_waits.map(|w| (w.as_str(), thr(ShmqSpsc, w))).to_vec(),
        },
        Held {
            what: "polling / blocking",
            base: thr(ShmqSpsc, Futex),
            multi: false,
            rows: vec![
                ("poll", thr(ShmqSpsc, Poll)),
                ("paced", thr(ShmqSpsc, Paced)),
            ],
        },
    ];
    let mut lines = Vec::new();
    for Held {
        what,
        base,
        multi,
        rows,
    } in groups
    {
        for &size in &sizes {
            let Some(b) = find(sums, base, size, multi) else {
                continue;
            };
            let figures: Vec<String> = rows
                .iter()
                .filter_map(|&(name, key)| {
                    let a = find(sums, key, size, multi)?;
                    let each: Vec<String> = ratio_by_placement(a, b, &centers)
                        .into_iter()
                        .map(|(c, r, ka, kb)| format!("{} x{r:.2} ({ka},{kb})", ns(c)))
                        .collect();
                    (!each.is_empty()).then(|| format!("{name} {}", each.join(" ")))
                })
                .collect();
            if !figures.is_empty() {
                lines.push(format!("  {what} {size} B: {}", figures.join("; ")));
            }
        }
    }
    let names: Vec<String> = centers.iter().map(|&c| ns(c)).collect();
    writeln!(
        out,
        "by placement (the rounds whose two probes agreed within 1.5x, grouped by their line \
         round trip: {}; per group the row's median over the base's, with how many rounds \
         each had; round trips: lower is better):",
        names.join(", ")
    )?;
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

/// The measured 1x1 stream rows of `t` at `size`, in table order.
fn streams(sums: &[Summary], t: TransportName, size: usize) -> impl Iterator<Item = &Summary> {
    sums.iter().filter(move |s| {
        let c = &s.case;
        c.params.transport == t
            && c.pattern == Pattern::Throughput
            && c.params.size == size
            && !c.is_multi()
            && s.na.is_none()
            && s.msgs_per_s.is_some()
            && tabled(s)
    })
}

/// The sizes, smallest first, at which `t` has a measured 1x1 stream row.
fn stream_sizes(sums: &[Summary], t: TransportName) -> Vec<usize> {
    let mut sizes: Vec<usize> = sums
        .iter()
        .filter(|s| streams(sums, t, s.case.params.size).next().is_some())
        .map(|s| s.case.params.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// For each size with a `limit-32` stream row: every shmq SPSC stream row
/// over it (one message at a time, unless `--batch`): how near the ring
/// comes to the machine's ceiling for a one-way stream, from this run's
/// medians.
fn limit_batch_lines(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    let sizes = stream_sizes(sums, TransportName::LimitBatch);
    let mut each = Vec::new();
    for size in sizes {
        let Some(bar) = streams(sums, TransportName::LimitBatch, size).find_map(|s| s.msgs_per_s)
        else {
            continue;
        };
        let all: Vec<String> = streams(sums, TransportName::ShmqSpsc, size)
            .filter_map(|s| {
                Some(format!(
                    "{} x{:.2}",
                    s.case.params.wait.as_str(),
                    s.msgs_per_s? / bar
                ))
            })
            .collect();
        if !all.is_empty() {
            each.push(format!("{size} B {}", all.join(", ")));
        }
    }
    if !each.is_empty() {
        writeln!(
            out,
            "shmq-spsc / limit-32 (one-way stream, same run): {}",
            each.join("; ")
        )?;
        writeln!(
            out,
            "limit-32: the limit's stream with one cursor store per {} records on each side \
             (fewer where they would fill more than an eighth of its ring: seven at 64 KiB): \
             the machine's ceiling for a one-way stream (issue 15's 1 KiB bar).",
            shmq_bench::LIMIT_BATCH
        )?;
    }
    Ok(())
}

/// For each size with a `limit` stream row: the shmq SPSC stream rows over
/// it, and it over the pipe's: how near the ring comes to the bare stream,
/// and how far that ceiling is from the pipe, all from this run's medians.
///
/// The headline is the `spin` row: it waits as the limit does, and it is
/// one row, not the best of four noisy medians (which leans high); every
/// wait's ratio follows on the next line.
fn limit_lines(out: &mut impl Write, sums: &[Summary]) -> io::Result<()> {
    let sizes = stream_sizes(sums, TransportName::Limit);
    let (mut spin, mut each, mut pipe) = (Vec::new(), Vec::new(), Vec::new());
    for size in sizes {
        let Some(limit) = streams(sums, TransportName::Limit, size).find_map(|s| s.msgs_per_s)
        else {
            continue;
        };
        let spsc: Vec<(WaitName, f64)> = streams(sums, TransportName::ShmqSpsc, size)
            .filter_map(|s| Some((s.case.params.wait, s.msgs_per_s? / limit)))
            .collect();
        if let Some((_, r)) = spsc.iter().find(|(w, _)| *w == WaitName::Spin) {
            spin.push(format!("{size} B x{r:.2}"));
        }
        if !spsc.is_empty() {
            let all: Vec<String> = spsc
                .iter()
                .map(|(w, r)| format!("{} x{r:.2}", w.as_str()))
                .collect();
            each.push(format!("{size} B {}", all.join(", ")));
        }
        if let Some(p) = streams(sums, TransportName::Pipe, size).find_map(|s| s.msgs_per_s) {
            pipe.push(format!("{size} B x{:.1}", limit / p));
        }
    }
    if !spin.is_empty() {
        writeln!(
            out,
            "shmq-spsc / limit (one-way stream, same run): {} \
             [shmq-spsc/spin: it waits as the limit does]",
            spin.join(", ")
        )?;
    }
    if !each.is_empty() {
        writeln!(out, "  every shmq-spsc wait / limit: {}", each.join("; "))?;
    }
    if !pipe.is_empty() {
        writeln!(
            out,
            "limit / pipe (one-way stream, same run): {}",
            pipe.join(", ")
        )?;
    }
    if !each.is_empty() || !pipe.is_empty() {
        let batch = sums
            .iter()
            .filter(|s| s.case.params.transport == TransportName::Limit)
            .map(|s| s.case.params.batch)
            .max()
            .unwrap_or(1);
        let stores = if batch > 1 {
            format!("a Release cursor store per batch of up to {batch} records on each side")
        } else {
            "a Release cursor store per record".to_owned()
        };
        writeln!(
            out,
            "limit: spsc_limit.c's stream (bare byte ring, 8-byte headers, {stores}, no checks, \
             both sides spinning) in the same processes, pinning and harness: that protocol's \
             ceiling here (a ring that publishes otherwise, or in batches, can pass it)."
        )?;
    }
    Ok(())
}

/// For a polling row of `wait` (`poll`, or `paced` by `shmq::Pacer`): its
/// throughput over the blocking (futex) row's of the same size.
fn poll_vs_blocking(sums: &[Summary], s: &Summary, wait: WaitName) -> Option<f64> {
    let c = &s.case;
    if c.params.wait != wait || s.na.is_some() {
        return None;
    }
    let blocking = sums.iter().find(|b| {
        b.case.params.wait == WaitName::Futex
            && b.case.params.transport == c.params.transport
            && b.case.pattern == c.pattern
            && b.case.params.size == c.params.size
            && !b.case.is_multi()
    })?;
    Some(s.msgs_per_s? / blocking.msgs_per_s?)
}

/// The spin-window sweep: round trip and CPU per round trip.
pub fn sweep(out: &mut impl Write, sums: &[Summary], as_json: bool) -> io::Result<()> {
    #[derive(Serialize)]
    struct SweepRow {
        transport: &'static str,
        wait: &'static str,
        pattern: &'static str,
        size: usize,
        spin_us: Option<u64>,
        pace_us: Option<u64>,
        rtt_ns_p50: Option<u64>,
        rtt_ns_p99: Option<u64>,
        cpu_ns_per_rtt: Option<u64>,
        wake_syscalls_per_msg: Option<f64>,
    }
    if !as_json {
        writeln!(
            out,
            "{:<10} {:<6} {:>8} {:>10} {:>10} {:>10} {:>14} {:>9}",
            "transport", "wait", "spin", "pace", "rtt p50", "rtt p99", "cpu/rtt (both)", "wake/msg"
        )?;
    }
    for s in sums {
        let c = &s.case;
        let r = SweepRow {
            transport: c.params.transport.as_str(),
            wait: c.params.wait.as_str(),
            pattern: "latency",
            size: c.params.size,
            spin_us: c.params.spin_us,
            pace_us: c.pace.map(|p| p.as_micros() as u64),
            rtt_ns_p50: s.rtt_p50.map(|v| v as u64),
            rtt_ns_p99: s.rtt_p99.map(|v| v as u64),
            cpu_ns_per_rtt: s.cpu_ns_per_rtt.map(|v| v as u64),
            wake_syscalls_per_msg: s.wake_per_msg.map(|v| (v * 1e6).round() / 1e6),
        };
        if as_json {
            serde_json::to_writer(&mut *out, &r)?;
            writeln!(out)?;
        } else {
            let dash = || "-".to_owned();
            writeln!(
                out,
                "{:<10} {:<6} {:>8} {:>10} {:>10} {:>10} {:>14} {:>9}",
                r.transport,
                r.wait,
                c.params.spin_us.map_or("-".into(), |v| format!("{v} us")),
                c.pace
                    .map_or("none".into(), |p| format!("{} us", p.as_micros())),
                s.rtt_p50.map_or_else(dash, ns),
                s.rtt_p99.map_or_else(dash, ns),
                s.cpu_ns_per_rtt.map_or_else(dash, ns),
                s.wake_per_msg.map_or_else(dash, |w| format!("{w:.3}")),
            )?;
        }
    }
    if !as_json {
        writeln!(
            out,
            "\ncpu/rtt: user+system CPU time of both processes per round trip (getrusage); \
             pace: the pinger sleeps this long between round trips (the peer idles)."
        )?;
    }
    Ok(())
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color_of(label: &str, labels: &[String]) -> RGBColor {
    let i = labels.iter().position(|l| l == label).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

type DynErr = Box<dyn std::error::Error>;

/// Latency distributions (one panel per size: share of round trips at or
/// below x) and throughput bars (one panel per size, log scale).
pub fn plot(path: &Path, sums: &[Summary], machine: &str) -> Result<(), DynErr> {
    let measured: Vec<&Summary> = sums
        .iter()
        .filter(|s| s.na.is_none() && tabled(s))
        .collect();
    let mut sizes: Vec<usize> = measured.iter().map(|s| s.case.params.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut labels: Vec<String> = Vec::new();
    for s in &measured {
        let l = s.case.label();
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let ncol = sizes.len().max(1);
    let (w, h) = (430 * ncol as u32 + 40, 960);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(60);
    title.draw(&Text::new(
        "shmq bench: cross-process, pinned peers, medians of alternating rounds",
        (20, 8),
        ("sans-serif", 22).into_font(),
    ))?;
    title.draw(&Text::new(
        machine.to_owned(),
        (20, 36),
        ("sans-serif", 14).into_font(),
    ))?;
    let (top, bottom) = body.split_vertically(470);
    let top_cells = top.split_evenly((1, ncol));
    let bottom_cells = bottom.split_evenly((1, ncol));
    for (k, &size) in sizes.iter().enumerate() {
        // Latency CDF.
        let lat: Vec<&&Summary> = measured
            .iter()
            .filter(|s| {
                s.case.pattern == Pattern::Latency && s.case.params.size == size && s.hist.is_some()
            })
            .collect();
        if !lat.is_empty() {
            let lo = lat
                .iter()
                .filter_map(|s| s.hist.as_ref().map(|h| h.value_at_quantile(0.001)))
                .min()
                .unwrap_or(1)
                .max(1) as f64;
            let hi = lat
                .iter()
                .filter_map(|s| s.hist.as_ref().map(|h| h.value_at_quantile(0.999)))
                .max()
                .unwrap_or(10) as f64;
            let mut chart = ChartBuilder::on(&top_cells[k])
                .caption(
                    format!("round trip, {size} B (share of trips <= x)"),
                    ("sans-serif", 16),
                )
                .margin(10)
                .margin_right(30)
                .x_label_area_size(35)
                .y_label_area_size(40)
                .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..100.0)?;
            chart
                .configure_mesh()
                .x_desc("round trip (ns, log)")
                .y_desc("% of round trips")
                .x_labels(6)
                .x_label_formatter(&|v| ns(*v))
                .draw()?;
            for s in lat {
                let Some(h) = s.hist.as_ref() else { continue };
                let label = s.case.label();
                let color = color_of(&label, &labels);
                let mut pts = Vec::new();
                let mut q = 0.001;
                while q < 0.999 {
                    pts.push((h.value_at_quantile(q).max(1) as f64, q * 100.0));
                    q += if q < 0.95 { 0.01 } else { 0.002 };
                }
                pts.push((h.value_at_quantile(0.999).max(1) as f64, 99.9));
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()?;
        }
        // Throughput bars.
        let thr: Vec<&&Summary> = measured
            .iter()
            .filter(|s| {
                s.case.pattern == Pattern::Throughput
                    && s.case.params.size == size
                    && s.msgs_per_s.is_some()
            })
            .collect();
        if !thr.is_empty() {
            let vals: Vec<f64> = thr.iter().filter_map(|s| s.msgs_per_s).collect();
            let lo = vals.iter().cloned().fold(f64::MAX, f64::min).max(1.0);
            let hi = vals.iter().cloned().fold(0.0, f64::max).max(10.0);
            let names: Vec<String> = thr.iter().map(|s| s.case.label()).collect();
            let n = thr.len();
            // Horizontal bars: transport names read on the y axis.
            let mut chart = ChartBuilder::on(&bottom_cells[k])
                .caption(
                    format!("one-way throughput, {size} B (msgs/s, log)"),
                    ("sans-serif", 16),
                )
                .margin(10)
                .margin_right(25)
                .x_label_area_size(35)
                .y_label_area_size(150)
                .build_cartesian_2d((lo / 3.0..hi * 3.0).log_scale(), 0.0..n as f64)?;
            let names2 = names.clone();
            chart
                .configure_mesh()
                .disable_y_mesh()
                .light_line_style(WHITE)
                .y_labels(n * 2 + 1)
                .y_label_formatter(&move |y| {
                    // Bar i spans [n-1-i, n-i): first case on top.
                    let j = y.floor() as usize;
                    if (y - y.floor() - 0.5).abs() < 0.01 && j < names2.len() {
                        names2[names2.len() - 1 - j].clone()
                    } else {
                        String::new()
                    }
                })
                .y_label_style(("sans-serif", 12))
                .x_labels(5)
                .x_label_formatter(&|v| si(*v))
                .x_desc("messages per second")
                .draw()?;
            for (i, s) in thr.iter().enumerate() {
                let Some(v) = s.msgs_per_s else { continue };
                let color = color_of(&names[i], &labels);
                let y = (n - 1 - i) as f64;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(lo / 3.0, y + 0.15), (v, y + 0.85)],
                    color.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    si(v),
                    (v * 1.05, y + 0.35),
                    ("sans-serif", 11).into_font(),
                )))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale_as_before() {
        assert_eq!(ns(542.4), "542 ns");
        assert_eq!(ns(1070.0), "1.07 us");
        assert_eq!(ns(61_400.0), "61.4 us");
        assert_eq!(ns(2_500_000.0), "2.50 ms");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(221_000.0), "221.0 k");
        assert_eq!(si(30_730_000.0), "30.73 M");
        assert_eq!(si(2e9), "2.00 G");
    }

    fn stream(t: TransportName, w: WaitName, size: usize, mps: f64) -> Summary {
        use shmq_bench::{Case, Params};
        let case = Case::throughput(Params::new(t, w, size), 1, 1);
        Summary {
            msgs_per_s: Some(mps),
            ..super::super::summary::summarize(case, &[])
        }
    }

    /// What `lines` writes for `sums`.
    fn render(lines: fn(&mut Vec<u8>, &[Summary]) -> io::Result<()>, sums: &[Summary]) -> String {
        let mut out = Vec::new();
        lines(&mut out, sums).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn limit_lines_hold_spsc_to_the_limit_and_the_limit_to_the_pipe() {
        use TransportName::{Limit, Pipe, ShmqSpsc};
        use WaitName::{Futex, Kernel, Spin};
        let sums = [
            stream(Limit, Spin, 64, 20e6),
            stream(ShmqSpsc, Spin, 64, 10e6),
            stream(ShmqSpsc, Futex, 64, 12e6),
            stream(Pipe, Kernel, 64, 1e6),
            stream(Limit, Spin, 1024, 5e6),
            stream(ShmqSpsc, Spin, 1024, 4e6),
        ];
        let text = render(limit_lines, &sums);
        assert!(
            text.contains(
                "shmq-spsc / limit (one-way stream, same run): 64 B x0.50, 1024 B x0.80 [shmq-spsc/spin"
            ),
            "{text}"
        );
        assert!(
            text.contains("64 B spin x0.50, futex x0.60; 1024 B spin x0.80"),
            "{text}"
        );
        assert!(
            text.contains("limit / pipe (one-way stream, same run): 64 B x20.0\n"),
            "{text}"
        );
        // Without a limit row there is nothing to say.
        assert!(render(limit_lines, &sums[1..4]).is_empty());
    }

    #[test]
    fn limit_batch_lines_hold_every_spsc_row_to_the_batched_limit() {
        use TransportName::{LimitBatch, ShmqSpsc};
        use WaitName::{Futex, Spin};
        let sums = [
            stream(LimitBatch, Spin, 1024, 10e6),
            stream(ShmqSpsc, Spin, 1024, 4e6),
            stream(ShmqSpsc, Futex, 1024, 8e6),
        ];
        let text = render(limit_batch_lines, &sums);
        assert!(
            text.contains(
                "shmq-spsc / limit-32 (one-way stream, same run): 1024 B spin x0.40, futex x0.80\n"
            ),
            "{text}"
        );
        assert!(render(limit_batch_lines, &sums[1..]).is_empty());
    }

    #[test]
    fn placement_lines_give_each_ratio_per_placement() {
        use super::super::summary::RoundFigure;
        use TransportName::{Pipe, ShmqSpsc};
        use WaitName::{Kernel, Spin};
        let with = |t, w, rounds: &[(f64, f64)]| Summary {
            rounds: rounds
                .iter()
                .map(|&(value, c2c)| RoundFigure {
                    value,
                    c2c: Some([c2c, c2c]),
                })
                .collect(),
            ..stream(t, w, 64, 1.0)
        };
        let sums = [
            with(ShmqSpsc, Spin, &[(20e6, 125.0), (5e6, 500.0)]),
            with(Pipe, Kernel, &[(1e6, 120.0), (0.5e6, 510.0)]),
        ];
        let text = render(placement_lines, &sums);
        assert!(
            text.contains("placement: a cache line's round trip between the two CPUs"),
            "{text}"
        );
        assert!(text.contains("0 of 4 measurements saw it change"), "{text}");
        assert!(
            text.contains("stream / pipe 64 B: spin 122 ns x20.00 (1,1) 505 ns x10.00 (1,1)"),
            "{text}"
        );
        // Unprobed (unpinned) runs have no placement lines.
        let bare = [
            stream(ShmqSpsc, Spin, 64, 1.0),
            stream(Pipe, Kernel, 64, 1.0),
        ];
        assert!(render(placement_lines, &bare).is_empty());
    }

    #[test]
    fn polling_lines_hold_both_polling_rows_to_the_blocking_one() {
        use TransportName::ShmqSpsc;
        use WaitName::{Futex, Paced, Poll};
        let sums = [
            stream(ShmqSpsc, Futex, 64, 20e6),
            stream(ShmqSpsc, Poll, 64, 10e6),
            stream(ShmqSpsc, Paced, 64, 18e6),
        ];
        let text = render(table, &sums);
        assert!(
            text.contains("try_recv polling / blocking recv (shmq-spsc 1x1 stream, msgs/s, same run): 64 B x0.50\n"),
            "{text}"
        );
        assert!(
            text.contains("try_recv polling paced by shmq::Pacer / blocking recv (shmq-spsc 1x1 stream, msgs/s, same run): 64 B x0.90\n"),
            "{text}"
        );
    }

    #[test]
    fn the_turn_line_gives_each_way_over_blocking_per_round_and_keeps_the_case_out_of_the_table() {
        // Two rounds: blocking at 2 msgs/ns (both parities), paced at 1
        // and 3, polling at 1.5 and 1.5.
        let round = |paced: u64| Turns {
            blocking: [(20, 10), (20, 10)],
            paced: (paced, 10),
            polling: (15, 10),
        };
        let alt = Summary {
            round_turns: vec![round(10), round(30)],
            ..stream(TransportName::ShmqSpsc, WaitName::Alternate, 64, 20e6)
        };
        let sums = [
            stream(TransportName::ShmqSpsc, WaitName::Futex, 64, 20e6),
            alt,
        ];
        let text = render(table, &sums);
        assert!(
            text.contains(
                "64 B paced x1.00 (0.50-1.50), poll x0.75 (0.75-0.75), control x1.00 (1.00-1.00)"
            ),
            "{text}"
        );
        assert_eq!(text.matches("alternate").count(), 0, "{text}");
    }
}
