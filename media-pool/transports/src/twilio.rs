//! A Twilio Media Streams-compatible endpoint: the messages a telephony provider sends over a
//! bidirectional `<Connect><Stream>` WebSocket, and the ones we send back. Written from
//! Twilio's public "Media Streams - WebSocket Messages" page; Telnyx, Fonoster and others speak
//! the same dialect. Audio is base64 μ-law at 8 kHz mono in JSON text messages.
//!
//! Parsing tolerates unknown *fields* (providers add their own, e.g. Telnyx's extra ids), but
//! not unknown *events*, which come back as [`TransportError::UnknownType`] for the caller to
//! log and skip.

use crate::error::TransportError;
use crate::jitter::InputJitter;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use golos_audio::{g711, samples_per_frame, Resampler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Twilio's only media format.
pub const ENCODING: &str = "audio/x-mulaw";
pub const SAMPLE_RATE: u32 = 8_000;
/// The largest text message accepted, and so the largest WebSocket message and frame of the
/// dialect. `start` is the largest: about 600 bytes of fixed fields, custom parameters up to
/// [`crate::golos::MAX_METADATA_BYTES`], and room for the fields other providers add (Telnyx's
/// ids and `client_state`). A 20 ms `media` message is about 350 bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The longest inbound `media` chunk: 100 ms of μ-law (Twilio sends 20 ms, 160 bytes).
pub const MAX_MEDIA_BYTES: usize = 800;

/// Messages from the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Inbound {
    /// The first message; describes the protocol.
    Connected {
        #[serde(default)]
        protocol: String,
        #[serde(default)]
        version: String,
    },
    #[serde(rename_all = "camelCase")]
    Start {
        #[serde(default)]
        sequence_number: Option<String>,
        start: StartMeta,
        #[serde(default)]
        stream_sid: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Media {
        #[serde(default)]
        sequence_number: Option<String>,
        media: Media,
        #[serde(default)]
        stream_sid: Option<String>,
    },
    /// The provider finished playing the audio we sent before this mark (or dropped it on
    /// `clear`).
    #[serde(rename_all = "camelCase")]
    Mark {
        #[serde(default)]
        sequence_number: Option<String>,
        mark: MarkName,
        #[serde(default)]
        stream_sid: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Dtmf {
        #[serde(default)]
        sequence_number: Option<String>,
        dtmf: Dtmf,
        #[serde(default)]
        stream_sid: Option<String>,
    },
    /// The stream ended (the call hung up or the stream was stopped).
    #[serde(rename_all = "camelCase")]
    Stop {
        #[serde(default)]
        sequence_number: Option<String>,
        #[serde(default)]
        stop: StopMeta,
        #[serde(default)]
        stream_sid: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    pub stream_sid: String,
    #[serde(default)]
    pub account_sid: String,
    pub call_sid: String,
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the TwiML `<Stream>`: how golos learns the agent and the token.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
}

impl MediaFormat {
    pub fn check(&self) -> Result<(), TransportError> {
        if self.encoding == ENCODING && self.sample_rate == SAMPLE_RATE && self.channels == 1 {
            Ok(())
        } else {
            Err(TransportError::UnsupportedMediaFormat(format!(
                "{} at {} Hz with {} channels (expected {ENCODING} at 8000 Hz mono)",
                self.encoding, self.sample_rate, self.channels
            )))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// `inbound` (the caller) or `outbound`.
    #[serde(default)]
    pub track: Option<String>,
    /// Counts chunks from 1, as a string.
    #[serde(default)]
    pub chunk: Option<String>,
    /// Milliseconds since the stream started, as a string.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Base64 μ-law, 8 kHz mono, no header.
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dtmf {
    #[serde(default)]
    pub track: Option<String>,
    pub digit: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    #[serde(default)]
    pub account_sid: String,
    #[serde(default)]
    pub call_sid: String,
}

/// Messages to the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Outbound {
    /// Audio to play to the caller.
    #[serde(rename_all = "camelCase")]
    Media { stream_sid: String, media: OutboundMedia },
    /// Echoed back by the provider once everything sent before it has played.
    #[serde(rename_all = "camelCase")]
    Mark { stream_sid: String, mark: MarkName },
    /// Barge-in: drop every buffered audio message.
    #[serde(rename_all = "camelCase")]
    Clear { stream_sid: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMedia {
    pub payload: String,
}

impl Outbound {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("outbound messages serialize")
    }
}

const EVENTS: [&str; 6] = ["connected", "start", "media", "mark", "dtmf", "stop"];

#[derive(Deserialize)]
struct EventOnly {
    event: String,
}

/// Parses one text message from the provider.
pub fn parse_inbound(text: &str) -> Result<Inbound, TransportError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TransportError::MessageTooLarge { len: text.len(), max: MAX_TEXT_BYTES });
    }
    serde_json::from_str(text).map_err(|err| match serde_json::from_str::<EventOnly>(text) {
        Ok(EventOnly { event }) if !EVENTS.contains(&event.as_str()) => TransportError::UnknownType(event),
        _ => TransportError::InvalidMessage(err.to_string()),
    })
}

/// Decodes a `media` payload to μ-law bytes, refusing bad base64 and chunks over 100 ms.
pub fn decode_payload(payload: &str) -> Result<Vec<u8>, TransportError> {
    // Base64 is 4 characters per 3 bytes: refuse before decoding anything oversized.
    if payload.len() > MAX_MEDIA_BYTES.div_ceil(3) * 4 {
        return Err(TransportError::InvalidAudioFrame { len: payload.len() / 4 * 3, reason: "longer than 100 ms" });
    }
    let bytes = BASE64.decode(payload).map_err(|e| TransportError::InvalidPayload(e.to_string()))?;
    if bytes.is_empty() {
        return Err(TransportError::InvalidAudioFrame { len: 0, reason: "empty" });
    }
    if bytes.len() > MAX_MEDIA_BYTES {
        return Err(TransportError::InvalidAudioFrame { len: bytes.len(), reason: "longer than 100 ms" });
    }
    Ok(bytes)
}

/// PCM16 at 8 kHz to a base64 μ-law payload.
pub fn encode_payload(samples_8k: &[i16]) -> String {
    BASE64.encode(g711::mulaw_encode_all(samples_8k))
}

/// The caller's audio from `media` messages to 20 ms frames at the pipeline's rate: base64 →
/// μ-law → PCM16 8 kHz → reorder by `chunk` → 20 ms framing → resampling.
#[derive(Debug)]
pub struct AudioIn {
    jitter: InputJitter,
    resampler: Resampler,
}

impl AudioIn {
    pub fn new(pipeline_rate: u32) -> Result<Self, TransportError> {
        Ok(Self { jitter: InputJitter::new(SAMPLE_RATE), resampler: Resampler::new(SAMPLE_RATE, pipeline_rate)? })
    }

    /// Takes one `media` message; audio of other tracks than the caller's is ignored.
    pub fn push(&mut self, media: &Media) -> Result<(), TransportError> {
        if media.track.as_deref().is_some_and(|t| t != "inbound" && t != "inbound_track") {
            return Ok(());
        }
        let samples = g711::mulaw_decode_all(&decode_payload(&media.payload)?);
        match media.chunk.as_deref().and_then(|c| c.parse::<u64>().ok()) {
            Some(chunk) => self.jitter.push(chunk, &samples),
            None => self.jitter.push_in_order(&samples),
        }
        Ok(())
    }

    /// The next 20 ms frame at the pipeline's rate, if one is complete.
    pub fn pop_frame(&mut self) -> Result<Option<Arc<[i16]>>, TransportError> {
        let Some(frame) = self.jitter.pop_frame() else { return Ok(None) };
        Ok(Some(self.resampler.process(&frame)?.into()))
    }

    pub const fn jitter(&self) -> &InputJitter {
        &self.jitter
    }
}

/// Our audio to `media` messages: a 20 ms frame at the pipeline's rate → 8 kHz → μ-law → base64.
#[derive(Debug)]
pub struct AudioOut {
    stream_sid: String,
    resampler: Resampler,
    pcm_8k: Vec<i16>,
}

impl AudioOut {
    pub fn new(stream_sid: impl Into<String>, pipeline_rate: u32) -> Result<Self, TransportError> {
        Ok(Self {
            stream_sid: stream_sid.into(),
            resampler: Resampler::new(pipeline_rate, SAMPLE_RATE)?,
            pcm_8k: vec![0; samples_per_frame(SAMPLE_RATE)],
        })
    }

    /// One `media` message for one 20 ms frame at the pipeline's rate.
    pub fn media(&mut self, frame: &[i16]) -> Result<Outbound, TransportError> {
        self.resampler.process_into(frame, &mut self.pcm_8k)?;
        Ok(Outbound::Media {
            stream_sid: self.stream_sid.clone(),
            media: OutboundMedia { payload: encode_payload(&self.pcm_8k) },
        })
    }

    pub fn mark(&self, name: impl Into<String>) -> Outbound {
        Outbound::Mark { stream_sid: self.stream_sid.clone(), mark: MarkName { name: name.into() } }
    }

    /// The answer to a barge-in; also forgets the resampler's history so the cut-off audio
    /// does not ring into the next utterance.
    pub fn clear(&mut self) -> Outbound {
        self.resampler.reset();
        Outbound::Clear { stream_sid: self.stream_sid.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1",
        "callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
        "customParameters":{"agent_id":"ag_1","token":"ct_2"}},"streamSid":"MZ1"}"#;

    #[test]
    fn parses_every_documented_inbound_message() {
        assert_eq!(
            parse_inbound(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#).unwrap(),
            Inbound::Connected { protocol: "Call".into(), version: "1.0.0".into() }
        );
        let Inbound::Start { start, stream_sid, .. } = parse_inbound(START).unwrap() else { panic!("not start") };
        assert_eq!(
            (start.stream_sid.as_str(), start.call_sid.as_str(), stream_sid.as_deref()),
            ("MZ1", "CA1", Some("MZ1"))
        );
        assert_eq!(start.custom_parameters["agent_id"], "ag_1");
        start.media_format.check().unwrap();

        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5",
            "payload":"//8="},"streamSid":"MZ1"}"#;
        let Inbound::Media { media, .. } = parse_inbound(media).unwrap() else { panic!("not media") };
        assert_eq!((media.chunk.as_deref(), media.timestamp.as_deref()), (Some("1"), Some("5")));
        assert_eq!(decode_payload(&media.payload).unwrap(), vec![0xFF, 0xFF]);

        let mark = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"turn-1"}}"#;
        assert!(
            matches!(parse_inbound(mark).unwrap(), Inbound::Mark { mark: MarkName { name }, .. } if name == "turn-1")
        );
        let dtmf =
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
        assert!(matches!(parse_inbound(dtmf).unwrap(), Inbound::Dtmf { dtmf: Dtmf { digit, .. }, .. } if digit == "1"));
        let stop =
            r#"{"event":"stop","sequenceNumber":"6","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert!(
            matches!(parse_inbound(stop).unwrap(), Inbound::Stop { stop: StopMeta { call_sid, .. }, .. } if call_sid == "CA1")
        );
    }

    #[test]
    fn outbound_messages_have_twilio_shapes() {
        let mut out = AudioOut::new("MZ1", 16_000).unwrap();
        let Outbound::Media { stream_sid, media } = out.media(&[0; 320]).unwrap() else { panic!("not media") };
        assert_eq!(stream_sid, "MZ1");
        assert_eq!(decode_payload(&media.payload).unwrap().len(), 160);
        let value = |m: &Outbound| serde_json::from_str::<serde_json::Value>(&m.to_json()).unwrap();
        assert_eq!(value(&out.mark("m1")), json!({"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}));
        assert_eq!(value(&out.clear()), json!({"event":"clear","streamSid":"MZ1"}));
        let media = Outbound::Media { stream_sid: "MZ1".into(), media: OutboundMedia { payload: "AA==".into() } };
        assert_eq!(value(&media), json!({"event":"media","streamSid":"MZ1","media":{"payload":"AA=="}}));
    }

    #[test]
    fn refusals_carry_stable_codes() {
        let code = |text: &str| parse_inbound(text).unwrap_err().code();
        assert_eq!(code(r#"{"event":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"event":"media","media":{}}"#), "invalid_message");
        assert_eq!(code("{"), "invalid_message");
        assert_eq!(decode_payload("***").unwrap_err().code(), "invalid_payload");
        assert_eq!(decode_payload("").unwrap_err().code(), "invalid_audio_frame");
        assert_eq!(decode_payload(&BASE64.encode([0xFF; 801])).unwrap_err().code(), "invalid_audio_frame");
        assert!(decode_payload(&BASE64.encode([0xFF; 800])).is_ok());
        let alaw = MediaFormat { encoding: "audio/x-alaw".into(), sample_rate: 8_000, channels: 1 };
        assert_eq!(alaw.check().unwrap_err().code(), "unsupported_media_format");
    }

    #[test]
    fn mulaw_payload_round_trips_through_pcm() {
        let all_codes: Vec<u8> = (0..=255).collect();
        let payload = BASE64.encode(&all_codes);
        let pcm = g711::mulaw_decode_all(&decode_payload(&payload).unwrap());
        let again = decode_payload(&encode_payload(&pcm)).unwrap();
        for (original, back) in all_codes.iter().zip(&again) {
            // 0x7F is μ-law's negative zero; it decodes to 0, which encodes as 0xFF.
            let expected = if *original == 0x7F { 0xFF } else { *original };
            assert_eq!(*back, expected);
        }
    }

    #[test]
    fn inbound_audio_reaches_the_pipeline_as_20ms_frames_in_chunk_order() {
        let mut audio_in = AudioIn::new(16_000).unwrap();
        // 60 ms as three 20 ms chunks, the third arriving before the second; a 1 kHz tone
        // survives both the reordering and the resampling.
        let tone: Vec<i16> =
            (0..480).map(|i| (8_000.0 * (f64::from(i) * std::f64::consts::TAU / 8.0).sin()) as i16).collect();
        let chunk = |n: usize| Media {
            track: Some("inbound".into()),
            chunk: Some((n + 1).to_string()),
            timestamp: None,
            payload: encode_payload(&tone[n * 160..(n + 1) * 160]),
        };
        audio_in.push(&chunk(0)).unwrap();
        audio_in.push(&chunk(2)).unwrap();
        assert!(audio_in.pop_frame().unwrap().is_some());
        assert!(audio_in.pop_frame().unwrap().is_none(), "chunk 3 waits for chunk 2");
        audio_in.push(&chunk(1)).unwrap();
        let frames: Vec<_> = std::iter::from_fn(|| audio_in.pop_frame().unwrap()).collect();
        assert_eq!(frames.iter().map(|f| f.len()).collect::<Vec<_>>(), vec![320, 320]);
        let energy: f64 = frames[1].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 320.0;
        assert!(energy.sqrt() > 3_000.0, "tone lost: rms {}", energy.sqrt());
        assert_eq!(audio_in.jitter().stats().reordered, 1);
        // Outbound audio of the other track is not the caller's.
        audio_in.push(&Media { track: Some("outbound".into()), chunk: Some("4".into()), ..chunk(0) }).unwrap();
        assert!(audio_in.pop_frame().unwrap().is_none());
    }

    proptest! {
        #[test]
        fn no_text_panics_the_parser(text in ".{0,300}") {
            let _ = parse_inbound(&text);
        }

        #[test]
        fn no_bytes_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_inbound(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn no_media_sequence_panics_the_audio_path(
            chunks in prop::collection::vec((prop::option::of("[0-9]{1,22}|-1|x"), prop::collection::vec(any::<u8>(), 0..900)), 0..30),
        ) {
            let mut audio_in = AudioIn::new(16_000).unwrap();
            for (chunk, mulaw) in chunks {
                let media = Media { track: Some("inbound".into()), chunk, timestamp: None, payload: BASE64.encode(&mulaw) };
                let _ = audio_in.push(&media);
                while let Ok(Some(frame)) = audio_in.pop_frame() {
                    prop_assert_eq!(frame.len(), 320);
                }
            }
        }

        #[test]
        fn no_payload_panics_the_decoder(payload in "[A-Za-z0-9+/=*]{0,1200}") {
            let _ = decode_payload(&payload);
            let mut audio_in = AudioIn::new(16_000).unwrap();
            let _ = audio_in.push(&Media { track: None, chunk: None, timestamp: None, payload });
            while let Ok(Some(_)) = audio_in.pop_frame() {}
        }
    }
}
