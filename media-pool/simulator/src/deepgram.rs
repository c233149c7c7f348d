//! Deepgram live transcription, `GET /v1/listen` upgraded to a WebSocket, after
//! https://developers.deepgram.com/reference/speech-to-text-api/listen-streaming and the feature
//! pages for endpointing, interim results, `vad_events` (SpeechStarted) and `utterance_end_ms`
//! (UtteranceEnd). The client sends binary audio and the text messages `KeepAlive`, `Finalize` and
//! `CloseStream`; the server sends `Results`, `SpeechStarted`, `UtteranceEnd` and, on close,
//! `Metadata`.
//!
//! Speech is found in the audio itself (WORKLOAD.md §2.2): a 10 ms frame whose peak exceeds a small
//! threshold is speech. Every timing decision is made in audio time (samples received), as a real
//! recogniser does, so results do not depend on how fast the client sends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::audio::{self, Encoding, Format};
use crate::log::{DeepgramSession, Entry};
use crate::scenario::{pick_fault, Fault, SttScenario, Transcript};
use crate::{common, Provider, Shared};

pub(crate) async fn listen(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let ordinal = shared.next_ordinal(Provider::Deepgram);
    let scenario = shared.scenario();
    let cfg = &scenario.deepgram;
    let model = query.get("model").map(String::as_str);
    let fault = pick_fault(&cfg.faults, ordinal, model).cloned();
    shared.log.record(&Entry::of(Provider::Deepgram, ordinal, &method, &uri, &headers, &Bytes::new(), fault.as_ref()));
    let request_id = format!("00000000-0000-4000-8000-{:06}{:06}", shared.instance % 1_000_000, ordinal % 1_000_000);
    let fail = |status: StatusCode, code: &str, message: &str| {
        let body = json!({"err_code": code, "err_msg": message, "request_id": request_id});
        common::json_error(status, &body, None, "dg-request-id", &request_id)
    };

    // Browsers cannot set headers on a WebSocket, so Deepgram also takes the key as the
    // subprotocol pair `token, <key>`.
    let protocols: Vec<&str> = common::header(&headers, "sec-websocket-protocol")
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let from_protocol = match protocols.as_slice() {
        ["token", key, ..] => Some(*key),
        _ => None,
    };
    let key = common::header(&headers, "authorization")
        .and_then(|v| v.strip_prefix("Token ").or_else(|| v.strip_prefix("Bearer ")))
        .or(from_protocol)
        .unwrap_or("");
    if key.is_empty() || cfg.api_key.as_deref().is_some_and(|k| k != key) {
        return fail(StatusCode::UNAUTHORIZED, "INVALID_AUTH", "Invalid credentials.");
    }
    let params = match Params::parse(&query, cfg) {
        Ok(p) => p,
        Err(message) => return fail(StatusCode::BAD_REQUEST, "Bad Request", &message),
    };

    match fault {
        Some(Fault::Status { status, retry_after_s }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (err_code, message) = match status {
                401 => ("INVALID_AUTH", "Invalid credentials."),
                402 => ("ASR_PAYMENT_REQUIRED", "Project does not have enough credits."),
                429 => ("TOO_MANY_REQUESTS", "Too many requests. Please try again later."),
                _ => ("INTERNAL_SERVER_ERROR", "The service encountered an internal error (simulated)."),
            };
            let mut response = fail(code, err_code, message);
            if let Some(secs) = retry_after_s {
                common::set_header(&mut response, "retry-after", &secs.to_string());
            }
            return response;
        }
        Some(Fault::Hang) => {
            shared.shutdown_signal().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }

    let ws = if from_protocol.is_some() { ws.protocols(["token"]) } else { ws };
    let delay = match fault {
        Some(Fault::Slow { first_ms }) => first_ms,
        _ => cfg.result_delay_ms,
    };
    let session = Session {
        detector: Detector::new(params, cfg, request_id.clone()),
        fault,
        delay: Duration::from_millis(delay),
        idle: Duration::from_millis(cfg.idle_timeout_ms),
        stats: DeepgramSession { ordinal, query: uri.query().map(str::to_owned), ..DeepgramSession::default() },
    };
    let mut response = ws.on_upgrade(move |socket| session.run(socket, shared));
    common::set_header(&mut response, "dg-request-id", &request_id);
    response
}

#[derive(Debug, Clone)]
struct Params {
    format: Format,
    channels: u32,
    interim_results: bool,
    vad_events: bool,
    /// `None` when the client passed `endpointing=false`.
    endpointing_ms: Option<u64>,
    utterance_end_ms: Option<u64>,
    model: String,
}

impl Params {
    fn parse(q: &HashMap<String, String>, cfg: &SttScenario) -> Result<Self, String> {
        let flag = |name: &str| q.get(name).is_some_and(|v| v == "true");
        let number = |name: &str| -> Result<Option<u64>, String> {
            q.get(name).map(|v| v.parse().map_err(|_| format!("Invalid {name}: {v}"))).transpose()
        };
        // Raw audio needs both (https://developers.deepgram.com/docs/encoding); without them
        // Deepgram expects a container, which the simulator does not parse.
        let (Some(encoding), Some(sample_rate)) = (q.get("encoding"), number("sample_rate")?) else {
            return Err(
                "encoding and sample_rate are both required for raw audio (golos-simulator takes no containers)".into(),
            );
        };
        let encoding = match encoding.as_str() {
            "linear16" => Encoding::Linear16,
            "mulaw" => Encoding::Mulaw,
            "alaw" => Encoding::Alaw,
            other => return Err(format!("golos-simulator does not decode encoding {other}")),
        };
        if !(8000..=48_000).contains(&sample_rate) {
            return Err(format!("Invalid sample_rate: {sample_rate}"));
        }
        let endpointing_ms = match q.get("endpointing").map(String::as_str) {
            None | Some("true") => Some(cfg.default_endpointing_ms),
            Some("false") => None,
            Some(v) => Some(v.parse().map_err(|_| format!("Invalid endpointing: {v}"))?),
        };
        Ok(Self {
            format: Format { encoding, sample_rate: sample_rate as u32 },
            channels: number("channels")?.unwrap_or(1).max(1) as u32,
            interim_results: flag("interim_results"),
            vad_events: flag("vad_events"),
            endpointing_ms,
            utterance_end_ms: number("utterance_end_ms")?,
            model: q.get("model").cloned().unwrap_or_else(|| "nova-3".to_owned()),
        })
    }
}

/// The recogniser: audio in, Deepgram messages out, all in audio time.
#[derive(Debug)]
pub(crate) struct Detector {
    params: Params,
    transcripts: Vec<Transcript>,
    interim_after_ms: u64,
    no_endpointing_final_ms: u64,
    silence_finals_ms: Option<u64>,
    threshold: u16,
    request_id: String,
    /// Interleaved samples per 10 ms analysis frame.
    frame_samples: u64,
    frame_fill: u64,
    frame_peak: u16,
    odd_byte: Option<u8>,
    /// Samples processed in whole frames (all channels).
    samples: u64,
    utterance: usize,
    in_speech: bool,
    speech_start: u64,
    last_speech_end: u64,
    speech_ms: u64,
    silence_ms: u64,
    interim_sent: bool,
    segment_start: u64,
    /// `last_word_end` of the latest final, waiting for `utterance_end_ms` of silence.
    pending_utterance_end: Option<u64>,
}

impl Detector {
    fn new(params: Params, cfg: &SttScenario, request_id: String) -> Self {
        let frame_samples = u64::from(params.format.sample_rate) / 100 * u64::from(params.channels);
        Self {
            params,
            transcripts: if cfg.transcripts.is_empty() {
                vec![Transcript::workload()]
            } else {
                cfg.transcripts.clone()
            },
            interim_after_ms: cfg.interim_after_ms,
            no_endpointing_final_ms: cfg.no_endpointing_final_ms,
            silence_finals_ms: cfg.silence_finals_ms,
            threshold: cfg.energy_threshold,
            request_id,
            frame_samples,
            frame_fill: 0,
            frame_peak: 0,
            odd_byte: None,
            samples: 0,
            utterance: 0,
            in_speech: false,
            speech_start: 0,
            last_speech_end: 0,
            speech_ms: 0,
            silence_ms: 0,
            interim_sent: false,
            segment_start: 0,
            pending_utterance_end: None,
        }
    }

    fn seconds(&self, samples: u64) -> f64 {
        let per_second = f64::from(self.params.format.sample_rate) * f64::from(self.params.channels);
        (samples as f64 / per_second * 1000.0).round() / 1000.0
    }

    /// Feeds received audio; pushes the messages it causes onto `out`.
    pub(crate) fn push_audio(&mut self, data: &[u8], out: &mut Vec<String>) {
        match self.params.format.encoding {
            Encoding::Linear16 => {
                let mut rest = data;
                if let Some(low) = self.odd_byte.take() {
                    if let Some((&high, tail)) = rest.split_first() {
                        self.sample(i16::from_le_bytes([low, high]), out);
                        rest = tail;
                    } else {
                        self.odd_byte = Some(low);
                    }
                }
                let mut pairs = rest.chunks_exact(2);
                for pair in pairs.by_ref() {
                    self.sample(i16::from_le_bytes([pair[0], pair[1]]), out);
                }
                if let [last] = pairs.remainder() {
                    self.odd_byte = Some(*last);
                }
            }
            Encoding::Mulaw => data.iter().for_each(|b| self.sample(audio::mulaw_to_linear(*b), out)),
            Encoding::Alaw => data.iter().for_each(|b| self.sample(audio::alaw_to_linear(*b), out)),
        }
    }

    fn sample(&mut self, s: i16, out: &mut Vec<String>) {
        self.frame_peak = self.frame_peak.max(s.unsigned_abs());
        self.frame_fill += 1;
        if self.frame_fill == self.frame_samples {
            self.samples += self.frame_samples;
            let speech = self.frame_peak > self.threshold;
            self.frame_fill = 0;
            self.frame_peak = 0;
            self.frame(speech, out);
        }
    }

    fn frame(&mut self, speech: bool, out: &mut Vec<String>) {
        let end = self.samples;
        let start = end - self.frame_samples;
        if speech {
            if !self.in_speech {
                self.in_speech = true;
                self.speech_start = start;
                self.speech_ms = 0;
                self.interim_sent = false;
                self.pending_utterance_end = None;
                if self.params.vad_events {
                    out.push(
                        json!({"type": "SpeechStarted", "channel": [0, 1], "timestamp": self.seconds(start)})
                            .to_string(),
                    );
                }
            }
            self.speech_ms += 10;
            self.silence_ms = 0;
            self.last_speech_end = end;
            if self.params.interim_results && !self.interim_sent && self.speech_ms >= self.interim_after_ms {
                self.interim_sent = true;
                let text = self.transcript().interim_text();
                out.push(self.results(&text, end, false, false, false));
            }
        } else if self.in_speech {
            self.silence_ms += 10;
            let needed = self.params.endpointing_ms.unwrap_or(self.no_endpointing_final_ms);
            if self.silence_ms >= needed {
                let speech_final = self.params.endpointing_ms.is_some();
                self.finish_utterance(end, speech_final, false, out);
            }
        } else {
            if let (Some(last_word_end), Some(gap)) = (self.pending_utterance_end, self.params.utterance_end_ms) {
                if self.seconds(end) - self.seconds(last_word_end) >= gap as f64 / 1000.0 - 1e-9 {
                    self.pending_utterance_end = None;
                    let ue = json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.seconds(last_word_end)});
                    out.push(ue.to_string());
                }
            }
            if let Some(every) = self.silence_finals_ms {
                let window = u64::from(self.params.format.sample_rate) * u64::from(self.params.channels) * every / 1000;
                if end - self.segment_start >= window {
                    out.push(self.results("", end, true, false, false));
                    self.segment_start = end;
                }
            }
        }
    }

    fn transcript(&self) -> &Transcript {
        &self.transcripts[self.utterance % self.transcripts.len()]
    }

    fn finish_utterance(&mut self, end: u64, speech_final: bool, from_finalize: bool, out: &mut Vec<String>) {
        let text = self.transcript().text.clone();
        out.push(self.results(&text, end, true, speech_final, from_finalize));
        self.in_speech = false;
        self.utterance += 1;
        self.segment_start = end;
        if self.params.utterance_end_ms.is_some() {
            self.pending_utterance_end = Some(self.last_speech_end);
        }
    }

    /// `Finalize` (and `CloseStream`): finish the utterance in progress now.
    pub(crate) fn flush(&mut self, from_finalize: bool, out: &mut Vec<String>) {
        if self.in_speech {
            self.finish_utterance(self.samples, false, from_finalize, out);
        }
    }

    fn results(&self, text: &str, end: u64, is_final: bool, speech_final: bool, from_finalize: bool) -> String {
        let confidence = if text.is_empty() { 0.0 } else { self.transcript().confidence };
        let words: Vec<&str> = text.split_whitespace().collect();
        let from = self.seconds(self.speech_start);
        let to = self.seconds(if is_final { self.last_speech_end } else { end });
        let step = if words.is_empty() { 0.0 } else { (to - from) / words.len() as f64 };
        let words: Vec<Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let bare: String = w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect();
                json!({
                    "word": bare.to_lowercase(),
                    "start": round3(from + step * i as f64),
                    "end": round3(from + step * (i + 1) as f64),
                    "confidence": confidence,
                    "punctuated_word": w,
                })
            })
            .collect();
        let start = self.seconds(self.segment_start);
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round3(self.seconds(end) - start),
            "start": start,
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": words}]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": format!("general-{}", self.params.model), "version": "golos-sim", "arch": self.params.model},
                "model_uuid": MODEL_UUID,
            },
        })
        .to_string()
    }

    fn metadata(&self) -> String {
        json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0000000000000000000000000000000000000000000000000000000000000000",
            "created": rfc3339_now(),
            "duration": self.seconds(self.samples),
            "channels": self.params.channels,
            "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: {"name": format!("general-{}", self.params.model), "version": "golos-sim", "arch": self.params.model}},
        })
        .to_string()
    }
}

