//! `golos demo`: a real call, end to end, on this machine.
//!
//! It starts the embedded platform (`golos serve` as a child process on a free port, data in a
//! temporary folder), sets it up over the public API the way a customer would (an org, an
//! admin key, a signed top-up payment, a café FAQ agent, a call token), then places a call
//! over the WebSocket transport: a caller voice made by espeak-ng asks two questions, the
//! agent hears them (pocketsphinx with the FAQ grammar), answers from its FAQ and speaks
//! (espeak-ng). It prints the live transcript, the per-turn latency breakdown and the cost
//! debited, and writes both sides of the call to a WAV file. With `OPENAI_API_KEY`,
//! `DEEPGRAM_API_KEY` or `ELEVENLABS_API_KEY` set, those cloud tiers go first in the chains.

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use golos_providers::{TtsProvider, TtsRequest};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const RATE: u32 = 16_000;
const FRAME: usize = 320;
const PAYMENT_PROVIDER: &str = "demo";
const TOP_UP_KOPECKS: i64 = 50_000;

/// The caller's two questions, and the words each answer must contain.
pub const QUESTIONS: [(&str, &str); 2] =
    [("When are you open?", "eight in the morning"), ("Do you have wifi?", "free wifi")];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where to write the call's audio (caller and agent mixed, 16 kHz mono).
    #[arg(long, default_value = "golos-demo-call.wav")]
    pub wav: PathBuf,
    /// Keep the platform's data here instead of a temporary folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The platform, as a child process killed on drop.
struct Platform {
    child: Child,
    base: String,
}

impl Drop for Platform {
    fn drop(&mut self) {
        // SIGTERM first: the platform drains and exits 0; kill only if it does not.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_local_voice_tools() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for program in ["espeak-ng", "pocketsphinx_continuous"] {
        let found = Command::new(program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            missing.push(program);
        }
    }
    if !std::path::Path::new(golos_providers::pocketsphinx::DEFAULT_MODEL_DIR).is_dir() {
        missing.push("pocketsphinx-en-us (the English model)");
    }
    if !missing.is_empty() {
        bail!(
            "the demo's local voice needs {}: run ./scripts/demo, which installs them (apt: espeak-ng sox pocketsphinx pocketsphinx-en-us)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn start_platform(data_dir: &std::path::Path, payment_secret: &str) -> anyhow::Result<Platform> {
    let exe = std::env::current_exe().context("finding the golos binary")?;
    let mut command = Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--backend", "local", "--data-dir"])
        .arg(data_dir)
        .env("GOLOS_SECRET_PAYMENTS_HMAC_DEMO", payment_secret)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Cloud keys, if any, become the platform's own provider keys (`provider-<name>`), which
    // tiers at the provider's default endpoint use when they name no credential of the org.
    for (env, provider) in CLOUD_KEYS {
        if let Ok(value) = std::env::var(env) {
            command.env(format!("GOLOS_SECRET_PROVIDER_{}", provider.to_ascii_uppercase()), value);
        }
    }
    let mut child = command.spawn().context("starting golos serve")?;
    let stdout = child.stdout.take().context("golos serve's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("reading golos serve's first line")?;
    let Some(addr) = line.trim().strip_prefix("golos listening on http://") else {
        let _ = child.kill();
        bail!("golos serve did not start: {line:?}");
    };
    Ok(Platform { base: format!("http://{addr}"), child })
}

const CLOUD_KEYS: [(&str, &str); 3] =
    [("OPENAI_API_KEY", "openai"), ("DEEPGRAM_API_KEY", "deepgram"), ("ELEVENLABS_API_KEY", "elevenlabs")];

fn has_key(env: &str) -> bool {
    std::env::var(env).is_ok_and(|v| !v.trim().is_empty())
}

/// The café FAQ agent. Local tiers always close the chains; cloud tiers go first when their
/// keys are in the environment.
pub fn cafe_agent() -> Value {
    let mut llm = vec![];
    let mut tts = vec![];
    let mut stt = vec![];
    if has_key("OPENAI_API_KEY") {
        llm.push(json!({"kind": "openai"}));
    }
    if has_key("ELEVENLABS_API_KEY") {
        tts.push(json!({"kind": "elevenlabs"}));
    }
    if has_key("DEEPGRAM_API_KEY") {
        stt.push(json!({"kind": "deepgram"}));
    }
    llm.push(json!({"kind": "canned"}));
    tts.push(json!({"kind": "espeak_ng"}));
    stt.push(json!({"kind": "pocketsphinx"}));
    json!({
        "name": "Café Romashka host",
        "system_prompt": "You are the friendly host of Café Romashka. Answer in one or two short sentences. We are open every day from eight in the morning to nine in the evening; we have free wifi; we are at twelve Garden Street.",
        "greeting": "Hello, Café Romashka. How can I help?",
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "faq": [
            {"questions": ["when are you open", "what are your opening hours", "what time do you open"],
             "answer": "We are open every day from eight in the morning to nine in the evening."},
            {"questions": ["do you have wifi", "is there wifi"],
             "answer": "Yes, we have free wifi. The password is on your receipt."},
            {"questions": ["where are you", "what is your address"],
             "answer": "We are at twelve Garden Street, next to the park."}
        ],
        "providers": {"llm": llm, "tts": tts, "stt": stt}
    })
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str, key: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}{path}", self.base)).header("X-API-Key", key).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(body)
    }
}

/// Runs the demo; returns an error (exit 1) if the call did not go as scripted.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Process spawning and waiting are blocking calls: they go to the blocking pool.
    tokio::task::spawn_blocking(require_local_voice_tools).await??;
    let temp = tempfile::tempdir().context("a temporary data folder")?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let payment_secret =
        golos_control::keys::random_secret().map_err(|e| anyhow::anyhow!("no randomness for a payment secret: {e}"))?;
    println!("▶ starting golos (embedded: SQLite, local keys and secrets in {})", data_dir.display());
    let platform = {
        let (dir, secret) = (data_dir.clone(), payment_secret.clone());
        tokio::task::spawn_blocking(move || start_platform(&dir, &secret)).await??
    };
    let api = Api { http: reqwest::Client::new(), base: platform.base.clone() };
    let operator = read_operator_key(&data_dir).await?;

