//! Deepgram live transcription over a WebSocket (API reference, "Live audio" and the feature
//! pages): GET `{base}/v1/listen?encoding=linear16&sample_rate=…&interim_results=…&endpointing=…`
//! with `Authorization: Token <key>`; binary frames of audio up, `Results` (`is_final`,
//! `speech_final`, `channel.alternatives[0].transcript/confidence`), `SpeechStarted` and
//! `UtteranceEnd` down. `{"type":"KeepAlive"}` holds a quiet connection open (Deepgram closes
//! after 10 s without audio); `{"type":"CloseStream"}` asks for the last results and a close.

use crate::stt::{SttBackend, SttConfig, SttEvent, SttProvider, SttSession, Transcript};
use crate::ProviderError;
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use golos_egress::EgressAllowlist;
use golos_ports::SecretString;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::Connector;

pub const DEEPGRAM_BASE_URL: &str = "wss://api.deepgram.com";
pub const DEEPGRAM_DEFAULT_MODEL: &str = "nova-2";

#[derive(Debug, Clone)]
pub struct DeepgramConfig {
    pub name: String,
    /// `wss://api.deepgram.com`, or `ws://` for a local server.
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    /// Without audio for this long, a KeepAlive goes out.
    pub keepalive_every: Duration,
    /// `utterance_end_ms`: a gap between words this long sends `UtteranceEnd`.
    pub utterance_end_ms: Option<u32>,
}

impl DeepgramConfig {
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            name: "deepgram".into(),
            base_url: base_url.into(),
            api_key,
            model: DEEPGRAM_DEFAULT_MODEL.into(),
            keepalive_every: Duration::from_secs(5),
            utterance_end_ms: Some(1_000),
        }
    }
}

/// Deepgram's messages are small JSON results (a transcript and its words); anything larger
/// than this, in one message or one frame, is a failing server and ends the session.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct DeepgramStt {
    config: DeepgramConfig,
    /// The operator's egress exceptions: the socket is connected under the policy.
    egress: Arc<EgressAllowlist>,
}

impl DeepgramStt {
    pub fn new(config: DeepgramConfig, egress: Arc<EgressAllowlist>) -> Self {
        Self { config, egress }
    }

    fn url(&self, stt: &SttConfig) -> String {
        let mut url = format!(
            "{}/v1/listen?model={}&language={}&encoding=linear16&sample_rate={}&channels=1&interim_results={}&endpointing={}&vad_events=true&smart_format=true",
            self.config.base_url.trim_end_matches('/'),
            query_value(&self.config.model),
            query_value(&stt.language),
            stt.sample_rate,
            stt.interim_results,
            stt.endpointing_ms,
        );
        // Deepgram refuses utterance_end_ms without interim results.
        if let Some(ms) = self.config.utterance_end_ms.filter(|_| stt.interim_results) {
            let _ = write!(url, "&utterance_end_ms={ms}");
        }
        url
    }
}

fn query_value(value: &str) -> String {
    crate::elevenlabs::urlencode_path(value)
}

/// TLS with ring chosen explicitly: the workspace links both of rustls's crypto providers, and
/// then rustls cannot pick a process default by itself.
fn tls() -> Connector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    Connector::Rustls(config.clone())
}

fn handshake_error(err: tungstenite::Error) -> ProviderError {
    match err {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            ProviderError::from_status(response.status().as_u16(), &body, None)
        }
        other => ProviderError::Connection(crate::error::error_chain(&other)),
    }
}

#[async_trait]
impl SttProvider for DeepgramStt {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn open(&self, config: &SttConfig) -> Result<SttSession, ProviderError> {
        let url = self.url(config);
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| ProviderError::BadResponse(format!("bad Deepgram URL: {e}")))?;
        let mut request =
            url.into_client_request().map_err(|e| ProviderError::BadResponse(format!("bad Deepgram URL: {e}")))?;
        let token = format!("Token {}", self.config.api_key.expose());
        request.headers_mut().insert("authorization", token.parse().map_err(|_| ProviderError::Auth { status: 0 })?);
        // Deepgram's results are small JSON; the library's 128 KiB default read buffer is
        // zero-filled before every read, a real cost with hundreds of calls per worker.
        let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        // The policy picks the address (resolved, checked), then the TLS and WebSocket
        // handshakes run over that very connection: nothing re-resolves the name.
        let tcp = golos_egress::net::connect_websocket_tcp(&self.egress, &parsed).await?;
        // Audio goes out as small frames, one after another (see the worker's TCP_NODELAY).
        let _ = tcp.set_nodelay(true);
        let handshake = tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(ws_config), Some(tls()));
        let (socket, _) = tokio::time::timeout(golos_egress::net::CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| ProviderError::Timeout("the Deepgram handshake did not finish".into()))?
            .map_err(handshake_error)?;
        let (session, backend) = SttSession::channel(self.config.name.clone());
        tokio::spawn(run(socket, backend, self.config.keepalive_every));
        Ok(session)
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn control(kind: &str) -> WsMessage {
    WsMessage::text(format!("{{\"type\":\"{kind}\"}}"))
}

