//! The golos WebSocket protocol ([`run`]) and the Twilio Media Streams dialect ([`run_twilio`])
//! on an upgraded axum socket: reads control messages and audio,
//! hands the call driver 20 ms frames at the pipeline's rate, and writes the driver's outputs
//! with paced playout. The driver implements [`CallSession`]; this module knows nothing of
//! agents, auth or the engine.
//!
//! One task per connection runs a single `select!` over the socket, the session's outputs and
//! the playout deadline, so reads, writes and pacing never race on shared state.

use crate::error::TransportError;
use crate::golos::{self, AudioIn, AudioOut, ClientMessage, ServerMessage};
use crate::playout::{Frame, Packet, Playout};
use crate::twilio::{self, Inbound, Outbound};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The largest WebSocket message either dialect accepts (a Twilio `start` with custom
/// parameters is the largest). Give it to `WebSocketUpgrade::max_message_size` so the socket
/// refuses bigger messages before buffering them (axum's default is 64 MiB).
pub const MAX_MESSAGE_BYTES: usize = twilio::MAX_TEXT_BYTES;

/// How long a client has after connecting to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's `start`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub agent_id: String,
    pub token: String,
    /// The client's audio rate; the session always sees the pipeline's rate.
    pub sample_rate: u32,
    pub call_id: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An admitted call: its id and the stream of what to send the caller.
#[derive(Debug)]
pub struct Admitted {
    pub call_id: String,
    pub outputs: mpsc::Receiver<SessionOutput>,
}

/// Why a `start` was refused; sent as `error {code, message}` then `ended`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// One of [`golos::codes`].
    pub code: &'static str,
    pub message: String,
}

/// What the driver sends the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// 20 ms of audio at the pipeline's rate; paced by the transport.
    Audio(Frame),
    /// Answered with `mark` right after the audio before it has been sent.
    Mark(String),
    /// Barge-in: queued audio is dropped and the client told to flush.
    Clear,
    /// `transcript`, `state`, `turn_metrics` or a non-fatal `error`; sent at once.
    Event(ServerMessage),
    /// End the call: the queued audio is played out, then `ended {reason}` and close.
    End { reason: String },
}

/// The call driver's side of a connection. Callbacks are synchronous and must not block:
/// they hand work to the driver (a shard's queue), whose answers come back as
/// [`SessionOutput`]s.
pub trait CallSession: Send + 'static {
    /// Authenticate and admit (or resume) the call.
    fn on_start(&mut self, start: StartRequest) -> impl Future<Output = Result<Admitted, Refusal>> + Send;
    /// One 20 ms frame of the caller's audio at the pipeline's rate.
    fn on_audio(&mut self, frame: Frame);
    /// The client played everything up to this mark.
    fn on_mark(&mut self, name: String);
    fn on_dtmf(&mut self, digit: char);
    /// The client sent `hangup` or the socket closed. The session should end the call (and
    /// send [`SessionOutput::End`] if the socket may still be open).
    fn on_hangup(&mut self);
}

/// How a connection ended, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The session ended the call with this reason.
    Ended(String),
    /// The client hung up or disconnected.
    ClientGone,
    /// The start was refused or never came.
    NotStarted(&'static str),
}

