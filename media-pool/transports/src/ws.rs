//! The golos WebSocket protocol ([`run`]) and the Twilio Media Streams dialect ([`run_twilio`])
//! on an upgraded axum socket: reads control messages and audio,
//! hands the call driver 20 ms frames at the pipeline's rate, and writes the driver's outputs
//! with paced playout. The driver implements [`CallSession`]; this module knows nothing of
//! agents, auth or the engine.
//!
//! One task per connection runs a single `select!` over the socket, the session's outputs and
//! the playout deadline, so reads, writes and pacing never race on shared state.

use crate::error::TransportError;
use crate::golos::{self, codes, AudioIn, AudioOut, ClientMessage, ServerMessage};
use crate::limits::{self, EdgeCounters, RateLimiter, AUDIO_BURST, DTMF_BURST, DTMF_COST};
use crate::playout::{Frame, Packet, Playout};
use crate::twilio::{self, Inbound, Outbound};
use axum::body::Bytes;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocketUpgrade};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a client has after connecting to send `start`. Until then the socket is
/// unauthenticated: a browser or a provider sends `start` within milliseconds of the
/// upgrade, so 5 s is generous to them and short for a peer that only wants to hold sockets.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one write may wait for the peer to take it. Audio goes out paced at 20 ms, so a
/// healthy client never holds a write for more than a moment; 10 s covers a mobile network's
/// stall and is short against a call.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The two dialects spoken on call sockets, for their socket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The golos protocol (`/ws/calls`): [`golos::MAX_MESSAGE_BYTES`].
    Golos,
    /// Twilio Media Streams (`/ws/twilio`): [`twilio::MAX_TEXT_BYTES`].
    Twilio,
}

impl Dialect {
    /// The largest WebSocket message, and frame, the dialect accepts.
    pub const fn max_message_bytes(self) -> usize {
        match self {
            Self::Golos => golos::MAX_MESSAGE_BYTES,
            Self::Twilio => twilio::MAX_TEXT_BYTES,
        }
    }
}

/// Applies the dialect's limits to an upgrade: a frame or message over
/// [`Dialect::max_message_bytes`] is refused from its header, before its payload is read
/// (axum's defaults are 16 MiB frames and 64 MiB messages), and the socket is closed with
/// 1009. Frames get the same cap as messages: a message is at least as large as any of its
/// fragments, so no legitimate frame is bigger.
pub fn limit_upgrade(upgrade: WebSocketUpgrade, dialect: Dialect) -> WebSocketUpgrade {
    let max = dialect.max_message_bytes();
    upgrade.max_frame_size(max).max_message_size(max)
}

/// What [`run`] and [`run_twilio`] drive: an upgraded axum socket, or anything else that
/// reads and writes axum messages the same way (tests use in-memory channels).
pub trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

/// What the transport's limits need from the worker: where to count what they drop.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub counters: Arc<EdgeCounters>,
}

/// One read from the socket, sorted by what the loop does with it.
enum Read {
    Message(Message),
    /// A frame or message over the socket's limit: answered with 1009.
    TooLarge,
    /// Closed, reset or broken.
    Gone,
}

async fn read<S: Socket>(socket: &mut S) -> Read {
    match socket.next().await {
        Some(Ok(Message::Close(_))) | None => Read::Gone,
        Some(Ok(message)) => Read::Message(message),
        Some(Err(error)) if is_too_large(&error) => Read::TooLarge,
        Some(Err(_)) => Read::Gone,
    }
}

/// Whether a read error is tungstenite's capacity error (a frame or message over the
/// limit). axum hides the error's type behind its own, and the tungstenite it uses is not
/// ours to name, so the check is on its text ("Space limit exceeded: Message too long: …");
/// `tests/ws.rs` pins it against the real stack, so an upgrade that rewords it fails there.
fn is_too_large(error: &axum::Error) -> bool {
    error.to_string().starts_with("Space limit exceeded")
}

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

/// Why no call started on a connection.
enum NoStart {
    /// The first message was not a valid `start` (or the socket sent audio first).
    Refused(TransportError),
    TooLarge,
    Gone,
}

/// The per-connection limits on what the caller sends once the call runs.
struct CallerLimits {
    audio: RateLimiter,
    dtmf: RateLimiter,
    counters: Arc<EdgeCounters>,
}

