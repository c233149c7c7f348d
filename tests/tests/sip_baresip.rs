//! A real UA calls golos: baresip (Debian `baresip-core`, 1.0.0) run headless with a config
//! of its own, driven through its `ctrl_tcp` module (netstring-framed JSON commands; its
//! responses and events come back on the same socket). Its audio source is a WAV espeak-ng
//! made (`aufile`: the caller asks "when are you open"), what it hears is dumped to WAV
//! files (`sndfile`, the decoded received audio), G.711 only, no audio device.
//!
//! The café FAQ agent (pocketsphinx STT, canned answers, espeak-ng TTS) answers; the test
//! waits until pocketsphinx, the STT golos itself uses, recognises the answer in what baresip
//! recorded, keys `14#` (`sndcode`, RFC 4733 events), waits for the agent's reply to the keys
//! the same way and hangs up; then checks the whole recording and the call record (API).
//!
//! A second agent (the OpenAI simulator scripted to call `transfer_call`) transfers the call:
//! baresip follows golos's REFER and dials the target, a second account of the same baresip
//! (the Refer-To host is baresip's Contact), which answers; its NOTIFY 200 makes golos hang up.

use golos_tests::sip::{free_sip_port, SipGolos};
use golos_tests::Simulator;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The café's answer to "when are you open" (`Operator::phone_line`).
const ANSWER: &str = "we are open from eight in the morning";
/// The first sentence of the canned LLM's fallback, as pocketsphinx's dictionary spells it.
const REPLY_TO_KEYS: &str = "sorry i can't answer that right now";
/// Where Debian's `pocketsphinx-en-us` puts the model golos's pocketsphinx tier uses.
const MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";
/// The canned LLM's fallback, its answer to the keyed digits.
const FALLBACK: &str = "Sorry, I can't answer that right now. Please call again later.";

/// A free TCP port on 127.0.0.1 (baresip's control socket).
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `text` spoken by espeak-ng as an 8 kHz mono 16-bit WAV (what `aufile` takes), after
/// `lead` seconds of silence and followed by `tail` seconds of it: `aufile` ends the call's
/// audio at the end of its file.
fn caller_wav(dir: &Path, text: &str, lead: f32, tail: f32) -> PathBuf {
    let spoken = dir.join("spoken.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us+f3", "-w"])
        .arg(&spoken)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (scripts/install-deps)");
    assert!(status.success());
    let wav = dir.join("caller.wav");
    let output = Command::new("sox")
        .arg(&spoken)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&wav)
        .args(["pad", &lead.to_string(), &tail.to_string()])
        .output()
        .expect("sox must be installed (scripts/install-deps)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    wav
}

/// A process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless baresip with its own config directory, killed on drop.
struct Baresip {
    child: Killed,
    dir: tempfile::TempDir,
    sip_port: u16,
    control: TcpStream,
    /// Bytes read from the control socket and not yet parsed.
    pending: Vec<u8>,
    /// Events read while waiting for a command's response.
    events: VecDeque<Value>,
    token: u64,
}

impl Baresip {
    /// Starts baresip on 127.0.0.1 with `accounts` (lines of its `accounts` file) and `wav`
    /// as every call's audio source; connects to its control socket. A port found free may be
    /// taken by a parallel test before baresip binds it: then it starts again on new ones.
    async fn start(accounts: &[&str], wav: &Path) -> Self {
        let mut attempts = 0;
        loop {
            match Self::try_start(accounts, wav).await {
                Ok(baresip) => return baresip,
                Err(log) if log.contains("Address already in use") && attempts < 3 => attempts += 1,
                Err(log) => panic!("baresip did not start:\n{log}"),
            }
        }
    }

