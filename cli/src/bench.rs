//! `shmq bench`: placeholder until the benchmark lands.

/// Arguments of `shmq bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Arguments of the hidden peer process.
#[derive(clap::Args)]
pub struct PeerArgs {}

pub fn run(_a: BenchArgs) -> u8 {
    eprintln!("shmq bench: not implemented yet");
    1
}

pub fn peer(_a: PeerArgs) -> u8 {
    1
}
