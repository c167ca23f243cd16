//! A berth binary that also serves the greeter: the whole of berth's command line
//! (`serve`, `check`, `hash-password`) over [`native_greeter::registry`].

fn main() -> std::process::ExitCode {
    berth::cli::run(native_greeter::registry())
}
