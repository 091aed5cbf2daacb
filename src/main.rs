//! The `stepgate` binary: argument parsing and start-up only.

mod cli;

// Opt-in (`--features mimalloc`): less CPU per pass-through request on
// HTTP/2 and with large bodies, for 12 MiB more idle memory, which misses
// the idle-memory target; measured in docs/benchmarks.md.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
