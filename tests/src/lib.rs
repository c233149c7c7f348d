//! Helpers to run the real `golos` binary as a black box: start it on port 0 in a fresh
//! data directory, find its address from its first line of output, talk HTTP to it.

pub mod sip;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `golos` binary built next to this test binary (`target/<profile>/golos`).
pub fn golos_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("golos");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build --workspace)", bin.display());
    bin
}

/// A running `golos serve`, killed on drop.
#[derive(Debug)]
pub struct RunningGolos {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
}

impl RunningGolos {
    /// Starts `golos serve --listen 127.0.0.1:0` over the embedded backend.
    pub fn start(extra_env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), extra_env)
    }

    /// Starts over an existing data directory (a restart, or secrets put there beforehand).
    pub fn start_in(data_dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_backend(data_dir, "local", extra_env)
    }

    /// Starts `golos serve --backend aws`, configured by `extra_env` (`GOLOS_AWS_*`, …).
    pub fn start_aws(extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_backend(tempfile::tempdir().expect("tempdir"), "aws", extra_env)
    }

    fn start_with_backend(data_dir: tempfile::TempDir, backend: &str, extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(golos_binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--backend", backend, "--data-dir"])
            .arg(data_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn golos");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("golos listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from golos: {line:?}"))
            .parse()
            .expect("socket address");
        Self { child, addr, data_dir }
    }

    /// A plain HTTP/1.1 GET; returns the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        get_from(self.addr, path, "")
    }

    /// A GET as the operator (`Authorization: Bearer <operator key>`, as Prometheus scrapes).
    pub fn get_as_operator(&self, path: &str) -> (u16, String) {
        get_from(self.addr, path, &format!("Authorization: Bearer {}\r\n", self.operator_key()))
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operator API key golos created in its data directory on first start.
    pub fn operator_key(&self) -> String {
        read_secret(self.data_dir.path(), "operator-api-key")
    }

    /// Kills the process with SIGKILL (no shutdown code runs: a crash) and hands back the
    /// data directory for a restart.
    pub fn crash(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        self.child.wait().expect("wait")
    }
}

impl Drop for RunningGolos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET to `addr` with `extra_headers` (each ending in CRLF); returns the
/// status code and the body.
pub fn get_from(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A secret golos keeps in its data directory (`<data>/secrets/<name>`).
pub fn read_secret(data_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(data_dir.join("secrets").join(name)).expect("secret file").trim().to_owned()
}

/// A deployment on the moto server of `GOLOS_MOTO_ENDPOINT`: its own table, queues, key and
/// secrets prefix, and the environment `golos --backend aws` reads them from.
#[derive(Debug)]
pub struct AwsDeployment {
    pub env: Vec<(String, String)>,
    pub platform: golos_aws::AwsPlatform,
}

impl AwsDeployment {
    /// Provisions the table, queues and key (named after `name` and a random suffix).
    pub async fn provision(name: &str) -> Self {
        let table = golos_testkit::moto::unique_name(name);
        let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
        let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
        platform.provision().await.expect("provision the table and key");
        let mut env = platform.config().to_env();
        env.extend(
            [("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Self { env, platform }
    }

    /// The environment as `RunningGolos::start_aws` takes it.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Runs `golos init-secrets --backend aws`, as an operator does once, and answers the
    /// operator key it created.
    pub async fn init_secrets(&self) -> String {
        let output = Command::new(golos_binary())
            .args(["init-secrets", "--backend", "aws"])
            .envs(self.env())
            .env("RUST_LOG", "warn")
            .output()
            .expect("golos init-secrets");
        assert!(output.status.success(), "{output:?}");
        self.platform.secrets().get("operator-api-key").await.expect("operator key").expose().to_owned()
    }
}

/// `text` in a caller's voice (espeak-ng), converted by sox to raw mono audio in the format
/// `sox_format` names (e.g. `["-r", "8000", "-e", "a-law"]`).
pub fn speak_raw(text: &str, sox_format: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us+f3", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (scripts/install-deps)");
    assert!(status.success());
    let output = Command::new("sox")
        .arg(&wav)
        .args(["-c", "1"])
        .args(sox_format)
        .args(["-t", "raw", "-"])
        .output()
        .expect("sox must be installed (scripts/install-deps)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// `golos-simulator` (the provider simulators), killed on drop.
#[derive(Debug)]
pub struct Simulator {
    child: std::process::Child,
    pub addr: String,
}

impl Simulator {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With more arguments (`--config scenario.json`, `--host 127.0.0.2`).
    pub fn start_with(args: &[&str]) -> Self {
        use std::io::BufRead;
        let golos = golos_binary();
        let binary = golos.with_file_name("golos-simulator");
        let mut child = Command::new(&binary)
            .args(["--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} ({e}): build the workspace first", binary.display()));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on http://").expect("the simulator's first line").to_owned();
        Self { child, addr }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// An agent's `providers` on this simulator: its OpenAI-compatible LLM and Deepgram STT
    /// (authenticated with the org's credential `credential`), espeak-ng TTS.
    pub fn agent_providers(&self, credential: &str) -> serde_json::Value {
        serde_json::json!({
            "llm": [{"kind": "openai_compatible", "endpoint": format!("http://{}/v1", self.addr), "credentials_secret": credential}],
            "tts": [{"kind": "espeak_ng"}],
            "stt": [{"kind": "deepgram", "endpoint": self.ws_url(), "credentials_secret": credential}]
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credits `org_id` with `kopecks` through the signed payment webhook of the `test` provider
/// (golos started with `GOLOS_SECRET_PAYMENTS_HMAC_TEST` = `secret`), as a payment provider
/// would; the payment id is per org, so a second call is a replay.
pub async fn credit_by_test_payment(http: &reqwest::Client, base: &str, secret: &str, org_id: &str, kopecks: i64) {
    let body = serde_json::json!({"event": "payment.succeeded", "id": format!("p-{org_id}"), "org_id": org_id, "amount_kopecks": kopecks})
        .to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let signature = golos_control::payments::sign(secret, i64::try_from(now).expect("time"), body.as_bytes());
    let response = http
        .post(format!("{base}/webhooks/payments/test"))
        .header("Content-Type", "application/json")
        .header(golos_control::payments::SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .expect("the payment webhook answers");
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
}

/// The café FAQ agent most suites call: an English host with a greeting, two FAQ answers, the
/// canned LLM, espeak-ng TTS and `stt` as its recognisers (pocketsphinx's grammar comes from
/// the FAQ's questions).
pub fn cafe_agent(max_concurrent_calls: u32, stt: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "name": "Café host",
        "system_prompt": "You are the host of a café.",
        "greeting": "Hello, how can I help?",
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "faq": [
            {"questions": ["when are you open", "what time do you open", "what are your opening hours"], "answer": "We are open from eight in the morning."},
            {"questions": ["do you have wifi"], "answer": "Yes, we have free wifi."}
        ],
        "limits": {"max_concurrent_calls": max_concurrent_calls, "max_call_duration_secs": 600, "silence_timeout_secs": 60},
        "providers": {"llm": [{"kind": "canned"}], "tts": [{"kind": "espeak_ng"}], "stt": stt}
    })
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl ReceivedWebhook {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON webhook")
    }

    /// Checks the delivery's signature with the Standard Webhooks reference implementation
    /// (against the wall clock, as a customer's receiver would).
    pub fn verify(&self, secret: &str) {
        standardwebhooks::Webhook::new(secret)
            .expect("a whsec_ secret")
            .verify(&self.body, &self.headers)
            .unwrap_or_else(|e| panic!("a delivery with a bad signature ({e}): {:?}", self.headers));
    }
}

/// A customer's webhook receiver on loopback (golos must allow 127.0.0.1 in
/// `GOLOS_EGRESS_ALLOW`): answers 204 and keeps every request.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<ReceivedWebhook>>>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let received: std::sync::Arc<std::sync::Mutex<Vec<ReceivedWebhook>>> = std::sync::Arc::default();
        let kept = std::sync::Arc::clone(&received);
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let kept = std::sync::Arc::clone(&kept);
            async move {
                kept.lock().expect("received").push(ReceivedWebhook { headers, body: body.to_vec() });
                axum::http::StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
        Self { url: format!("http://{addr}/golos-webhooks"), received }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.received.lock().expect("received").clone()
    }

    /// The events received, each `webhook-id` once (a receiver drops repeats), in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut seen = std::collections::BTreeSet::new();
        self.received()
            .iter()
            .filter(|r| seen.insert(r.headers.get("webhook-id").map(|v| v.as_bytes().to_vec())))
            .map(ReceivedWebhook::json)
            .collect()
    }

    /// Polls the events until `done` holds for them (within 30 s); returns them.
    pub async fn until(&self, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; received: {events:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
