//! `shmq`: benchmark, inspect, clean up and use shmq rings from a shell.
//!
//! Exit codes (`tools::EXIT_CODES`, shown by `--help`): 0 success; 1 the
//! operation failed (peer died, segment corrupt, I/O error); 2 bad usage or
//! bad input (name, options); 3 the segment is not usable (not found,
//! foreign, wrong kind, busy); 128+N `send`/`recv` stopped by signal N.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod tools;

/// Lock-free shared-memory rings: benchmark, inspect, clean up, pipe data.
#[derive(Parser)]
#[command(name = "shmq", version, about, long_about = None, after_help = tools::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure shmq against pipes, POSIX message queues and Unix sockets.
    Bench(bench::BenchArgs),
    /// Read stdin and send it through a ring as messages.
    Send(tools::SendArgs),
    /// Receive messages from a ring and write them to stdout.
    Recv(tools::RecvArgs),
    /// List shmq segments with kind, fill, endpoints and staleness.
    Ls(tools::LsArgs),
    /// Show one segment's header fields and endpoints.
    Stat(tools::StatArgs),
    /// Remove segments by name (not one in use, unless --force).
    Rm(tools::RmArgs),
    /// Remove every segment that no live process uses (or only those named).
    Gc(tools::GcArgs),
    /// Internal: the peer process of `shmq bench`.
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchPeer(a) => bench::peer(a),
        Cmd::Send(a) => tools::send(a),
        Cmd::Recv(a) => tools::recv(a),
        Cmd::Ls(a) => tools::ls(a),
        Cmd::Stat(a) => tools::stat(a),
        Cmd::Rm(a) => tools::rm(a),
        Cmd::Gc(a) => tools::gc(a),
    };
    ExitCode::from(code)
}
