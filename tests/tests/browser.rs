//! The browser page (`GET /talk`) in headless Chromium, driven over the Chrome DevTools
//! Protocol: Chromium's fake microphone plays a WAV of espeak-ng asking "when are you open",
//! the page streams it to a café FAQ agent over `/ws/calls`, and the test reads the page's
//! `window.golos` hooks until the user's words are in the transcript, the agent's answer is
//! there too and arrived as audio, and a turn's latency row is shown. Then it hangs up.
//!
//! Chromium is Debian's `chromium` package (scripts/install-deps installs it); without it
//! the test fails, it is never skipped.

use futures::{SinkExt, StreamExt};
use golos_control::payments::{sign, SIGNATURE_HEADER};
use golos_tests::RunningGolos;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PAYMENT_SECRET: &str = "whsec_browser_test_0123456789";
const PAYMENT_SECRET_ENV: (&str, &str) = ("GOLOS_SECRET_PAYMENTS_HMAC_ACME", PAYMENT_SECRET);
/// How long the test waits for the page to reach a state (not a latency assertion).
const DEADLINE: Duration = Duration::from_secs(60);

/// Headless Chromium with a WAV file as its microphone, in its own process group so that
/// dropping it (also on a panic) kills the browser and every helper process it started.
struct Chromium {
    child: Child,
    log: Arc<Mutex<String>>,
    devtools_url: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn launch(microphone_wav: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
            ])
            // `%noloop`: the question is asked once, then the microphone is silent.
            .arg(format!("--use-file-for-fake-audio-capture={}%noloop", microphone_wav.display()))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `chromium` ({e}): install Debian's chromium package (scripts/install-deps)")
            });
        let stderr = child.stderr.take().expect("chromium stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            // Keeps draining stderr for the whole run, so Chromium never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = url_tx.send(url.trim().to_owned());
                    }
                    let mut log = log.lock().expect("log");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut chromium = Self { child, log, devtools_url: String::new(), _profile: profile };
        chromium.devtools_url = url_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("chromium printed no DevTools address; its output:\n{}", chromium.log()));
        chromium
    }

    /// The last lines Chromium wrote to stderr, for failure messages.
    fn log(&self) -> String {
        let log = self.log.lock().expect("log");
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools Protocol client over one WebSocket, talking to one page once attached.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect to Chromium's DevTools");
        Self { ws, next_id: 0, session: None }
    }

    /// Sends a command and waits for its reply (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.ws.send(Message::text(command.to_string())).await.expect("send a DevTools command");
        let reply = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let message: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
                        if message["id"] == id {
                            return message;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the DevTools connection ended: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no reply to {method} within 30 s"));
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }

    /// Evaluates JavaScript in the page as if from a user gesture; hands back its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true, "userGesture": true}),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "`{expression}` threw: {result}");
        result["result"]["value"].clone()
    }

    /// The page's `window.golos` test hooks.
    async fn hooks(&mut self) -> Value {
        let text = self.eval("JSON.stringify(window.golos)").await;
        serde_json::from_str(text.as_str().expect("a JSON string")).expect("window.golos as JSON")
    }

    /// Polls the hooks until `done` holds; fails with the page's last state and Chromium's log.
    async fn wait_for(&mut self, chromium: &Chromium, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let hooks = self.hooks().await;
            if done(&hooks) {
                return hooks;
            }
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for {what}; window.golos = {hooks:#}\nchromium's stderr (tail):\n{}",
                chromium.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A WAV of espeak-ng saying `text`, 16 kHz mono PCM16, with 1 s of silence before (the page
/// connects meanwhile) and 3 s after (the end of the utterance is heard).
fn spoken_wav(dir: &Path, text: &str) -> PathBuf {
    let raw = dir.join("espeak.wav");
    let wav = dir.join("microphone.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (scripts/install-deps)");
    assert!(status.success(), "espeak-ng failed: {status}");
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&wav)
        .args(["pad", "1", "3"])
        .status()
        .expect("sox must be installed (scripts/install-deps)");
    assert!(status.success(), "sox failed: {status}");
    wav
}

async fn post(http: &reqwest::Client, url: String, key: &str, body: &Value) -> Value {
    let response = http.post(url).header("X-API-Key", key).json(body).send().await.expect("POST");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON reply");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// An organisation with credit, its café FAQ agent (local providers only) and a call token.
async fn cafe_agent(http: &reqwest::Client, golos: &RunningGolos) -> (String, String) {
    let (base, operator) = (golos.base_url(), golos.operator_key());
    let org = post(http, format!("{base}/v1/orgs"), &operator, &json!({"name": "Café Browser", "plan": "start"})).await;
    let org = org["id"].as_str().expect("org id").to_owned();

    let payment = json!({"event": "payment.succeeded", "id": "pay_browser", "org_id": org, "amount_kopecks": 100_000})
        .to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    let response = http
        .post(format!("{base}/webhooks/payments/acme"))
        .header(SIGNATURE_HEADER, sign(PAYMENT_SECRET, now, payment.as_bytes()))
        .header("content-type", "application/json")
        .body(payment)
        .send()
        .await
        .expect("payment webhook");
    assert_eq!(response.status(), 200, "the payment is credited");

    let admin =
        post(http, format!("{base}/v1/orgs/{org}/api-keys"), &operator, &json!({"name": "owner", "role": "admin"}))
            .await;
    let admin = admin["token"].as_str().expect("admin key").to_owned();
    let agent = post(
        http,
        format!("{base}/v1/agents"),
        &admin,
        &json!({
            "name": "Café host",
            "system_prompt": "You are the host of a café.",
            "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
            "providers": {"llm": [{"kind": "canned"}], "tts": [{"kind": "espeak_ng"}], "stt": [{"kind": "pocketsphinx"}]},
            "faq": [{"questions": ["when are you open", "what time do you open"],
                     "answer": "We are open from eight in the morning to nine in the evening."}],
        }),
    )
    .await;
    let agent = agent["id"].as_str().unwrap_or_else(|| panic!("agent id in {agent}")).to_owned();
    let token = post(http, format!("{base}/v1/agents/{agent}/call-tokens"), &admin, &json!({})).await;
    let token = token["token"].as_str().unwrap_or_else(|| panic!("call token in {token}")).to_owned();
    (agent, token)
}

fn lines<'a>(hooks: &'a Value, role: &'a str) -> impl Iterator<Item = String> + 'a {
    hooks["transcript"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |line| line["role"] == role && line["final"] == true)
        .map(|line| line["text"].as_str().unwrap_or_default().to_lowercase())
}

fn said(hooks: &Value, role: &str, word: &str) -> bool {
    lines(hooks, role).any(|text| text.contains(word))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_talk_page_hears_the_microphone_and_plays_the_answer() {
    let audio_dir = tempfile::tempdir().expect("tempdir");
    let wav = spoken_wav(audio_dir.path(), "when are you open");
    let golos = RunningGolos::start(&[PAYMENT_SECRET_ENV]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let page = http.get(format!("{}/talk", golos.base_url())).send().await.expect("GET /talk");
    assert_eq!(page.status(), 200);
    let content_type = page.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/html"), "GET /talk is HTML, got {content_type:?}");

    let (agent, token) = cafe_agent(&http, &golos).await;
    let chromium = Chromium::launch(&wav);
    let mut cdp = Cdp::connect(&chromium.devtools_url).await;
    let url = format!("{}/talk#agent={agent}&token={token}", golos.base_url());
    let target = cdp.call("Target.createTarget", json!({"url": url})).await;
    let attached = cdp.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).await;
    cdp.session = Some(attached["sessionId"].as_str().expect("session id").to_owned());

    let deadline = Instant::now() + DEADLINE;
    while cdp.eval("document.readyState === 'complete' && typeof window.golos === 'object'").await != true {
        assert!(Instant::now() < deadline, "the page did not load; chromium's stderr:\n{}", chromium.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cdp.eval("document.getElementById('agent').value").await, agent.as_str(), "agent from the fragment");
    cdp.eval("document.getElementById('start').click()").await;

    let hooks = cdp
        .wait_for(&chromium, "the question, the spoken answer and a turn's latency", |h| {
            said(h, "user", "open")
                && said(h, "assistant", "eight")
                && h["audioFramesReceived"].as_u64() > Some(0)
                && h["turns"].as_array().is_some_and(|t| !t.is_empty())
        })
        .await;
    assert!(hooks["callId"].as_str().is_some_and(|id| !id.is_empty()), "{hooks:#}");
    assert_eq!(hooks["errors"], json!([]), "no errors: {hooks:#}");
    assert!(hooks["turns"][0]["turn"].is_number(), "{hooks:#}");
    // The page shows what the hooks say.
    let shown = cdp.eval("document.getElementById('transcript').textContent").await;
    assert!(shown.as_str().is_some_and(|t| t.contains("eight")), "transcript on the page: {shown}");
    let rows = cdp.eval("document.querySelectorAll('#turns tr').length").await;
    assert!(rows.as_u64() >= Some(1), "latency rows on the page: {rows}");

    // Played through the page's AudioContext, and the server's mark after it answered.
    cdp.wait_for(&chromium, "the answer to be played and its mark answered", |h| {
        h["audioSamplesPlayed"].as_u64() > Some(0) && h["marksAnswered"].as_u64() >= Some(1)
    })
    .await;

    cdp.eval("document.getElementById('hangup').click()").await;
    let hooks = cdp.wait_for(&chromium, "the call to end", |h| !h["ended"].is_null()).await;
    assert_eq!(hooks["ended"], "hangup", "{hooks:#}");
    assert_eq!(hooks["errors"], json!([]), "no errors: {hooks:#}");
}