    let org = api.post("/v1/orgs", &operator, &json!({"name": "Café Romashka"})).await?;
    let org_id = org["id"].as_str().context("org id")?.to_owned();
    let key =
        api.post(&format!("/v1/orgs/{org_id}/api-keys"), &operator, &json!({"name": "demo", "role": "admin"})).await?;
    let key = key["token"].as_str().context("api key")?.to_owned();
    top_up(&api, &payment_secret, &org_id).await?;
    let balance_before = balance(&api, &key).await?;
    let agent = api.post("/v1/agents", &key, &cafe_agent()).await?;
    let agent_id = agent["id"].as_str().context("agent id")?.to_owned();
    let token = api.post(&format!("/v1/agents/{agent_id}/call-tokens"), &key, &json!({})).await?;
    let token = token["token"].as_str().context("call token")?.to_owned();
    println!("▶ org {org_id}: balance {}, agent {agent_id} (café FAQ)", roubles(balance_before));

    let questions = caller_voice().await?;
    let ws_url = format!("{}/ws/calls", platform.base.replacen("http://", "ws://", 1));
    let call = place_call(&ws_url, &agent_id, &token, &questions).await?;

    tokio::fs::write(&args.wav, golos_providers::wav::encode(RATE, &call.mix))
        .await
        .with_context(|| format!("writing {}", args.wav.display()))?;
    print_turns(&call.turns);
    let record = wait_for_billing(&api, &key, &call.call_id).await?;
    let balance_after = balance(&api, &key).await?;
    println!(
        "▶ call {}: {} s, ended by {}, cost {} (balance {} → {})",
        call.call_id,
        record["duration_secs"],
        record["end_reason"].as_str().unwrap_or("?"),
        roubles(record["cost_kopecks"].as_i64().unwrap_or_default()),
        roubles(balance_before),
        roubles(balance_after),
    );
    println!("▶ the call's audio: {}", args.wav.display());
    // Stopping it waits for the drain (a blocking wait).
    tokio::task::spawn_blocking(move || drop(platform)).await?;
    check_answers(&call.transcript)
}

async fn read_operator_key(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("secrets").join("operator-api-key");
    let text = tokio::fs::read_to_string(&path).await.with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_owned())
}

