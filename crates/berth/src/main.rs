//! The `berth` binary: the command line over the built-in native services.

fn main() -> std::process::ExitCode {
    berth::cli::run(berth::NativeRegistry::builtin())
}
