//! The `golos-simulator` binary: reads a scenario file, prints its address, serves, stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// Kills the simulator if an assertion fails before the orderly SIGTERM.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_the_configured_scenario() {
    let dir = std::env::temp_dir().join(format!("golos-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("scenario.json");
    let scenario = json!({
        "openai": {
            "replies": [{"tokens": ["Hello", " there."]}],
            "latency": {"ttft_ms": 0, "token_interval_ms": 0},
            "faults": [{"requests": {"from": 1, "to": 1}, "fault": {"type": "status", "status": 503}}]
        },
        "elevenlabs": {"pacing": "as_fast_as_possible", "ttfb_ms": 0},
        "log": {"max_entries": 100, "bodies": false}
    });
    std::fs::write(&config, scenario.to_string()).unwrap();

    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_golos-simulator"))
            .args(["--config", config.to_str().unwrap(), "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base = first.trim().strip_prefix("listening on ").expect("address line").to_owned();

    let client = reqwest::Client::new();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{base}/v1/chat/completions");
    let first = client.post(&url).bearer_auth("k").json(&body).send().await.unwrap();
    assert_eq!(first.status(), 503);
    let second: Value = client.post(&url).bearer_auth("k").json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(second["choices"][0]["message"]["content"], "Hello there.");

    let audio = client
        .post(format!("{base}/v1/text-to-speech/v/stream?output_format=pcm_16000"))
        .header("xi-api-key", "k")
        .json(&json!({"text": "one two"}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(audio.len(), 2 * 200 * 32);

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    assert!(child.0.wait().unwrap().success(), "exits cleanly on SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_fails_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_golos-simulator"))
        .args(["--config", "/nonexistent/scenario.json"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read scenario"));

    let output = Command::new(env!("CARGO_BIN_EXE_golos-simulator")).arg("--print-scenario").output().unwrap();
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["openai"]["latency"]["ttft_ms"], 200);
    assert_eq!(printed["deepgram"]["transcripts"][0]["text"], "what are your opening hours");
}
