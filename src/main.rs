//! The `stepgate` binary: argument parsing and start-up only.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