    /// One start; baresip's output if it exits or does not listen within 10 s.
    async fn try_start(accounts: &[&str], wav: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("recordings")).unwrap();
        let control_port = free_tcp_port();
        let sip_port = free_sip_port();
        // Keys as baresip 1.0.0 names them (/usr/share/doc/baresip-core/examples/config);
        // sndfile's directory is `snd_path`. No audio player: sndfile's decode filter still
        // sees every received frame.
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             call_max_calls 4\n\
             audio_source aufile,{wav}\n\
             rtp_ports 30000-39999\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{control_port}\n\
             snd_path {recordings}\n\
             statmode_default off\n",
            wav = wav.display(),
            recordings = dir.path().join("recordings").display(),
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(dir.path().join("accounts"), accounts.join("\n") + "\n").unwrap();
        let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let mut child = Killed(
            Command::new("baresip")
                .arg("-f")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("baresip must be installed (scripts/install-deps)"),
        );
        let until = Instant::now() + Duration::from_secs(10);
        let control = loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", control_port)).await {
                break stream;
            }
            let exited = child.0.try_wait().unwrap();
            if exited.is_some() || Instant::now() >= until {
                let log = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
                return Err(format!("{exited:?}\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Self { child, dir, sip_port, control, pending: Vec::new(), events: VecDeque::new(), token: 0 })
    }

    /// baresip's output so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// The next message from the control socket (a response or an event), by `until`.
    async fn message(&mut self, until: Instant) -> Value {
        loop {
            // A netstring: `<length>:<json>,`.
            if let Some(colon) = self.pending.iter().position(|&b| b == b':') {
                let length: usize = std::str::from_utf8(&self.pending[..colon]).unwrap().parse().expect("a netstring");
                if self.pending.len() > colon + length {
                    let message = serde_json::from_slice(&self.pending[colon + 1..=colon + length]).expect("JSON");
                    assert_eq!(self.pending[colon + 1 + length], b',', "a netstring ends with a comma");
                    self.pending.drain(..colon + length + 2);
                    return message;
                }
            }
            let mut buf = [0u8; 4096];
            let left = until.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, self.control.read(&mut buf)).await;
            let read = read.unwrap_or_else(|_| panic!("baresip said nothing in time:\n{}", self.log()));
            let len = read.expect("baresip's control socket");
            assert!(len > 0, "baresip closed its control socket:\n{}", self.log());
            self.pending.extend_from_slice(&buf[..len]);
        }
    }

    /// Runs a command (`/help` lists them; in-call ones appear during a call); its response.
    async fn command(&mut self, command: &str, params: &str) -> Value {
        self.token += 1;
        let token = self.token.to_string();
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let framed = format!("{}:{body},", body.len());
        self.control.write_all(framed.as_bytes()).await.expect("baresip's control socket");
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let message = self.message(until).await;
            if message["response"] == true && message["token"] == token.as_str() {
                assert_eq!(message["ok"], true, "{command} {params}: {message}\n{}", self.log());
                return message;
            }
            self.events.push_back(message);
        }
    }

    /// Waits for an event of `kind` (`CALL_ESTABLISHED`, `CALL_CLOSED`, `TRANSFER`, ...) and
    /// answers it; events before it are passed over.
    async fn event(&mut self, kind: &str, within: Duration) -> Value {
        self.event_where(kind, within, |_| true).await
    }

    /// Waits for an event of `kind` that `wanted` picks.
    async fn event_where(&mut self, kind: &str, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + within;
        loop {
            let message = match self.events.pop_front() {
                Some(message) => message,
                None => self.message(until).await,
            };
            if message["event"] == true && message["type"] == kind && wanted(&message) {
                return message;
            }
        }
    }

    /// `sndfile`'s dump of the decoded audio received on the (first) call, once it exists.
    fn dump(&self) -> Option<PathBuf> {
        let dumps = std::fs::read_dir(self.dir.path().join("recordings")).unwrap();
        let mut decoded: Vec<PathBuf> = dumps
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        decoded.sort();
        decoded.into_iter().next()
    }

    /// The received audio dumped so far (it is written as the call goes on): 8 kHz 16-bit
    /// mono samples.
    fn heard(&self) -> Vec<i16> {
        let Some(bytes) = self.dump().and_then(|path| std::fs::read(path).ok()) else { return Vec::new() };
        // The samples follow the `data` chunk's header; its length is written only at close.
        let Some(data) = bytes.windows(4).position(|w| w == b"data") else { return Vec::new() };
        bytes.get(data + 8..).unwrap_or_default().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// Waits until baresip has heard `phrase`: golos sends RTP only while its agent speaks,
    /// so the dump grows in talkspurts; after each (a second without growth) what it holds so
    /// far is recognised. Answers what was recognised.
    async fn hear(&self, phrase: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        let (mut length, mut grew, mut recognised) = (0, Instant::now(), 0);
        loop {
            let samples = self.heard();
            if samples.len() > length {
                (length, grew) = (samples.len(), Instant::now());
            } else if length > recognised && grew.elapsed() >= Duration::from_secs(1) {
                recognised = length;
                let heard = recognise(&samples);
                if heard.contains(phrase) {
                    return heard;
                }
            }
            assert!(
                Instant::now() < until,
                "baresip did not hear {phrase:?} in {} s of audio, only {:?}:\n{}",
                length / 8000,
                recognise(&samples),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks baresip to quit and waits for it (sndfile completes its WAV headers on the way).
    async fn quit(mut self) -> Self {
        self.command("quit", "").await;
        let until = Instant::now() + Duration::from_secs(10);
        while self.child.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < until, "baresip did not quit:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self
    }
}

/// How many 20 ms frames of 8 kHz `samples` are louder than -36 dBFS (speech, not silence).
fn loud_frames(samples: &[i16]) -> usize {
    samples
        .chunks_exact(160)
        .filter(|frame| (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 160.0).sqrt() > 500.0)
        .count()
}

/// The phrases pocketsphinx listens for in what baresip heard: the café's greeting, its
/// answer and its fallback (in two sentences), and distractors a wrong recording would match.
const PHRASES: &[&str] = &[
    "hello how can i help",
    ANSWER,
    REPLY_TO_KEYS,
    "please call again later",
    "yes we have free wifi",
    "we are closed on sunday",
    "goodbye",
];

/// What pocketsphinx (the recogniser of golos's local STT tier, run the way golos runs it:
/// a JSGF grammar of the phrases it may hear, 16 kHz raw audio on stdin) hears in 8 kHz
/// `samples`.
///
/// The audio goes in twice, a second of silence apart, and the second pass is what counts:
/// pocketsphinx's live cepstral mean starts from its wideband model's prior and only adapts
/// during the first utterance, which telephone-band audio (a single utterance here: golos
/// sends RTP only while it speaks, so the dump has no pauses) leaves unmatched.
fn recognise(samples: &[i16]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let grammar = dir.path().join("heard.jsgf");
    let rule =
        format!("#JSGF V1.0;\ngrammar heard;\n<phrase> = {};\npublic <talk> = <phrase>+;\n", PHRASES.join(" | "));
    std::fs::write(&grammar, rule).unwrap();
    let narrow = dir.path().join("heard.raw");
    std::fs::write(&narrow, samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let raw = Command::new("sox")
        .args(["-t", "raw", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&narrow)
        .args(["-r", "16000", "-t", "raw", "-", "pad", "0", "1"])
        .output()
        .expect("sox");
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let model = Path::new(MODEL_DIR);
    let mut child = Command::new("pocketsphinx_continuous")
        .args(["-infile", "/dev/stdin", "-jsgf"])
        .arg(&grammar)
        .arg("-hmm")
        .arg(model.join("en-us"))
        .arg("-dict")
        .arg(model.join("cmudict-en-us.dict"))
        .args(["-samprate", "16000", "-logfn", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pocketsphinx must be installed (scripts/install-deps)");
    let mut stdin = child.stdin.take().unwrap();
    let audio = [raw.stdout.as_slice(), raw.stdout.as_slice()].concat();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &audio));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let heard = String::from_utf8_lossy(&output.stdout);
    heard.lines().rfind(|line| !line.trim().is_empty()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_the_cafe_hears_its_answer_keys_digits_and_hangs_up() {
    let golos = SipGolos::start(&[]);
    let key = golos.operator.phone_line().await.key;
    let audio = tempfile::tempdir().unwrap();
    // The question comes after the greeting; the silence after it outlasts the call.
    let wav = caller_wav(audio.path(), "when are you open", 2.5, 30.0);
    let mut baresip = Baresip::start(&["<sip:caller@127.0.0.1>;regint=0"], &wav).await;

    // The trunk's number as Exolve dials it: bare digits.
    baresip.command("dial", &format!("sip:74951234567@{}", golos.sip)).await;
    let established = baresip.event("CALL_ESTABLISHED", Duration::from_secs(10)).await;
    assert_eq!(established["direction"], "outgoing", "{established}");
    // The greeting, then the answer to the question.
    baresip.hear(ANSWER, Duration::from_secs(20)).await;
    // 1, 4, then # ends the keypad turn; the agent answers it (its fallback).
    for digit in ["1", "4", "#"] {
        baresip.command("sndcode", digit).await;
    }
    baresip.hear(REPLY_TO_KEYS, Duration::from_secs(20)).await;
    baresip.command("hangup", "").await;
    baresip.event("CALL_CLOSED", Duration::from_secs(5)).await;
    let baresip = baresip.quit().await;

    // The whole recording: speech, the answer after the greeting, then the reply to the keys.
    let samples = baresip.heard();
    let loud = loud_frames(&samples);
    assert!(loud >= 100, "the caller heard speech: {loud} loud frames of {}", samples.len() / 160);
    let heard = recognise(&samples);
    let answer = heard.find(ANSWER).unwrap_or_else(|| panic!("pocketsphinx heard in baresip's recording: {heard:?}"));
    assert!(heard.starts_with("hello how can i help"), "{heard:?}");
    assert!(heard[answer..].contains(REPLY_TO_KEYS), "{heard:?}");

    let record = golos.operator.billed_call(&key, None).await;
    assert_eq!(record["direction"], "inbound", "{record}");
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    let transcript = record["transcript"].to_string();
    assert!(transcript.contains("when are you open"), "golos heard baresip's question: {record}");
    assert!(transcript.to_lowercase().contains("eight in the morning"), "{record}");
    assert!(transcript.contains("[DTMF] 14"), "{record}");
    assert!(transcript.contains(FALLBACK), "{record}");
    drop(audio);
}

/// The number the transfer agent's `transfer_call` dials: golos's REFER asks the trunk to
/// dial `74959876543` (Exolve's plan) at the host of its Contact, baresip itself.
const TRANSFER_TARGET: &str = "+74959876543";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_follows_golos_refer_to_the_transfer_target() {
    // The LLM transfers whatever the caller says.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.json");
    let openai = json!({
        "replies": [{"tokens": [], "tool_calls": [{"name": "transfer_call", "arguments": "{\"reason\": \"asked for a person\"}", "fragments": 1}]}],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    });
    std::fs::write(&scenario, json!({"openai": openai}).to_string()).unwrap();
    let simulator = Simulator::start_with(&["--config", scenario.to_str().unwrap()]);
    let golos = SipGolos::start(&[]);
    let operator = &golos.operator;
    let (org_id, key) = operator.funded_org("Reception").await;
    operator.put_credential(&key, "sim-key", "sim-key").await;
    let agent = json!({
        "name": "Reception",
        "system_prompt": "Put the caller through to a person.",
        "greeting": "Hello, how can I help?",
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "tools": [{"type": "transfer_call", "destination": TRANSFER_TARGET}],
        "providers": {
            "llm": [{"kind": "openai_compatible", "endpoint": format!("http://{}/v1", simulator.addr), "credentials_secret": "sim-key"}],
            "tts": [{"kind": "espeak_ng"}],
            "stt": [{"kind": "deepgram", "endpoint": simulator.ws_url(), "credentials_secret": "sim-key"}]
        }
    });
    operator.agent_line(&org_id, &key, &agent, &json!({"source_networks": ["127.0.0.1/32"]})).await;

    let wav = caller_wav(dir.path(), "I would like to speak to a person please", 2.5, 30.0);
    // The caller, and the transfer target: a second account of the same baresip that answers
    // by itself (the Refer-To host is the caller's Contact, this baresip).
    let accounts = ["<sip:caller@127.0.0.1>;regint=0", "<sip:74959876543@127.0.0.1>;regint=0;answermode=auto"];
    let mut baresip = Baresip::start(&accounts, &wav).await;
    baresip.command("dial", &format!("sip:74951234567@{}", golos.sip)).await;
    let established = baresip.event("CALL_ESTABLISHED", Duration::from_secs(10)).await;
    assert_eq!(established["direction"], "outgoing", "{established}");
    // golos REFERs the caller to the target at baresip's Contact (this baresip); baresip
    // follows it (menu's transfer), the target's account answers.
    let transfer = baresip.event("TRANSFER", Duration::from_secs(20)).await;
    assert_eq!(transfer["id"], established["id"], "{transfer}");
    assert_eq!(transfer["param"], format!("<sip:74959876543@127.0.0.1:{}>", baresip.sip_port), "{transfer}");
    let answered = baresip
        .event_where("CALL_ESTABLISHED", Duration::from_secs(10), |event| {
            event["accountaor"] == "sip:74959876543@127.0.0.1" && event["direction"] == "incoming"
        })
        .await;
    assert_eq!(answered["peeruri"], "sip:caller@127.0.0.1", "{answered}");
    // golos hangs up the first call once baresip's NOTIFY says the target answered.
    let first = established["id"].clone();
    baresip.event_where("CALL_CLOSED", Duration::from_secs(10), |event| event["id"] == first).await;
    drop(baresip);

    let record = operator.billed_call(&key, None).await;
    assert_eq!(record["end_reason"], "transfer", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["outcome"], "completed", "{record}");
}