/// Runs the golos protocol on `socket` until the call ends. `pipeline_rate` is the rate of
/// the frames the session sees and produces.
pub async fn run<S: CallSession>(mut socket: WebSocket, mut session: S, pipeline_rate: u32) -> Outcome {
    let start = match tokio::time::timeout(START_TIMEOUT, first_start(&mut socket)).await {
        Ok(Ok(start)) => start,
        Ok(Err(Some(err))) => {
            refuse(&mut socket, err.code(), &err.to_string()).await;
            return Outcome::NotStarted(err.code());
        }
        Ok(Err(None)) => return Outcome::NotStarted("disconnected"),
        Err(_) => {
            refuse(&mut socket, "protocol_violation", "no start message within 10 s").await;
            return Outcome::NotStarted("protocol_violation");
        }
    };
    let client_rate = start.sample_rate;
    let (mut audio_in, mut audio_out) =
        match (AudioIn::new(client_rate, pipeline_rate), AudioOut::new(pipeline_rate, client_rate)) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(err), _) | (_, Err(err)) => {
                refuse(&mut socket, err.code(), &err.to_string()).await;
                return Outcome::NotStarted(err.code());
            }
        };
    let Admitted { call_id, mut outputs } = match session.on_start(start).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            refuse(&mut socket, refusal.code, &refusal.message).await;
            return Outcome::NotStarted(refusal.code);
        }
    };
    if send_json(&mut socket, &ServerMessage::Started { call_id, sample_rate: client_rate }).await.is_err() {
        session.on_hangup();
        return Outcome::ClientGone;
    }

    let mut playout = Playout::new(Instant::now().into_std());
    let mut ending: Option<String> = None;
    let mut outputs_open = true;
    loop {
        if let Some(reason) = &ending {
            if playout.is_empty() {
                let _ = send_json(&mut socket, &ServerMessage::Ended { reason: reason.clone() }).await;
                let _ = socket.send(Message::Close(None)).await;
                return Outcome::Ended(reason.clone());
            }
        }
        let deadline = playout.next_deadline().map(Instant::from_std);
        tokio::select! {
            inbound = socket.recv() => {
                let Some(Ok(message)) = inbound else {
                    session.on_hangup();
                    return Outcome::ClientGone;
                };
                let result = match message {
                    Message::Binary(bytes) => on_binary(&mut session, &mut audio_in, &bytes),
                    Message::Text(text) => match golos::parse_client_text(text.as_str()) {
                        Ok(ClientMessage::Start { .. }) => Err(TransportError::Protocol("a second start")),
                        Ok(ClientMessage::Mark { name }) => { session.on_mark(name); Ok(()) }
                        Ok(ClientMessage::Dtmf { digit }) => {
                            // Validated by the parser: exactly one key.
                            session.on_dtmf(digit.chars().next().unwrap_or('0'));
                            Ok(())
                        }
                        Ok(ClientMessage::Hangup {}) => {
                            session.on_hangup();
                            let _ = send_json(&mut socket, &ServerMessage::Ended { reason: "hangup".into() }).await;
                            let _ = socket.send(Message::Close(None)).await;
                            return Outcome::ClientGone;
                        }
                        Err(err) => Err(err),
                    },
                    Message::Close(_) => {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                    // Pings are answered by the WebSocket layer.
                    Message::Ping(_) | Message::Pong(_) => Ok(()),
                };
                // Bad messages are reported and skipped: one malformed frame should not end a
                // call the caller is in the middle of.
                if let Err(err) = result {
                    if send_json(&mut socket, &ServerMessage::error(&err)).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
            }
            output = outputs.recv(), if outputs_open => match output {
                Some(SessionOutput::Audio(frame)) => playout.push(frame),
                Some(SessionOutput::Mark(name)) => playout.push_mark(name),
                Some(SessionOutput::Clear) => {
                    // Marks behind the dropped audio are never answered: the client did not
                    // get that audio, so it has nothing to acknowledge.
                    playout.clear();
                    audio_out.reset();
                    if send_json(&mut socket, &ServerMessage::Clear).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
                Some(SessionOutput::Event(event)) => {
                    if send_json(&mut socket, &event).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
                Some(SessionOutput::End { reason }) => ending = Some(reason),
                None => {
                    outputs_open = false;
                    ending.get_or_insert_with(|| "ended".into());
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now().into_std();
                while let Some(packet) = playout.poll(now) {
                    let message = match packet {
                        Packet::Audio(frame) => match audio_out.encode(&frame) {
                            Ok(bytes) => Message::Binary(Bytes::from(bytes)),
                            Err(err) => {
                                tracing::warn!(error = %err, "dropping an outbound frame");
                                continue;
                            }
                        },
                        Packet::Mark(name) => text(&ServerMessage::Mark { name }),
                    };
                    if socket.send(message).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

fn on_binary<S: CallSession>(session: &mut S, audio_in: &mut AudioIn, bytes: &[u8]) -> Result<(), TransportError> {
    audio_in.push(bytes)?;
    while let Some(frame) = audio_in.pop_frame()? {
        session.on_audio(frame);
    }
    Ok(())
}

/// Waits for the first message and requires it to be a valid `start`. `Err(None)`: the
/// client went away.
async fn first_start(socket: &mut WebSocket) -> Result<StartRequest, Option<TransportError>> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                return match golos::parse_client_text(text.as_str()).map_err(Some)? {
                    ClientMessage::Start { agent_id, token, sample_rate, call_id, metadata } => {
                        Ok(StartRequest { agent_id, token, sample_rate, call_id, metadata })
                    }
                    _ => Err(Some(TransportError::Protocol("the first message must be start"))),
                };
            }
            Some(Ok(Message::Binary(_))) => return Err(Some(TransportError::Protocol("audio before start"))),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(None),
        }
    }
}

async fn refuse(socket: &mut WebSocket, code: &str, message: &str) {
    let error = ServerMessage::Error { code: code.to_owned(), message: message.to_owned() };
    let _ = send_json(socket, &error).await;
    let _ = send_json(socket, &ServerMessage::Ended { reason: "refused".into() }).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

async fn send_json(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    socket.send(text(message)).await
}

/// Runs the Twilio Media Streams dialect on `socket` (a provider's bidirectional stream)
/// until the stream stops or the session ends the call. The agent and token come from the
/// stream's custom parameters `agent_id` and `token` (and `call_id` to resume); the provider's
/// ids and the other parameters go to [`StartRequest::metadata`]. Twilio has no channel for
/// transcripts or errors, so [`SessionOutput::Event`]s are dropped and a refused start just
/// closes the socket (the TwiML after `<Connect>` then runs, or the call ends).
pub async fn run_twilio<S: CallSession>(mut socket: WebSocket, mut session: S, pipeline_rate: u32) -> Outcome {
    let start = match tokio::time::timeout(START_TIMEOUT, twilio_start(&mut socket)).await {
        Ok(Ok(start)) => start,
        Ok(Err(Some(err))) => {
            tracing::info!(error = %err, "refusing a media stream");
            let _ = socket.send(Message::Close(None)).await;
            return Outcome::NotStarted(err.code());
        }
        Ok(Err(None)) => return Outcome::NotStarted("disconnected"),
        Err(_) => {
            let _ = socket.send(Message::Close(None)).await;
            return Outcome::NotStarted("protocol_violation");
        }
    };
    let (mut audio_in, mut audio_out) =
        match (twilio::AudioIn::new(pipeline_rate), twilio::AudioOut::new(start.stream_sid.clone(), pipeline_rate)) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "media stream codecs");
                let _ = socket.send(Message::Close(None)).await;
                return Outcome::NotStarted(err.code());
            }
        };
    let Admitted { mut outputs, .. } = match session.on_start(start.request).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(code = refusal.code, message = %refusal.message, "media stream refused");
            let _ = socket.send(Message::Close(None)).await;
            return Outcome::NotStarted(refusal.code);
        }
    };

    let mut playout = Playout::new(Instant::now().into_std());
    let mut ending: Option<String> = None;
    let mut outputs_open = true;
    loop {
        if let Some(reason) = &ending {
            if playout.is_empty() {
                let _ = socket.send(Message::Close(None)).await;
                return Outcome::Ended(reason.clone());
            }
        }
        let deadline = playout.next_deadline().map(Instant::from_std);
        tokio::select! {
            inbound = socket.recv() => {
                let text = match inbound {
                    Some(Ok(Message::Text(text))) => text,
                    // Providers send no binary messages; pings are answered by the WebSocket layer.
                    Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                };
                let result = match twilio::parse_inbound(text.as_str()) {
                    Ok(Inbound::Media { media, .. }) => on_twilio_media(&mut session, &mut audio_in, &media),
                    Ok(Inbound::Mark { mark, .. }) => {
                        session.on_mark(mark.name);
                        Ok(())
                    }
                    Ok(Inbound::Dtmf { dtmf, .. }) => golos::validate_dtmf(&dtmf.digit).map(|digit| session.on_dtmf(digit)),
                    Ok(Inbound::Stop { .. }) => {
                        session.on_hangup();
                        let _ = socket.send(Message::Close(None)).await;
                        return Outcome::ClientGone;
                    }
                    Ok(Inbound::Connected { .. } | Inbound::Start { .. }) => Err(TransportError::Protocol("a second start")),
                    Err(err) => Err(err),
                };
                // Nowhere to report it: log and skip, the call goes on.
                if let Err(err) = result {
                    tracing::debug!(error = %err, code = err.code(), "skipping a media stream message");
                }
            }
            output = outputs.recv(), if outputs_open => match output {
                Some(SessionOutput::Audio(frame)) => playout.push(frame),
                Some(SessionOutput::Mark(name)) => playout.push_mark(name),
                Some(SessionOutput::Clear) => {
                    // Marks already sent are echoed by the provider when it drops their audio;
                    // the ones still queued here were never sent, so nothing was played.
                    playout.clear();
                    if socket.send(json(&audio_out.clear())).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
                Some(SessionOutput::Event(_)) => {}
                Some(SessionOutput::End { reason }) => ending = Some(reason),
                None => {
                    outputs_open = false;
                    ending.get_or_insert_with(|| "ended".into());
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now().into_std();
                while let Some(packet) = playout.poll(now) {
                    let message = match packet {
                        Packet::Audio(frame) => match audio_out.media(&frame) {
                            Ok(media) => json(&media),
                            Err(err) => {
                                tracing::warn!(error = %err, "dropping an outbound frame");
                                continue;
                            }
                        },
                        Packet::Mark(name) => json(&audio_out.mark(name)),
                    };
                    if socket.send(message).await.is_err() {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                }
            }
        }
    }
}

struct TwilioStart {
    stream_sid: String,
    request: StartRequest,
}

/// Skips `connected` and waits for `start`. `Err(None)`: the provider went away.
async fn twilio_start(socket: &mut WebSocket) -> Result<TwilioStart, Option<TransportError>> {
    loop {
        let text = match socket.recv().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(None),
        };
        match twilio::parse_inbound(text.as_str()) {
            Ok(Inbound::Connected { .. }) | Err(TransportError::UnknownType(_)) => {}
            Ok(Inbound::Start { start, .. }) => return twilio_request(start).map_err(Some),
            Ok(_) => return Err(Some(TransportError::Protocol("media before start"))),
            Err(err) => return Err(Some(err)),
        }
    }
}

fn twilio_request(start: twilio::StartMeta) -> Result<TwilioStart, TransportError> {
    start.media_format.check()?;
    let mut parameters = start.custom_parameters;
    let (Some(agent_id), Some(token)) = (parameters.remove("agent_id"), parameters.remove("token")) else {
        return Err(TransportError::InvalidMessage("the stream needs the custom parameters agent_id and token".into()));
    };
    let call_id = parameters.remove("call_id");
    let mut metadata: serde_json::Map<String, serde_json::Value> =
        parameters.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    metadata.insert("provider_call_sid".into(), start.call_sid.into());
    metadata.insert("provider_stream_sid".into(), start.stream_sid.clone().into());
    metadata.insert("provider_account_sid".into(), start.account_sid.into());
    Ok(TwilioStart {
        stream_sid: start.stream_sid,
        request: StartRequest { agent_id, token, sample_rate: twilio::SAMPLE_RATE, call_id, metadata: Some(metadata) },
    })
}

fn on_twilio_media<S: CallSession>(
    session: &mut S,
    audio_in: &mut twilio::AudioIn,
    media: &twilio::Media,
) -> Result<(), TransportError> {
    audio_in.push(media)?;
    while let Some(frame) = audio_in.pop_frame()? {
        session.on_audio(frame);
    }
    Ok(())
}

fn json(message: &Outbound) -> Message {
    Message::Text(message.to_json().into())
}