impl CallerLimits {
    fn new(edge: &Edge) -> Self {
        let now = Instant::now().into_std();
        Self {
            audio: RateLimiter::new(AUDIO_BURST, now),
            dtmf: RateLimiter::new(DTMF_BURST, now),
            counters: Arc::clone(&edge.counters),
        }
    }

    /// Whether a message carrying `samples` at `rate` may go on; drops and counts it if not.
    fn admit_audio(&mut self, samples: usize, rate: u32) -> bool {
        let admitted = self.audio.admit(limits::audio_duration(samples, rate), Instant::now().into_std());
        if !admitted {
            EdgeCounters::incr(&self.counters.caller_audio_dropped_frames);
        }
        admitted
    }

    fn admit_dtmf(&mut self) -> bool {
        let admitted = self.dtmf.admit(DTMF_COST, Instant::now().into_std());
        if !admitted {
            EdgeCounters::incr(&self.counters.caller_dtmf_dropped);
        }
        admitted
    }

    fn push(&self, playout: &mut Playout, frame: Frame) {
        if playout.push(frame) {
            EdgeCounters::incr(&self.counters.playout_shed_frames);
        }
    }
}

/// Runs the golos protocol on `socket` until the call ends. `pipeline_rate` is the rate of
/// the frames the session sees and produces.
pub async fn run<S: CallSession, W: Socket>(mut socket: W, mut session: S, pipeline_rate: u32, edge: &Edge) -> Outcome {
    let start = match tokio::time::timeout(START_TIMEOUT, first_start(&mut socket)).await {
        Ok(Ok(start)) => start,
        Ok(Err(NoStart::Refused(err))) => {
            refuse(&mut socket, err.code(), &err.to_string()).await;
            return Outcome::NotStarted(err.code());
        }
        Ok(Err(NoStart::TooLarge)) => {
            close_too_large(&mut socket, edge, "refused").await;
            return Outcome::NotStarted("message_too_large");
        }
        Ok(Err(NoStart::Gone)) => return Outcome::NotStarted("disconnected"),
        Err(_) => {
            EdgeCounters::incr(&edge.counters.start_timeouts);
            let message = format!("no start message within {} s", START_TIMEOUT.as_secs());
            let error = ServerMessage::Error { code: codes::START_TIMEOUT.to_owned(), message: message.clone() };
            let _ = send_json(&mut socket, &error).await;
            let _ = send_json(&mut socket, &ServerMessage::Ended { reason: "refused".into() }).await;
            close_with(&mut socket, close_code::POLICY, &message).await;
            return Outcome::NotStarted(codes::START_TIMEOUT);
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

    let mut caller = CallerLimits::new(edge);
    let mut playout = Playout::new(Instant::now().into_std());
    let mut ending: Option<String> = None;
    let mut outputs_open = true;
    loop {
        if let Some(reason) = &ending {
            if playout.is_empty() {
                let _ = send_json(&mut socket, &ServerMessage::Ended { reason: reason.clone() }).await;
                let _ = send(&mut socket, Message::Close(None)).await;
                return Outcome::Ended(reason.clone());
            }
        }
        let deadline = playout.next_deadline().map(Instant::from_std);
        tokio::select! {
            inbound = read(&mut socket) => {
                let message = match inbound {
                    Read::Message(message) => message,
                    Read::TooLarge => {
                        session.on_hangup();
                        close_too_large(&mut socket, edge, "message_too_large").await;
                        return Outcome::ClientGone;
                    }
                    Read::Gone => {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                };
                let result = match message {
                    Message::Binary(bytes) => {
                        if caller.admit_audio(bytes.len() / 2, client_rate) {
                            on_binary(&mut session, &mut audio_in, &bytes)
                        } else {
                            Ok(())
                        }
                    }
                    Message::Text(text) => match golos::parse_client_text(text.as_str()) {
                        Ok(ClientMessage::Start { .. }) => Err(TransportError::Protocol("a second start")),
                        Ok(ClientMessage::Mark { name }) => { session.on_mark(name); Ok(()) }
                        Ok(ClientMessage::Dtmf { digit }) => {
                            if caller.admit_dtmf() {
                                // Validated by the parser: exactly one key.
                                session.on_dtmf(digit.chars().next().unwrap_or('0'));
                            }
                            Ok(())
                        }
                        Ok(ClientMessage::Hangup {}) => {
                            session.on_hangup();
                            let _ = send_json(&mut socket, &ServerMessage::Ended { reason: "hangup".into() }).await;
                            let _ = send(&mut socket, Message::Close(None)).await;
                            return Outcome::ClientGone;
                        }
                        Err(err) => Err(err),
                    },
                    // Pings are answered by the WebSocket layer; `read` took closes.
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Ok(()),
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
                Some(SessionOutput::Audio(frame)) => caller.push(&mut playout, frame),
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
                    if send(&mut socket, message).await.is_err() {
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

/// Waits for the first message and requires it to be a valid `start`.
async fn first_start<W: Socket>(socket: &mut W) -> Result<StartRequest, NoStart> {
    loop {
        match read(socket).await {
            Read::Message(Message::Text(text)) => {
                return match golos::parse_client_text(text.as_str()).map_err(NoStart::Refused)? {
                    ClientMessage::Start { agent_id, token, sample_rate, call_id, metadata } => {
                        Ok(StartRequest { agent_id, token, sample_rate, call_id, metadata })
                    }
                    _ => Err(NoStart::Refused(TransportError::Protocol("the first message must be start"))),
                };
            }
            Read::Message(Message::Binary(_)) => {
                return Err(NoStart::Refused(TransportError::Protocol("audio before start")));
            }
            Read::Message(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => {}
            Read::TooLarge => return Err(NoStart::TooLarge),
            Read::Gone => return Err(NoStart::Gone),
        }
    }
}

async fn refuse<W: Socket>(socket: &mut W, code: &str, message: &str) {
    let error = ServerMessage::Error { code: code.to_owned(), message: message.to_owned() };
    let _ = send_json(socket, &error).await;
    let _ = send_json(socket, &ServerMessage::Ended { reason: "refused".into() }).await;
    let _ = send(socket, Message::Close(None)).await;
}

/// A frame over the limit: `error` and `ended` (the reading side is mid-frame, the writing
/// side still works), then close 1009. Whatever the peer still sends is never read: the
/// connection is dropped right after.
async fn close_too_large<W: Socket>(socket: &mut W, edge: &Edge, ended: &str) {
    EdgeCounters::incr(&edge.counters.oversize_closed);
    let max = golos::MAX_MESSAGE_BYTES;
    let error = ServerMessage::Error {
        code: "message_too_large".into(),
        message: format!("a frame or message exceeds the limit of {max} bytes"),
    };
    let _ = send_json(socket, &error).await;
    let _ = send_json(socket, &ServerMessage::Ended { reason: ended.into() }).await;
    close_with(socket, close_code::SIZE, "message too big").await;
}

async fn close_with<W: Socket>(socket: &mut W, code: u16, reason: &str) {
    let _ = send(socket, Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

async fn send_json<W: Socket>(socket: &mut W, message: &ServerMessage) -> Result<(), SendFailed> {
    send(socket, text(message)).await
}

/// A write that failed, or that the peer did not take within [`SEND_TIMEOUT`].
#[derive(Debug)]
struct SendFailed;

/// Every write to a call socket: a peer that stops reading fills its TCP window and would
/// hold the connection's task (and its connection place) in `send` for as long as it likes;
/// after [`SEND_TIMEOUT`] the peer is treated as gone.
async fn send<W: Socket>(socket: &mut W, message: Message) -> Result<(), SendFailed> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(SendFailed),
    }
}

/// Runs the Twilio Media Streams dialect on `socket` (a provider's bidirectional stream)
/// until the stream stops or the session ends the call. The agent and token come from the
/// stream's custom parameters `agent_id` and `token` (and `call_id` to resume); the provider's
/// ids and the other parameters go to [`StartRequest::metadata`]. Twilio has no channel for
/// transcripts or errors, so [`SessionOutput::Event`]s are dropped and a refused start just
/// closes the socket (the TwiML after `<Connect>` then runs, or the call ends).
pub async fn run_twilio<S: CallSession, W: Socket>(
    mut socket: W,
    mut session: S,
    pipeline_rate: u32,
    edge: &Edge,
) -> Outcome {
    let start = match tokio::time::timeout(START_TIMEOUT, twilio_start(&mut socket)).await {
        Ok(Ok(start)) => start,
        Ok(Err(NoStart::Refused(err))) => {
            tracing::info!(error = %err, "refusing a media stream");
            let _ = send(&mut socket, Message::Close(None)).await;
            return Outcome::NotStarted(err.code());
        }
        Ok(Err(NoStart::TooLarge)) => {
            EdgeCounters::incr(&edge.counters.oversize_closed);
            close_with(&mut socket, close_code::SIZE, "message too big").await;
            return Outcome::NotStarted("message_too_large");
        }
        Ok(Err(NoStart::Gone)) => return Outcome::NotStarted("disconnected"),
        Err(_) => {
            EdgeCounters::incr(&edge.counters.start_timeouts);
            close_with(&mut socket, close_code::POLICY, "no start message in time").await;
            return Outcome::NotStarted(codes::START_TIMEOUT);
        }
    };
    let (mut audio_in, mut audio_out) =
        match (twilio::AudioIn::new(pipeline_rate), twilio::AudioOut::new(start.stream_sid.clone(), pipeline_rate)) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "media stream codecs");
                let _ = send(&mut socket, Message::Close(None)).await;
                return Outcome::NotStarted(err.code());
            }
        };
    let Admitted { mut outputs, .. } = match session.on_start(start.request).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(code = refusal.code, message = %refusal.message, "media stream refused");
            let _ = send(&mut socket, Message::Close(None)).await;
            return Outcome::NotStarted(refusal.code);
        }
    };

    let mut caller = CallerLimits::new(edge);
    let mut playout = Playout::new(Instant::now().into_std());
    let mut ending: Option<String> = None;
    let mut outputs_open = true;
    loop {
        if let Some(reason) = &ending {
            if playout.is_empty() {
                let _ = send(&mut socket, Message::Close(None)).await;
                return Outcome::Ended(reason.clone());
            }
        }
        let deadline = playout.next_deadline().map(Instant::from_std);
        tokio::select! {
            inbound = read(&mut socket) => {
                let text = match inbound {
                    Read::Message(Message::Text(text)) => text,
                    // Providers send no binary messages; pings are answered by the WebSocket layer.
                    Read::Message(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => continue,
                    Read::TooLarge => {
                        session.on_hangup();
                        EdgeCounters::incr(&edge.counters.oversize_closed);
                        close_with(&mut socket, close_code::SIZE, "message too big").await;
                        return Outcome::ClientGone;
                    }
                    Read::Gone => {
                        session.on_hangup();
                        return Outcome::ClientGone;
                    }
                };
                let result = match twilio::parse_inbound(text.as_str()) {
                    Ok(Inbound::Media { media, .. }) => {
                        // Base64 carries 3 bytes, 3 μ-law samples, in every 4 characters.
                        if caller.admit_audio(media.payload.len() / 4 * 3, twilio::SAMPLE_RATE) {
                            on_twilio_media(&mut session, &mut audio_in, &media)
                        } else {
                            Ok(())
                        }
                    }
                    Ok(Inbound::Mark { mark, .. }) => {
                        session.on_mark(mark.name);
                        Ok(())
                    }
                    Ok(Inbound::Dtmf { dtmf, .. }) => golos::validate_dtmf(&dtmf.digit).map(|digit| {
                        if caller.admit_dtmf() {
                            session.on_dtmf(digit);
                        }
                    }),
                    Ok(Inbound::Stop { .. }) => {
                        session.on_hangup();
                        let _ = send(&mut socket, Message::Close(None)).await;
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
                Some(SessionOutput::Audio(frame)) => caller.push(&mut playout, frame),
                Some(SessionOutput::Mark(name)) => playout.push_mark(name),
                Some(SessionOutput::Clear) => {
                    // Marks already sent are echoed by the provider when it drops their audio;
                    // the ones still queued here were never sent, so nothing was played.
                    playout.clear();
                    if send(&mut socket, json(&audio_out.clear())).await.is_err() {
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
                    if send(&mut socket, message).await.is_err() {
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

/// Skips `connected` and waits for `start`.
async fn twilio_start<W: Socket>(socket: &mut W) -> Result<TwilioStart, NoStart> {
    loop {
        let text = match read(socket).await {
            Read::Message(Message::Text(text)) => text,
            Read::Message(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => continue,
            Read::TooLarge => return Err(NoStart::TooLarge),
            Read::Gone => return Err(NoStart::Gone),
        };
        match twilio::parse_inbound(text.as_str()) {
            Ok(Inbound::Connected { .. }) | Err(TransportError::UnknownType(_)) => {}
            Ok(Inbound::Start { start, .. }) => return twilio_request(start).map_err(NoStart::Refused),
            Ok(_) => return Err(NoStart::Refused(TransportError::Protocol("media before start"))),
            Err(err) => return Err(NoStart::Refused(err)),
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
    golos::check_metadata(&metadata)?;
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
