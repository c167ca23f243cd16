//! Property tests over random `Authorization` values and paths (see `corpus.rs`).
