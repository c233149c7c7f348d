//! The golos WebSocket audio protocol for browsers and SDKs (docs/transports.md).
//!
//! Binary messages carry audio: PCM16 little-endian mono at the rate chosen by `start`
//! (16 kHz by default). Text messages carry JSON control messages tagged by `type`. Parsing is
//! strict — unknown types and unknown fields are refused with a typed error — because a typo
//! such as `sampleRate` silently falling back to 16 kHz would garble a whole call.

use crate::error::TransportError;
use crate::jitter::InputJitter;
use golos_audio::{Resampler, SUPPORTED_RATES};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The rate a stream uses when `start` does not choose one.
pub const DEFAULT_SAMPLE_RATE: u32 = 16_000;
/// The largest `start.metadata`, as compact JSON: room for a customer's ids and a few tags,
/// which is what it is for; it is stored with the call and sent on in `call.ended`.
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// The largest text (control) message accepted. `start` is the largest: its metadata (at most
/// [`MAX_METADATA_BYTES`]), a token and ids of a few hundred bytes, with room for escaping.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The longest binary audio frame, in milliseconds: long frames add their own length to the
/// caller-perceived latency and let one message monopolise the reader.
pub const MAX_FRAME_MS: u32 = 100;
/// The largest binary message: [`MAX_FRAME_MS`] at the highest rate, 48 kHz (9,600 bytes).
/// A 20 ms frame at 16 kHz, what most clients send, is 640.
pub const MAX_BINARY_BYTES: usize = max_frame_bytes(48_000);
/// The largest WebSocket message (and frame) of the protocol: the socket refuses anything
/// bigger from its header, before buffering it (docs/transports.md, "Limits").
pub const MAX_MESSAGE_BYTES: usize = if MAX_TEXT_BYTES > MAX_BINARY_BYTES { MAX_TEXT_BYTES } else { MAX_BINARY_BYTES };
/// Protocol-level codes the server sends in `error` besides [`TransportError::code`]s.
pub mod codes {
    /// The token is missing, expired or not valid for the agent.
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const AGENT_NOT_FOUND: &str = "agent_not_found";
    /// `call_id` names no call that can be resumed (unknown, or ended more than 5 min ago).
    pub const CALL_NOT_FOUND: &str = "call_not_found";
    /// The worker is draining or at capacity; retry against another worker.
    pub const UNAVAILABLE: &str = "unavailable";
    /// No `start` came within [`crate::ws::START_TIMEOUT`] of connecting.
    pub const START_TIMEOUT: &str = "start_timeout";
    pub const INTERNAL: &str = "internal";
}

/// Messages from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first message of every connection.
    Start {
        agent_id: String,
        /// An API key or a short-lived call token.
        token: String,
        #[serde(default = "default_rate")]
        sample_rate: u32,
        /// Resume this call (within 5 minutes of a disconnect).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// The client finished playing everything up to the mark `name`.
    #[serde(alias = "mark_ack")]
    Mark { name: String },
    /// A key the caller pressed.
    Dtmf { digit: String },
    /// A struct variant, not a unit one: serde ignores extra fields of unit variants.
    Hangup {},
}

const fn default_rate() -> u32 {
    DEFAULT_SAMPLE_RATE
}

/// Who said a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    User,
    Assistant,
}

/// What the agent is doing, for UIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Listening,
    Thinking,
    Speaking,
}

/// Per-turn latency breakdown in milliseconds; a field is absent when the turn did not reach
/// that stage (e.g. no TTS after an interruption).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTurnMetrics {
    pub turn: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_utterance_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_first_audio_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_audio_out_ms: Option<f64>,
    /// The caller's last speech → our first audio: the silence the caller heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_silence_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_ms: Option<f64>,
    #[serde(default)]
    pub interrupted: bool,
}

