//! Instructions per message on the hot paths, counted by callgrind through
//! gungraun: 1000 messages of 64 bytes along each path of
//! `shmq_bench::hot` (one thread, both endpoints of a named spin-only
//! segment, `Spin` waits; the two SPSC paths `_futex` also in a default,
//! futex segment), send one, receive it (`spsc_batch`: send 32 under one
//! `batch()`, receive them under one `batch()`), and the same for the two
//! in-process references, rtrb and crossbeam's `ArrayQueue`. Creating the
//! segment (setup) and removing it (teardown) are not counted; divide the
//! instruction count by 1000.
//!
//! Needs valgrind and `gungraun-runner` of the same version as the
//! gungraun library (`.ci/run` installs it where valgrind exists):
//! `cargo bench -p shmq-bench --bench instructions`. Without them,
//! `scripts/instructions.sh` counts the same paths with plain callgrind.

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use shmq_bench::hot::{Hot, HotPath, HotSegment};

/// Messages per measurement.
const N: u64 = 1000;

fn setup(path: HotPath) -> Hot {
    Hot::new(path).expect("create the segment")
}

fn setup_futex(path: HotPath) -> Hot {
    Hot::in_segment(path, HotSegment::Futex).expect("create the segment")
}

// The endpoints are returned, so that their drop (and the segment's
// removal) happens in the teardown, outside the count.
#[library_benchmark]
#[bench::spsc_send_recv_into(args = (HotPath::SpscSendRecvInto), setup = setup, teardown = drop)]
#[bench::spsc_reserve_commit(args = (HotPath::SpscReserveCommit), setup = setup, teardown = drop)]
#[bench::spsc_send_recv_into_futex(args = (HotPath::SpscSendRecvInto), setup = setup_futex, teardown = drop)]
#[bench::spsc_reserve_commit_futex(args = (HotPath::SpscReserveCommit), setup = setup_futex, teardown = drop)]
#[bench::mpmc_send_recv(args = (HotPath::MpmcSendRecv), setup = setup, teardown = drop)]
#[bench::typed_send_recv(args = (HotPath::TypedSendRecv), setup = setup, teardown = drop)]
#[bench::spsc_batch(args = (HotPath::SpscBatch), setup = setup, teardown = drop)]
#[bench::rtrb_push_pop(args = (HotPath::RtrbPushPop), setup = setup, teardown = drop)]
#[bench::arrayqueue_push_pop(args = (HotPath::ArrayQueuePushPop), setup = setup, teardown = drop)]
fn messages_1000(mut hot: Hot) -> Hot {
    hot.run(black_box(N));
    hot
}

library_benchmark_group!(name = hot_paths; benchmarks = messages_1000);

main!(library_benchmark_groups = hot_paths);