async fn top_up(api: &Api, secret: &str, org_id: &str) -> anyhow::Result<()> {
    let body = json!({"event": "payment.succeeded", "id": "demo-top-up-1", "org_id": org_id, "amount_kopecks": TOP_UP_KOPECKS})
        .to_string();
    let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs())?;
    let signature = golos_control::payments::sign(secret, now, body.as_bytes());
    let response = api
        .http
        .post(format!("{}/webhooks/payments/{PAYMENT_PROVIDER}", api.base))
        .header("Content-Type", "application/json")
        .header(golos_control::payments::SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the top-up payment was refused: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn balance(api: &Api, key: &str) -> anyhow::Result<i64> {
    api.get("/v1/balance", key).await?["balance_kopecks"].as_i64().context("balance_kopecks")
}

fn roubles(kopecks: i64) -> String {
    golos_domain::Kopecks::new(kopecks).to_string()
}

/// The caller's questions, spoken by espeak-ng in a different voice from the agent's.
async fn caller_voice() -> anyhow::Result<Vec<Vec<i16>>> {
    let voice = golos_providers::espeak::EspeakTts::new(Some("en-us+f3".into()));
    let mut spoken = Vec::new();
    for (question, _) in QUESTIONS {
        let request = TtsRequest { text: question.to_owned(), language: "en-US".into(), sample_rate: RATE };
        let mut stream = voice.synthesize(&request).await.context("espeak-ng could not speak the caller's question")?;
        let mut samples = Vec::new();
        while let Some(chunk) = stream.next().await {
            samples.extend(chunk?.samples);
        }
        spoken.push(samples);
    }
    Ok(spoken)
}

#[derive(Debug, Default)]
struct CallResult {
    call_id: String,
    transcript: Vec<(String, String)>,
    turns: Vec<Value>,
    /// Caller and agent, mixed on one timeline.
    mix: Vec<i16>,
}

fn mix_into(mix: &mut Vec<i16>, at: usize, samples: &[i16]) {
    if mix.len() < at + samples.len() {
        mix.resize(at + samples.len(), 0);
    }
    for (out, s) in mix[at..].iter_mut().zip(samples) {
        *out = out.saturating_add(*s);
    }
}

/// The caller: 20 ms frames on an absolute schedule (silence between questions, as a phone
/// line sends), each question once the agent has finished speaking.
async fn place_call(url: &str, agent_id: &str, token: &str, questions: &[Vec<i16>]) -> anyhow::Result<CallResult> {
    let (socket, _) = tokio_tungstenite::connect_async(url).await.context("connecting to the call endpoint")?;
    let (mut tx, mut rx) = socket.split();
    let start = json!({"type": "start", "agent_id": agent_id, "token": token, "sample_rate": RATE});
    tx.send(Message::Text(start.to_string().into())).await?;
    let mut result = CallResult::default();
    let began = Instant::now();
    let sample_at = |t: Instant| (t - began).as_millis() as usize * (RATE as usize / 1_000);
    let mut next_frame = Instant::now();
    let mut speaking: Option<(usize, usize)> = None; // (question, offset)
    let mut asked = 0usize;
    let mut agent_cursor = 0usize;
    let mut agent_speaking = true; // the greeting comes first
    let mut quiet_since: Option<Instant> = Some(Instant::now());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut hung_up = false;
    println!("▶ calling {url}");
    loop {
        if Instant::now() > deadline {
            bail!("the call did not finish within 90 s");
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_frame) => {
                next_frame += Duration::from_millis(20);
                let mut frame = [0i16; FRAME];
                if let Some((q, offset)) = speaking {
                    let spoken = &questions[q];
                    let end = (offset + FRAME).min(spoken.len());
                    frame[..end - offset].copy_from_slice(&spoken[offset..end]);
                    speaking = if end < spoken.len() { Some((q, end)) } else { None };
                    mix_into(&mut result.mix, sample_at(Instant::now()), &frame);
                }
                let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
                if !hung_up {
                    tx.send(Message::Binary(bytes.into())).await.context("sending caller audio")?;
                }
                // A question a second after the agent went quiet; hang up after the last answer.
                if speaking.is_none() && !agent_speaking && !hung_up {
                    if let Some(since) = quiet_since {
                        if since.elapsed() >= Duration::from_secs(1) {
                            if asked < questions.len() && !result.call_id.is_empty() {
                                println!("  caller  ▸ {}", QUESTIONS[asked].0);
                                speaking = Some((asked, 0));
                                asked += 1;
                                quiet_since = None;
                            } else if asked == questions.len() && answered(&result.transcript) >= questions.len() {
                                tx.send(Message::Text(json!({"type": "hangup"}).to_string().into())).await?;
                                hung_up = true;
                            }
                        }
                    }
                }
            }
            message = rx.next() => {
                let Some(message) = message else { break };
                match message.context("reading from the call")? {
                    Message::Binary(audio) => {
                        let samples: Vec<i16> = audio.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                        agent_cursor = agent_cursor.max(sample_at(Instant::now()));
                        mix_into(&mut result.mix, agent_cursor, &samples);
                        agent_cursor += samples.len();
                    }
                    Message::Text(text) => {
                        let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        match event["type"].as_str().unwrap_or_default() {
                            "started" => result.call_id = event["call_id"].as_str().unwrap_or_default().to_owned(),
                            "transcript" => {
                                let role = event["role"].as_str().unwrap_or_default().to_owned();
                                let text = event["text"].as_str().unwrap_or_default().to_owned();
                                let who = if role == "user" { "heard  " } else { "agent  " };
                                println!("  {who} ▸ {text}");
                                result.transcript.push((role, text));
                            }
                            "state" => {
                                agent_speaking = event["state"] != "listening";
                                if !agent_speaking {
                                    quiet_since = Some(Instant::now());
                                }
                            }
                            "turn_metrics" => result.turns.push(event),
                            "mark" => {
                                tx.send(Message::Text(json!({"type": "mark", "name": event["name"]}).to_string().into())).await?;
                            }
                            "error" => println!("  error   ▸ {} {}", event["code"], event["message"]),
                            "ended" => {
                                println!("▶ call ended: {}", event["reason"].as_str().unwrap_or("?"));
                                break;
                            }
                            _ => {}
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    if result.call_id.is_empty() {
        bail!("the call was not started");
    }
    Ok(result)
}

/// Caller lines that the agent has answered.
fn answered(transcript: &[(String, String)]) -> usize {
    transcript.windows(2).filter(|pair| pair[0].0 == "user" && pair[1].0 == "assistant").count()
}

fn print_turns(turns: &[Value]) {
    println!("▶ per-turn latency (ms): end of speech→transcript, LLM first token, TTS first audio, transcript→first audio out, silence heard, added by golos");
    println!(
        "  {:>4} {:>8} {:>8} {:>8} {:>10} {:>9} {:>7}",
        "turn", "eou", "ttft", "tts", "audio out", "silence", "added"
    );
    let cell = |v: &Value| v.as_f64().map_or_else(|| "–".to_owned(), |ms| format!("{ms:.1}"));
    for t in turns {
        println!(
            "  {:>4} {:>8} {:>8} {:>8} {:>10} {:>9} {:>7}",
            t["turn"],
            cell(&t["end_of_utterance_ms"]),
            cell(&t["ttft_ms"]),
            cell(&t["tts_first_audio_ms"]),
            cell(&t["first_audio_out_ms"]),
            cell(&t["heard_silence_ms"]),
            cell(&t["added_ms"]),
        );
    }
}

/// The call's record once billing has processed `call.ended`.
async fn wait_for_billing(api: &Api, key: &str, call_id: &str) -> anyhow::Result<Value> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(record) = api.get(&format!("/v1/calls/{call_id}"), key).await {
            if record["status"] != "in_progress" && record["cost_kopecks"].is_i64() {
                return Ok(record);
            }
        }
        if Instant::now() > until {
            bail!("billing did not record call {call_id} within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check_answers(transcript: &[(String, String)]) -> anyhow::Result<()> {
    let answers: Vec<&str> =
        transcript.iter().filter(|(role, _)| role == "assistant").map(|(_, text)| text.as_str()).collect();
    for (question, expected) in QUESTIONS {
        if !answers.iter().any(|a| a.to_lowercase().contains(expected)) {
            bail!("the agent never answered {question:?} (expected {expected:?} in its answers: {answers:?})");
        }
    }
    println!("▶ both questions were heard and answered");
    Ok(())
}