/// Messages from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Started {
        call_id: String,
        sample_rate: u32,
    },
    Transcript {
        role: Speaker,
        text: String,
        /// `false` for interim results that a later message with the same turn replaces.
        #[serde(rename = "final")]
        is_final: bool,
    },
    State {
        state: AgentState,
    },
    TurnMetrics(WireTurnMetrics),
    /// Sent right after the last audio frame that precedes the mark.
    Mark {
        name: String,
    },
    /// Barge-in: drop all audio you have buffered but not yet played.
    Clear,
    Error {
        code: String,
        message: String,
    },
    /// The last message; the server closes the socket after it.
    Ended {
        reason: String,
    },
}

impl ServerMessage {
    /// An `error` message for a transport error, with its stable code.
    pub fn error(err: &TransportError) -> Self {
        Self::Error { code: err.code().to_owned(), message: err.to_string() }
    }

    pub fn to_json(&self) -> String {
        // A derived Serialize of strings, numbers and maps cannot fail.
        serde_json::to_string(self).expect("server messages serialize")
    }
}

/// The part of a message parsed when the full parse failed, to tell an unknown type apart
/// from a malformed known one.
#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

const CLIENT_TYPES: [&str; 5] = ["start", "mark", "mark_ack", "dtmf", "hangup"];

/// Parses and validates one text message from a client.
pub fn parse_client_text(text: &str) -> Result<ClientMessage, TransportError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TransportError::MessageTooLarge { len: text.len(), max: MAX_TEXT_BYTES });
    }
    let message: ClientMessage =
        serde_json::from_str(text).map_err(|err| match serde_json::from_str::<TypeOnly>(text) {
            Ok(TypeOnly { kind }) if !CLIENT_TYPES.contains(&kind.as_str()) => TransportError::UnknownType(kind),
            _ => TransportError::InvalidMessage(err.to_string()),
        })?;
    validate(&message)?;
    Ok(message)
}

fn validate(message: &ClientMessage) -> Result<(), TransportError> {
    match message {
        ClientMessage::Start { agent_id, token, sample_rate, call_id, metadata } => {
            if !SUPPORTED_RATES.contains(sample_rate) {
                return Err(TransportError::UnsupportedSampleRate(*sample_rate));
            }
            if agent_id.is_empty() || token.is_empty() {
                return Err(TransportError::InvalidMessage("start needs a non-empty agent_id and token".into()));
            }
            if call_id.as_deref().is_some_and(str::is_empty) {
                return Err(TransportError::InvalidMessage("call_id is empty".into()));
            }
            if let Some(metadata) = metadata {
                check_metadata(metadata)?;
            }
        }
        ClientMessage::Mark { name } if name.is_empty() => {
            return Err(TransportError::InvalidMessage("mark name is empty".into()));
        }
        ClientMessage::Dtmf { digit } => {
            validate_dtmf(digit)?;
        }
        ClientMessage::Mark { .. } | ClientMessage::Hangup {} => {}
    }
    Ok(())
}