const MODEL_UUID: &str = "00000000-0000-4000-8000-00000000d9a1";

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Session {
    detector: Detector,
    fault: Option<Fault>,
    delay: Duration,
    idle: Duration,
    stats: DeepgramSession,
}

impl Session {
    async fn run(mut self, socket: WebSocket, shared: Arc<Shared>) {
        let (mut sink, mut stream) = socket.split();
        let mut queue: VecDeque<(Instant, String)> = VecDeque::new();
        let mut produced = Vec::new();
        let mut sent = 0usize;
        let mut stalled = false;
        let mut closing = false;
        let mut last_activity = Instant::now();
        if self.fault_due(sent, &mut sink).await {
            self.finish(&shared);
            return;
        }
        loop {
            let due = queue.front().map(|(at, _)| *at);
            // Biased: due results first (so a client flooding audio still gets them), then audio
            // before the idle check, so a frame that arrived with the deadline is not "idle".
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(due.unwrap_or(last_activity)), if due.is_some() => {
                    let (_, message) = queue.pop_front().expect("queue has a due message");
                    if stalled {
                        continue;
                    }
                    let message = match &self.fault {
                        Some(Fault::Malformed { event }) if *event == sent => {
                            crate::paced::truncate_json(&Bytes::from(message)).to_vec()
                        }
                        _ => message.into_bytes(),
                    };
                    let text = String::from_utf8(message).unwrap_or_default();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    sent += 1;
                    if matches!(self.fault, Some(Fault::StallAfter { events }) if events == sent) {
                        stalled = true;
                    }
                    if self.fault_due(sent, &mut sink).await {
                        break;
                    }
                }
                message = stream.next() => {
                    let now = Instant::now();
                    match message {
                        Some(Ok(Message::Binary(data))) => {
                            last_activity = now;
                            self.stats.audio_bytes += data.len() as u64;
                            self.stats.audio_messages += 1;
                            self.detector.push_audio(&data, &mut produced);
                        }
                        Some(Ok(Message::Text(text))) => match self.control(text.as_str(), &mut produced) {
                            Some(Control::Activity) => last_activity = now,
                            Some(Control::Close) => closing = true,
                            None => {}
                        },
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    }
                    for message in produced.drain(..) {
                        queue.push_back((now + self.delay, message));
                    }
                }
                () = tokio::time::sleep_until(last_activity + self.idle), if !closing => {
                    // Deepgram closes streams that send neither audio nor KeepAlive for ~10 s.
                    let _ = sink.send(close(1011, "NET-0001: Deepgram did not receive audio data or a text message within the timeout window.")).await;
                    break;
                }
                () = shared.shutdown_signal() => break,
            }
            if closing && queue.is_empty() {
                let _ = sink.send(close(1000, "")).await;
                break;
            }
        }
        self.finish(&shared);
    }

    /// Applies `ResetAfter` / `StreamError` once `sent` messages went out; true when the session ends.
    async fn fault_due<S>(&self, sent: usize, sink: &mut S) -> bool
    where
        S: futures::Sink<Message> + Unpin,
    {
        match self.fault {
            // Dropping the socket without a close frame is what a client sees as a reset.
            Some(Fault::ResetAfter { events }) if events == sent => true,
            Some(Fault::StreamError { events }) if events == sent => {
                let _ = sink.send(close(1011, "NET-0000: The service has encountered an internal error.")).await;
                true
            }
            _ => false,
        }
    }

    fn control(&mut self, text: &str, out: &mut Vec<String>) -> Option<Control> {
        let kind = serde_json::from_str::<Value>(text).ok()?.get("type")?.as_str()?.to_owned();
        match kind.as_str() {
            "KeepAlive" => {
                self.stats.keep_alives += 1;
                Some(Control::Activity)
            }
            "Finalize" => {
                self.stats.finalizes += 1;
                self.detector.flush(true, out);
                Some(Control::Activity)
            }
            "CloseStream" => {
                self.stats.close_stream = true;
                self.detector.flush(false, out);
                out.push(self.detector.metadata());
                Some(Control::Close)
            }
            _ => {
                self.stats.unknown_messages += 1;
                None
            }
        }
    }

    fn finish(mut self, shared: &Shared) {
        self.stats.utterances = self.detector.utterance as u64;
        shared.log.record_session(self.stats);
    }
}

