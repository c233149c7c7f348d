//! The crate graph keeps the rules of docs/ARCHITECTURE.md, read from `cargo metadata`:
//! - the domain, the audio kernels, the call engine and the RTP media crate do no IO (no
//!   async runtime, HTTP, database or AWS crate among their dependencies), and the engine
//!   and the RTP media crate read no clock;
//! - `shared/` never depends on `functions/` or `media-pool/`;
//! - no crate depends on the load generator (`golos-load` is a benchmark, not production).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Crates that do IO; a dependency on any of them (or on any `aws-*` crate) is IO.
const IO_CRATES: &[&str] =
    &["tokio", "reqwest", "hyper", "axum", "rusqlite", "tokio-tungstenite", "tungstenite", "lambda_runtime"];

/// Edges that break a rule today, each with the issue that removes it. The list may only
/// shrink: an edge listed here that no longer exists fails the test too, so it is taken out.
const KNOWN_BREAKS: &[(&str, &str, &str)] = &[];

struct Dependency {
    name: String,
    default_features: bool,
    features: Vec<String>,
}

struct Crate {
    /// The crate's folder, relative to the workspace root (`shared/domain`).
    dir: String,
    /// Normal (not dev, not build) dependencies.
    dependencies: Vec<Dependency>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn crates() -> BTreeMap<String, Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata json");
    let root = root.to_string_lossy().into_owned();
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let manifest = package["manifest_path"].as_str().expect("manifest path");
            let dir = manifest.trim_start_matches(&root).trim_start_matches('/').trim_end_matches("/Cargo.toml");
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| Dependency {
                    name: d["name"].as_str().expect("name").to_owned(),
                    default_features: d["uses_default_features"].as_bool().unwrap_or(true),
                    features: d["features"]
                        .as_array()
                        .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                })
                .collect();
            (package["name"].as_str().expect("name").to_owned(), Crate { dir: dir.to_owned(), dependencies })
        })
        .collect()
}

fn is_io(dependency: &Dependency) -> bool {
    if dependency.name == "golos-egress" {
        // Pure without its `net` feature (classification, allowlists, URL checks).
        return dependency.default_features || dependency.features.iter().any(|f| f == "net");
    }
    IO_CRATES.contains(&dependency.name.as_str()) || dependency.name.starts_with("aws-")
}

#[test]
fn the_domain_the_audio_kernels_the_call_engine_and_the_rtp_media_do_no_io() {
    let crates = crates();
    for name in ["golos-domain", "golos-ports", "golos-audio", "golos-call", "golos-shard", "golos-rtp"] {
        let krate = crates.get(name).unwrap_or_else(|| panic!("{name} is in the workspace"));
        let io: Vec<&str> = krate.dependencies.iter().filter(|d| is_io(d)).map(|d| d.name.as_str()).collect();
        assert!(io.is_empty(), "{name} must do no IO but depends on {io:?}");
    }
}

#[test]
fn the_call_engine_and_the_rtp_media_read_no_clock() {
    // Time is an input of golos-call and golos-rtp: outside their tests they never ask the
    // system for it.
    for dir in ["media-pool/call/src", "media-pool/rtp/src"] {
        assert_reads_no_clock(&workspace_root().join(dir));
    }
}

fn assert_reads_no_clock(src: &Path) {
    for entry in std::fs::read_dir(src).expect("sources") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source");
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (number, line) in production.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for clock in ["Instant::now", "SystemTime::now", "Utc::now", "Local::now"] {
                assert!(!code.contains(clock), "{}:{}: {clock} in the sans-IO engine", path.display(), number + 1);
            }
        }
    }
}

#[test]
fn shared_never_depends_on_functions_or_the_media_pool() {
    let crates = crates();
    let mut breaks = Vec::new();
    for (name, krate) in crates.iter().filter(|(_, c)| c.dir.starts_with("shared/")) {
        for dependency in &krate.dependencies {
            let Some(target) = crates.get(&dependency.name) else { continue };
            if target.dir.starts_with("functions/") || target.dir.starts_with("media-pool/") {
                breaks.push((name.clone(), dependency.name.clone()));
            }
        }
    }
    for (from, to, why) in KNOWN_BREAKS {
        let position = breaks.iter().position(|(f, t)| f == from && t == to);
        let position = position.unwrap_or_else(|| panic!("{from} → {to} is gone: take it out of KNOWN_BREAKS ({why})"));
        breaks.remove(position);
    }
    assert!(breaks.is_empty(), "shared crates depending on functions/ or media-pool/: {breaks:?}");
}

#[test]
fn nothing_depends_on_the_load_generator() {
    let crates = crates();
    assert!(crates.contains_key("golos-load"), "the load generator is a crate of its own");
    let users: Vec<&String> = crates
        .iter()
        .filter(|(_, c)| c.dependencies.iter().any(|d| d.name == "golos-load"))
        .map(|(name, _)| name)
        .collect();
    assert!(users.is_empty(), "golos-load is a benchmark, yet {users:?} depend on it");
}
