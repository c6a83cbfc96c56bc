//! `instructions PATH N [SEGMENT]`: moves N 64-byte messages along one hot
//! path of `shmq_bench::hot` and exits, for `scripts/instructions.sh` to
//! count the instructions with callgrind (N = 0 measures everything but the
//! loop). SEGMENT: `spin-only` (the default) or `futex`.

use shmq_bench::hot::{Hot, HotPath, HotSegment};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, n, seg) = match args.as_slice() {
        [path, n] => (path, n, "spin-only"),
        [path, n, seg] => (path, n, seg.as_str()),
        _ => return Err("usage: instructions PATH N [spin-only|futex]".into()),
    };
    let path: HotPath = path.parse()?;
    let seg: HotSegment = seg.parse()?;
    let n: u64 = n.parse().map_err(|e| format!("N: {e}"))?;
    let mut hot = Hot::in_segment(path, seg).map_err(|e| e.to_string())?;
    hot.run(n);
    Ok(())
}