/// Refuses metadata over [`MAX_METADATA_BYTES`] as compact JSON (a Twilio stream's custom
/// parameters too, which become its metadata).
pub fn check_metadata(metadata: &serde_json::Map<String, serde_json::Value>) -> Result<(), TransportError> {
    // A map of JSON values always serialises.
    let len = serde_json::to_vec(metadata).map_or(usize::MAX, |json| json.len());
    if len > MAX_METADATA_BYTES {
        return Err(TransportError::InvalidMessage(format!(
            "metadata of {len} bytes exceeds the limit of {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// Accepts one DTMF key: `0`-`9`, `*`, `#`, `A`-`D` (the RFC 4733 events 0-15).
pub fn validate_dtmf(digit: &str) -> Result<char, TransportError> {
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => Ok(c),
        _ => Err(TransportError::InvalidDtmf(digit.chars().take(16).collect())),
    }
}

/// The largest binary frame at `sample_rate`, in bytes.
pub const fn max_frame_bytes(sample_rate: u32) -> usize {
    (sample_rate * MAX_FRAME_MS / 1000) as usize * 2
}

/// Decodes one binary audio message (PCM16 LE mono) into samples, refusing empty frames,
/// half samples and frames longer than [`MAX_FRAME_MS`].
pub fn decode_audio(bytes: &[u8], sample_rate: u32) -> Result<Vec<i16>, TransportError> {
    let mut samples = Vec::with_capacity(bytes.len() / 2);
    decode_audio_into(bytes, sample_rate, &mut samples)?;
    Ok(samples)
}

/// [`decode_audio`] appending to `out`, so a stream can reuse one buffer.
pub fn decode_audio_into(bytes: &[u8], sample_rate: u32, out: &mut Vec<i16>) -> Result<(), TransportError> {
    let invalid = |reason| TransportError::InvalidAudioFrame { len: bytes.len(), reason };
    if bytes.is_empty() {
        return Err(invalid("empty"));
    }
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid("not a whole number of 16-bit samples"));
    }
    if bytes.len() > max_frame_bytes(sample_rate) {
        return Err(invalid("longer than 100 ms"));
    }
    out.extend(bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
    Ok(())
}

/// Encodes samples as one binary audio message (PCM16 LE).
pub fn encode_audio(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The client's binary frames to 20 ms frames at the pipeline's rate: decode → reframe (the
/// client may send any whole number of samples up to 100 ms) → resample.
#[derive(Debug)]
pub struct AudioIn {
    client_rate: u32,
    jitter: InputJitter,
    resampler: Resampler,
    scratch: Vec<i16>,
}

impl AudioIn {
    pub fn new(client_rate: u32, pipeline_rate: u32) -> Result<Self, TransportError> {
        Ok(Self {
            client_rate,
            jitter: InputJitter::new(client_rate),
            resampler: Resampler::new(client_rate, pipeline_rate).map_err(|_| {
                TransportError::UnsupportedSampleRate(if SUPPORTED_RATES.contains(&client_rate) {
                    pipeline_rate
                } else {
                    client_rate
                })
            })?,
            scratch: Vec::new(),
        })
    }

    /// Takes one binary message.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.scratch.clear();
        decode_audio_into(bytes, self.client_rate, &mut self.scratch)?;
        self.jitter.push_in_order(&self.scratch);
        Ok(())
    }

    /// The next 20 ms frame at the pipeline's rate, if one is complete.
    pub fn pop_frame(&mut self) -> Result<Option<Arc<[i16]>>, TransportError> {
        let Some(frame) = self.jitter.pop_frame() else { return Ok(None) };
        Ok(Some(self.resampler.process(&frame)?.into()))
    }
}

/// Our 20 ms frames at the pipeline's rate to binary messages at the client's rate.
#[derive(Debug)]
pub struct AudioOut {
    resampler: Resampler,
    scratch: Vec<i16>,
}

impl AudioOut {
    pub fn new(pipeline_rate: u32, client_rate: u32) -> Result<Self, TransportError> {
        let resampler = Resampler::new(pipeline_rate, client_rate)?;
        let scratch = vec![0; resampler.output_frame_len()];
        Ok(Self { resampler, scratch })
    }

    /// One binary message for one 20 ms frame.
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, TransportError> {
        self.resampler.process_into(frame, &mut self.scratch)?;
        Ok(encode_audio(&self.scratch))
    }

    /// After a `clear`: the cut-off audio must not ring into the next utterance.
    pub fn reset(&mut self) {
        self.resampler.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn start_with_defaults_and_with_everything() {
        let minimal = parse_client_text(r#"{"type":"start","agent_id":"ag_1","token":"sk_x"}"#).unwrap();
        assert_eq!(
            minimal,
            ClientMessage::Start {
                agent_id: "ag_1".into(),
                token: "sk_x".into(),
                sample_rate: 16_000,
                call_id: None,
                metadata: None
            }
        );
        let full = json!({"type":"start","agent_id":"ag_1","token":"ct_y","sample_rate":48000,
            "call_id":"call_9","metadata":{"user":"u1","n":2}});
        let ClientMessage::Start { sample_rate, call_id, metadata, .. } = parse_client_text(&full.to_string()).unwrap()
        else {
            panic!("not a start")
        };
        assert_eq!((sample_rate, call_id.as_deref()), (48_000, Some("call_9")));
        assert_eq!(metadata.unwrap()["n"], json!(2));
    }

    #[test]
    fn every_client_message_round_trips() {
        let messages = [
            ClientMessage::Start {
                agent_id: "a".into(),
                token: "t".into(),
                sample_rate: 8_000,
                call_id: Some("c".into()),
                metadata: Some(serde_json::Map::from_iter([("k".to_owned(), json!("v"))])),
            },
            ClientMessage::Mark { name: "turn-1".into() },
            ClientMessage::Dtmf { digit: "#".into() },
            ClientMessage::Hangup {},
        ];
        for message in messages {
            let text = serde_json::to_string(&message).unwrap();
            assert_eq!(parse_client_text(&text).unwrap(), message, "{text}");
        }
        assert_eq!(
            parse_client_text(r#"{"type":"mark_ack","name":"m"}"#).unwrap(),
            ClientMessage::Mark { name: "m".into() }
        );
    }

    #[test]
    fn every_server_message_round_trips_with_the_documented_shape() {
        let cases = [
            (
                ServerMessage::Started { call_id: "c1".into(), sample_rate: 16_000 },
                json!({"type":"started","call_id":"c1","sample_rate":16000}),
            ),
            (
                ServerMessage::Transcript { role: Speaker::User, text: "hi".into(), is_final: true },
                json!({"type":"transcript","role":"user","text":"hi","final":true}),
            ),
            (ServerMessage::State { state: AgentState::Thinking }, json!({"type":"state","state":"thinking"})),
            (
                ServerMessage::TurnMetrics(WireTurnMetrics {
                    turn: 2,
                    ttft_ms: Some(210.5),
                    ..WireTurnMetrics::default()
                }),
                json!({"type":"turn_metrics","turn":2,"ttft_ms":210.5,"interrupted":false}),
            ),
            (ServerMessage::Mark { name: "m".into() }, json!({"type":"mark","name":"m"})),
            (ServerMessage::Clear, json!({"type":"clear"})),
            (
                ServerMessage::Error { code: "unauthorized".into(), message: "bad token".into() },
                json!({"type":"error","code":"unauthorized","message":"bad token"}),
            ),
            (ServerMessage::Ended { reason: "hangup".into() }, json!({"type":"ended","reason":"hangup"})),
        ];
        for (message, expected) in cases {
            let value: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
            assert_eq!(value, expected);
            assert_eq!(serde_json::from_value::<ServerMessage>(value).unwrap(), message);
        }
    }

    #[test]
    fn refusals_carry_stable_codes() {
        let code = |text: &str| parse_client_text(text).unwrap_err().code();
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"start","agent_id":"a"}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"start","agent_id":"a","token":"t","sampleRate":8000}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"start","agent_id":"a","token":"t","sample_rate":44100}"#),
            "unsupported_sample_rate"
        );
        assert_eq!(code(r#"{"type":"start","agent_id":"","token":"t"}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"dtmf","digit":"12"}"#), "invalid_dtmf");
        assert_eq!(code(r#"{"type":"dtmf","digit":"E"}"#), "invalid_dtmf");
        assert_eq!(code(r#"{"type":"mark","name":""}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"hangup","why":"x"}"#), "invalid_message");
        assert_eq!(code(r#"{"name":"m"}"#), "invalid_message");
        assert_eq!(code("not json"), "invalid_message");
        assert_eq!(code("[1,2]"), "invalid_message");
        let huge = format!(r#"{{"type":"hangup","pad":"{}"}}"#, "x".repeat(MAX_TEXT_BYTES));
        assert_eq!(code(&huge), "message_too_large");
        let start_with = |metadata: serde_json::Value| {
            json!({"type":"start","agent_id":"a","token":"t","metadata":metadata}).to_string()
        };
        let big = start_with(json!({"note": "x".repeat(MAX_METADATA_BYTES)}));
        assert!(big.len() < MAX_TEXT_BYTES, "the message fits, its metadata does not");
        assert_eq!(code(&big), "invalid_message");
        assert!(parse_client_text(&start_with(json!({"note": "x".repeat(MAX_METADATA_BYTES - 20)}))).is_ok());
    }

    #[test]
    fn audio_frames_round_trip_and_bad_sizes_are_refused() {
        let samples: Vec<i16> = (0..320).map(|i| (i * 97 - 15_000) as i16).collect();
        assert_eq!(decode_audio(&encode_audio(&samples), 16_000).unwrap(), samples);
        assert_eq!(encode_audio(&[1, -2]), vec![1, 0, 0xFE, 0xFF]);
        assert_eq!(max_frame_bytes(16_000), 3_200);
        assert_eq!(max_frame_bytes(8_000), 1_600);
        assert_eq!((MAX_BINARY_BYTES, MAX_MESSAGE_BYTES), (9_600, 9_600));
        assert!(decode_audio(&vec![0; 3_200], 16_000).is_ok());
        for (bytes, rate) in [(0, 16_000), (321, 16_000), (3_202, 16_000), (1_602, 8_000)] {
            let err = decode_audio(&vec![0; bytes], rate).unwrap_err();
            assert_eq!(err.code(), "invalid_audio_frame", "{bytes} bytes at {rate}");
        }
    }

    #[test]
    fn browser_audio_of_any_size_reaches_the_pipeline_as_20ms_frames() {
        let mut audio_in = AudioIn::new(48_000, 16_000).unwrap();
        // 10 ms, then 50 ms, then 100 ms (the limit): 160 ms = 8 pipeline frames.
        for ms in [10, 50, 100] {
            audio_in.push(&encode_audio(&vec![1_000; 48 * ms])).unwrap();
        }
        let frames: Vec<_> = std::iter::from_fn(|| audio_in.pop_frame().unwrap()).collect();
        assert_eq!(frames.len(), 8);
        assert!(frames.iter().all(|f| f.len() == 320));
        assert_eq!(audio_in.push(&[0; 3]).unwrap_err().code(), "invalid_audio_frame");
        let mut out = AudioOut::new(16_000, 8_000).unwrap();
        assert_eq!(out.encode(&[0; 320]).unwrap().len(), 320, "160 samples at 8 kHz");
        assert_eq!(AudioIn::new(44_100, 16_000).unwrap_err().code(), "unsupported_sample_rate");
    }

    proptest! {
        #[test]
        fn no_text_panics_the_parser(text in ".{0,300}") {
            let _ = parse_client_text(&text);
        }

        #[test]
        fn no_bytes_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            // WebSocket text is UTF-8 by the time it reaches us; lossy decoding covers every
            // byte sequence that could get there.
            let _ = parse_client_text(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn no_json_like_text_panics_the_parser(
            kind in prop::sample::select(vec!["start", "mark", "mark_ack", "dtmf", "hangup", "x", ""]),
            field in "[a-z_]{0,12}",
            value in prop_oneof![Just("1".to_owned()), Just("null".to_owned()), Just("{}".to_owned()), "\"[^\"\\\\]{0,20}\""],
        ) {
            let _ = parse_client_text(&format!(r#"{{"type":"{kind}","{field}":{value}}}"#));
        }

        #[test]
        fn no_bytes_panic_the_audio_decoder(bytes in prop::collection::vec(any::<u8>(), 0..4_000), rate in prop::sample::select(SUPPORTED_RATES.to_vec())) {
            if let Ok(samples) = decode_audio(&bytes, rate) {
                prop_assert_eq!(encode_audio(&samples), bytes);
            }
        }
    }
}
