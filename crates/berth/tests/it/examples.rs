//! Every configuration under `examples/` for the `berth` binary parses and builds, so the
//! documentation cannot rot.
//!
//! The rule: a configuration belongs to the binary of the nearest crate around it. Files inside
//! an example crate (a directory with its own `Cargo.toml`, such as `examples/native-greeter`)
//! name services of that crate's registry, which `berth` does not have, so that crate's own
//! tests check them with its registry. Every other file is for `berth` and is checked here with
//! the built-in registry, so a misspelt service name still fails.

use std::path::Path;

use berth::{Config, Gateway, NativeRegistry};

use crate::harness::repo_root;

#[test]
fn every_example_config_is_valid() {
    let root = repo_root().join("examples");
    let mut checked = 0;
    for entry in walk(&root) {
        if entry.extension().is_some_and(|e| e == "toml") && entry.file_name().is_some_and(|n| n != "Cargo.toml") {
            let config = Config::load(&entry).unwrap_or_else(|e| panic!("{e}"));
            let env = |name: &str| match name {
                "BERTH_AUTH_USERNAME" => Some("example".to_string()),
                "BERTH_AUTH_PASSWORD" => Some("example".to_string()),
                _ => None,
            };
            Gateway::build_with_env(&config, &NativeRegistry::builtin(), &env).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example configuration found under {}", root.display());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let example_crate = path.join("Cargo.toml").is_file();
            if path.file_name().is_some_and(|n| n != "target") && !example_crate {
                files.extend(walk(&path));
            }
        } else {
            files.push(path);
        }
    }
    files
}
