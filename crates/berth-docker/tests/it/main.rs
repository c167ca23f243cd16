//! berth-docker's tests against a real Docker engine, with images built offline by
//! `scripts/build-test-images.sh`.
//!
//! They run whenever an engine answers. Without one they print a notice and pass, unless
//! `BERTH_REQUIRE_DOCKER=1` is set (CI), which turns a missing engine into a failure.

mod exec;
mod health;
mod lifecycle;
mod session;
mod support;
