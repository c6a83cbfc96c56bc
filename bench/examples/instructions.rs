//! `instructions PATH N`: moves N 64-byte messages along one hot path of
//! `shmq_bench::hot` and exits, for `scripts/instructions.sh` to count the
//! instructions with callgrind (N = 0 measures everything but the loop).

use shmq_bench::hot::{Hot, HotPath};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, n] = args.as_slice() else {
        return Err("usage: instructions PATH N".into());
    };
    let path: HotPath = path.parse()?;
    let n: u64 = n.parse().map_err(|e| format!("N: {e}"))?;
    let mut hot = Hot::new(path).map_err(|e| e.to_string())?;
    hot.run(n);
    Ok(())
}
