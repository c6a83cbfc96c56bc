//! Kernel IPC baselines behind one trait (feature `baseline`). Filled in by
//! the benchmark work.
