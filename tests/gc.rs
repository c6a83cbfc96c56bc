//! Races between `gc` and creators. `shmq::gc()` sweeps every stale
//! segment in `/dev/shm`, including other programs' kept ones, so the test
//! sweeps only its own names with `gc_one`, the per-segment step `gc()`
//! runs for each name.

mod common;

use std::time::{Duration, Instant};

use common::Name;
use shmq::{Options, spsc};

/// Review 2, R7: a creator that built its segment under a private name took
/// its init lock a moment after creating the file; `gc()` could see the
/// lock free in between, remove the file, and the create then failed with
/// `NotFound`. Creates race a `gc` loop over this test's names: none may
/// fail.
#[test]
fn review2_r7_gc_never_breaks_a_create() {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let gc = std::thread::spawn(move || {
        while stopped.try_recv().is_err() {
            for name in common::leftovers() {
                let _ = shmq::gc_one(name.trim_start_matches("shmq."));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut ok, mut failed) = (0, Vec::new());
    while Instant::now() < deadline && failed.len() < 3 {
        let name = Name::new("gcrace");
        match spsc::Producer::create(&name, &Options::new().capacity(4096)) {
            Ok(_) => ok += 1,
            Err(e) => failed.push(e.to_string()),
        }
    }
    stop.send(()).unwrap();
    gc.join().unwrap();
    println!("{ok} creates ok");
    assert!(ok > 100 && failed.is_empty(), "{failed:?}");
}
