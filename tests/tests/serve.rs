//! `golos serve` as a black box: starts over the embedded backend, reports health, keeps
//! its data across restarts, stops cleanly on SIGTERM.

use golos_tests::RunningGolos;

#[test]
fn health_reports_every_dependency() {
    let golos = RunningGolos::start(&[]);
    let (status, body) = golos.get("/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["checks"]["database"], "ok");
    assert!(health["version"].is_string());
    assert!(health["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(golos.data_dir.path().join("golos.db").exists(), "the embedded database was created");
    let key = golos.data_dir.path().join("master.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).expect("master key file").permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
}

#[test]
fn sigterm_stops_with_success() {
    let golos = RunningGolos::start(&[]);
    assert_eq!(golos.get("/health").0, 200);
    let status = golos.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn unknown_paths_are_404() {
    let golos = RunningGolos::start(&[]);
    assert_eq!(golos.get("/nope").0, 404);
}

#[test]
fn reconcile_reports_no_drift_on_a_fresh_store() {
    let golos = RunningGolos::start(&[]);
    let data_dir = golos.data_dir.path().to_path_buf();
    let output = std::process::Command::new(golos_tests::golos_binary())
        .args(["reconcile", "--backend", "local", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run golos reconcile");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().next(), Some("checked 0 organisations, 0 with drift"));
}

/// `golos init-secrets` creates the platform's keys, one job each, and never replaces one
/// (a new pepper would invalidate every API key).
#[test]
fn init_secrets_creates_each_key_once() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let init = || {
        std::process::Command::new(golos_tests::golos_binary())
            .args(["init-secrets", "--backend", "local", "--data-dir"])
            .arg(data_dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run golos init-secrets")
    };
    let first = init();
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    for name in ["api-key-pepper", "call-token-key", "operator-api-key"] {
        assert!(stdout.contains(&format!("created secret {name}")), "{stdout}");
    }
    let pepper = golos_tests::read_secret(data_dir.path(), "api-key-pepper");
    let call_token_key = golos_tests::read_secret(data_dir.path(), "call-token-key");
    assert_ne!(pepper, call_token_key, "two keys, two jobs");
    let second = init();
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing was changed"), "{second:?}");
    assert_eq!(golos_tests::read_secret(data_dir.path(), "api-key-pepper"), pepper);
    // serve starts over them.
    let golos = RunningGolos::start_in(data_dir, &[]);
    assert_eq!(golos.get("/health").0, 200);
}
