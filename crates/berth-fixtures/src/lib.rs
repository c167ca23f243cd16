//! Test fixtures for berth. The crate's binaries are the fixtures; see
//! `src/bin/berth-fixture-stdio.rs`.
