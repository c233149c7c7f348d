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