enum Control {
    Activity,
    Close,
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// `2026-11-25T19:30:00.000Z` without a date-time dependency (days-to-civil after H. Hinnant).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(query: &[(&str, &str)]) -> Detector {
        let q: HashMap<String, String> = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let cfg = SttScenario::default();
        Detector::new(Params::parse(&q, &cfg).unwrap(), &cfg, "rid".into())
    }

    fn frames(speech: bool, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n * 320 {
            let s: i16 = if speech {
                if i % 20 < 10 {
                    3000
                } else {
                    -3000
                }
            } else {
                0
            };
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    #[test]
    fn workload_utterance_gives_interim_then_final_at_the_endpoint() {
        let mut d = detector(&[
            ("encoding", "linear16"),
            ("sample_rate", "16000"),
            ("interim_results", "true"),
            ("endpointing", "300"),
            ("vad_events", "true"),
            ("utterance_end_ms", "1000"),
        ]);
        let mut out = Vec::new();
        d.push_audio(&frames(false, 50), &mut out);
        assert!(out.is_empty());
        d.push_audio(&frames(true, 49), &mut out);
        assert_eq!(out.len(), 1);
        let started: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(started["type"], "SpeechStarted");
        assert_eq!(started["timestamp"], 1.0);
        d.push_audio(&frames(true, 1), &mut out);
        let interim: Value = serde_json::from_str(&out[1]).unwrap();
        assert_eq!(interim["is_final"], false);
        assert_eq!(interim["channel"]["alternatives"][0]["transcript"], "what are your");
        d.push_audio(&frames(true, 25), &mut out);
        d.push_audio(&frames(false, 14), &mut out);
        assert_eq!(out.len(), 2, "no final before 300 ms of silence");
        d.push_audio(&frames(false, 1), &mut out);
        let fin: Value = serde_json::from_str(&out[2]).unwrap();
        assert_eq!(fin["is_final"], true);
        assert_eq!(fin["speech_final"], true);
        assert_eq!(fin["channel"]["alternatives"][0]["transcript"], "what are your opening hours");
        assert_eq!(fin["channel"]["alternatives"][0]["words"][4]["end"], 2.5);
        d.push_audio(&frames(false, 35), &mut out);
        assert_eq!(out.len(), 4);
        let ue: Value = serde_json::from_str(&out[3]).unwrap();
        assert_eq!(ue["type"], "UtteranceEnd");
        assert_eq!(ue["last_word_end"], 2.5);
    }

    #[test]
    fn odd_byte_splits_and_mulaw_silence() {
        let mut d = detector(&[("encoding", "linear16"), ("sample_rate", "16000"), ("endpointing", "20")]);
        let audio = frames(true, 10);
        let mut out = Vec::new();
        for piece in audio.chunks(333) {
            d.push_audio(piece, &mut out);
        }
        d.push_audio(&frames(false, 1), &mut out);
        assert_eq!(out.len(), 1);
        let mut d = detector(&[("encoding", "mulaw"), ("sample_rate", "8000")]);
        d.push_audio(&[0xFF; 8000], &mut out);
        assert_eq!(out.len(), 1, "mu-law silence (0xFF) is not speech");
    }

    #[test]
    fn silence_finals_are_empty_and_do_not_count_as_utterances() {
        let q: HashMap<String, String> = [("encoding", "linear16"), ("sample_rate", "16000")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let cfg = SttScenario { silence_finals_ms: Some(1000), ..SttScenario::default() };
        let mut d = Detector::new(Params::parse(&q, &cfg).unwrap(), &cfg, "rid".into());
        let mut out = Vec::new();
        d.push_audio(&frames(false, 125), &mut out);
        assert_eq!(out.len(), 2, "one empty final per second of silence");
        let v: Value = serde_json::from_str(&out[1]).unwrap();
        assert_eq!(v["is_final"], true);
        assert_eq!(v["speech_final"], false);
        assert_eq!(v["channel"]["alternatives"][0]["transcript"], "");
        assert_eq!(v["start"], 1.0);
        assert_eq!(v["duration"], 1.0);
        d.push_audio(&frames(true, 10), &mut out);
        d.push_audio(&frames(false, 1), &mut out);
        let v: Value = serde_json::from_str(out.last().unwrap()).unwrap();
        assert_eq!(v["channel"]["alternatives"][0]["transcript"], "what are your opening hours");
        assert_eq!(d.utterance, 1);
    }

    #[test]
    fn timestamp_format() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24);
        assert!(t.ends_with('Z'));
    }
}