/// Serves one session until Deepgram closes it, the connection fails or the caller goes away.
async fn run(socket: Socket, backend: SttBackend, keepalive_every: Duration) {
    let SttBackend { mut audio, events } = backend;
    let (mut sink, mut stream) = socket.split();
    let mut audio_open = true;
    let mut send_error = None;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + keepalive_every, keepalive_every);
    let outcome: Result<(), ProviderError> = loop {
        tokio::select! {
            frame = audio.recv(), if audio_open => {
                let sent = if let Some(samples) = frame {
                    keepalive.reset();
                    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                    sink.send(WsMessage::binary(bytes)).await
                } else {
                    audio_open = false;
                    sink.send(control("CloseStream")).await
                };
                if let Err(e) = sent {
                    // The server may have closed with a reason that is still to be read.
                    audio_open = false;
                    send_error = Some(ProviderError::Connection(crate::error::error_chain(&e)));
                }
            }
            _ = keepalive.tick(), if audio_open => {
                if let Err(e) = sink.send(control("KeepAlive")).await {
                    audio_open = false;
                    send_error = Some(ProviderError::Connection(crate::error::error_chain(&e)));
                }
            }
            () = events.closed() => {
                // The caller dropped the session: say goodbye politely, nobody reads the rest.
                let _ = sink.send(control("CloseStream")).await;
                return;
            }
            message = stream.next() => match message {
                Some(Ok(WsMessage::Text(text))) => match parse(text.as_str()) {
                    Ok(Some(event)) => {
                        if events.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => break Err(e),
                },
                Some(Ok(WsMessage::Close(frame))) => break close_outcome(frame.as_ref()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(ProviderError::Connection(crate::error::error_chain(&e))),
                None => match send_error.take() {
                    Some(e) => break Err(e),
                    None if audio_open => break Err(ProviderError::Connection("Deepgram closed the connection".into())),
                    None => break Ok(()),
                },
            }
        }
    };
    if let Err(e) = outcome {
        let _ = events.send(Err(e)).await;
    }
}

fn close_outcome(frame: Option<&tungstenite::protocol::CloseFrame>) -> Result<(), ProviderError> {
    let Some(frame) = frame else { return Ok(()) };
    let reason = frame.reason.to_string();
    match frame.code {
        CloseCode::Normal => Ok(()),
        CloseCode::Error | CloseCode::Again | CloseCode::Restart => {
            Err(ProviderError::Server { status: 500, message: format!("closed {}: {reason}", u16::from(frame.code)) })
        }
        // 1008 is Deepgram's DATA-0000 (audio it cannot decode); 1011 above covers NET-0000
        // (internal error) and NET-0001 (no audio nor KeepAlive for 10 s).
        code => Err(ProviderError::BadResponse(format!("closed {}: {reason}", u16::from(code)))),
    }
}

/// One server message as an event; `None` for messages the caller has no use for (Metadata).
fn parse(text: &str) -> Result<Option<SttEvent>, ProviderError> {
    let message: Value = serde_json::from_str(text).map_err(|e| {
        ProviderError::BadResponse(format!("Deepgram message is not JSON ({e}): {}", crate::openai::cut(text)))
    })?;
    match message.get("type").and_then(Value::as_str) {
        Some("Results") => {
            let alternative = message.pointer("/channel/alternatives/0");
            let text = alternative.and_then(|a| a.get("transcript")).and_then(Value::as_str).unwrap_or_default();
            let confidence = alternative.and_then(|a| a.get("confidence")).and_then(Value::as_f64).unwrap_or(0.0);
            let is_final = message.get("is_final").and_then(Value::as_bool).unwrap_or(false);
            let speech_final = message.get("speech_final").and_then(Value::as_bool).unwrap_or(false);
            // Silence yields empty results; only an endpoint makes one worth passing on.
            if text.is_empty() && !speech_final {
                return Ok(None);
            }
            Ok(Some(SttEvent::Transcript(Transcript {
                text: text.to_owned(),
                confidence: confidence as f32,
                is_final,
                speech_final,
            })))
        }
        Some("SpeechStarted") => Ok(Some(SttEvent::SpeechStarted)),
        Some("UtteranceEnd") => Ok(Some(SttEvent::UtteranceEnd)),
        Some("Error") => {
            let description = message.get("description").and_then(Value::as_str).unwrap_or("error");
            Err(ProviderError::Server { status: 500, message: description.to_owned() })
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_connector_builds_without_a_process_default_provider() {
        assert!(matches!(tls(), Connector::Rustls(_)));
    }

    #[test]
    fn maps_results_and_events() {
        let result = r#"{"type":"Results","channel_index":[0,1],"duration":1.2,"start":0.0,"is_final":true,"speech_final":true,
            "channel":{"alternatives":[{"transcript":"когда вы открыты","confidence":0.91,"words":[]}]}}"#;
        assert_eq!(
            parse(result).unwrap(),
            Some(SttEvent::Transcript(Transcript {
                text: "когда вы открыты".into(),
                confidence: 0.91,
                is_final: true,
                speech_final: true
            }))
        );
        let silence = r#"{"type":"Results","is_final":false,"speech_final":false,"channel":{"alternatives":[{"transcript":"","confidence":0.0}]}}"#;
        assert_eq!(parse(silence).unwrap(), None);
        assert_eq!(parse(r#"{"type":"SpeechStarted","timestamp":0.5}"#).unwrap(), Some(SttEvent::SpeechStarted));
        assert_eq!(parse(r#"{"type":"UtteranceEnd","last_word_end":2.1}"#).unwrap(), Some(SttEvent::UtteranceEnd));
        assert_eq!(parse(r#"{"type":"Metadata","request_id":"x"}"#).unwrap(), None);
        assert!(matches!(parse("{\"type\":\"Resu"), Err(ProviderError::BadResponse(_))));
    }
}
