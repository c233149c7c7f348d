//! The golos WebSocket protocol ([`run`]) and the Twilio Media Streams dialect ([`run_twilio`])
//! on an upgraded axum socket: reads control messages and audio,
//! hands the call driver 20 ms frames at the pipeline's rate, and writes the driver's outputs
//! as soon as the socket takes them. The driver implements [`CallSession`]; this module knows
//! nothing of agents, auth or the engine.
//!
//! The transport does not pace: the call engine already emits its audio one 20 ms frame per
//! 20 ms, and it has to be the only clock (barge-in cuts the reply to the frames the engine
//! played; golos-call's `Output::PlayAudio`). What the socket has not taken yet waits in a
//! [`Playout`] queue, so a slow reader delays the audio and, past the queue's cap, sheds its
//! oldest frames, but never holds up reading the caller or draining the session's outputs.
//!
//! One task per connection runs a single `select!` over the socket (reads, and writes of the
//! queue whenever it will take them) and the session's outputs, so reads and writes never race
//! on shared state. Both dialects run the same loop: what differs (the start, the codecs, what
//! the peer can be told) is a private `Wire`, so a limit or a fix to one dialect's loop cannot
//! miss the other's.

use crate::error::TransportError;
use crate::golos::{self, codes, AudioIn, AudioOut, ClientMessage, ServerMessage};
use crate::limits::{self, EdgeCounters, RateLimiter, AUDIO_BURST, DTMF_BURST, DTMF_COST};
use crate::playout::{Frame, Packet, Playout};
use crate::twilio::{self, Inbound, Outbound};
use axum::body::Bytes;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocketUpgrade};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a client has after connecting to send `start`. Until then the socket is
/// unauthenticated: a browser or a provider sends `start` within milliseconds of the
/// upgrade, so 5 s is generous to them and short for a peer that only wants to hold sockets.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the peer may take nothing while something waits for it. The engine's audio comes
/// in real time, so a healthy client never holds a write for more than a moment; 10 s covers a
/// mobile network's stall and is short against a call.
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
    sort(socket.next().await)
}

fn sort(inbound: Option<Result<Message, axum::Error>>) -> Read {
    match inbound {
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
    /// 20 ms of audio at the pipeline's rate, sent as soon as the socket takes it: the session
    /// paces (the engine emits one frame per 20 ms).
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
pub async fn run<S: CallSession, W: Socket>(socket: W, session: S, pipeline_rate: u32, edge: &Edge) -> Outcome {
    serve::<GolosWire, S, W>(socket, session, pipeline_rate, edge).await
}

/// Runs the Twilio Media Streams dialect on `socket` (a provider's bidirectional stream)
/// until the stream stops or the session ends the call. The agent and token come from the
/// stream's custom parameters `agent_id` and `token` (and `call_id` to resume); the provider's
/// ids and the other parameters go to [`StartRequest::metadata`]. Twilio has no channel for
/// transcripts or errors, so [`SessionOutput::Event`]s are dropped and a refused start just
/// closes the socket (the TwiML after `<Connect>` then runs, or the call ends).
pub async fn run_twilio<S: CallSession, W: Socket>(socket: W, session: S, pipeline_rate: u32, edge: &Edge) -> Outcome {
    serve::<TwilioWire, S, W>(socket, session, pipeline_rate, edge).await
}

/// A caller's message once the call runs, in terms both dialects share.
enum Event<A> {
    /// Audio not yet decoded, with how many samples at [`Wire::client_rate`] it carries: the
    /// rate limit is checked first, so audio over it costs no decoding.
    Audio {
        samples: usize,
        audio: A,
    },
    Mark(String),
    Dtmf(char),
    /// golos `hangup`, Twilio `stop`.
    Hangup,
    /// Nothing for the call: pings, and whatever the dialect ignores.
    Nothing,
}

/// What one dialect does differently; [`serve`] is everything they share. A value is one
/// call's codecs, made from its `start`.
trait Wire: Sized + Send {
    /// Its socket limits.
    const DIALECT: Dialect;
    /// The close frame's reason when no start came in time; `None` for the error's message.
    const START_TIMEOUT_REASON: Option<&'static str>;
    /// An audio message, parsed but not decoded.
    type Audio: Send;

    /// One message before the call: `Ok(None)` to keep waiting, or a valid start's codecs and
    /// request.
    fn start(message: Message, pipeline_rate: u32) -> Result<Option<(Self, StartRequest)>, TransportError>;
    /// The rate of the caller's audio.
    fn client_rate(&self) -> u32;
    fn parse(message: Message) -> Result<Event<Self::Audio>, TransportError>;
    fn push_audio(&mut self, audio: Self::Audio) -> Result<(), TransportError>;
    /// The next 20 ms of the caller at the pipeline's rate, once complete.
    fn pop_frame(&mut self) -> Result<Option<Frame>, TransportError>;
    /// One 20 ms frame at the pipeline's rate for the caller.
    fn audio(&mut self, frame: &[i16]) -> Result<Message, TransportError>;
    fn mark(&self, name: String) -> Message;
    /// The answer to a barge-in; also forgets the outbound resampler's history so the cut-off
    /// audio does not ring into the next utterance.
    fn clear(&mut self) -> Message;
    /// A golos control message (`started`, events, `error`, `ended`), where the dialect has a
    /// channel for it.
    fn say(message: &ServerMessage) -> Option<Message>;
}

/// The golos protocol: PCM16 binary audio, JSON control messages both ways.
struct GolosWire {
    client_rate: u32,
    audio_in: AudioIn,
    audio_out: AudioOut,
}

impl Wire for GolosWire {
    const DIALECT: Dialect = Dialect::Golos;
    const START_TIMEOUT_REASON: Option<&'static str> = None;
    type Audio = Bytes;

    fn start(message: Message, pipeline_rate: u32) -> Result<Option<(Self, StartRequest)>, TransportError> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => return Err(TransportError::Protocol("audio before start")),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(None),
        };
        let ClientMessage::Start { agent_id, token, sample_rate, call_id, metadata } =
            golos::parse_client_text(text.as_str())?
        else {
            return Err(TransportError::Protocol("the first message must be start"));
        };
        let wire = Self {
            client_rate: sample_rate,
            audio_in: AudioIn::new(sample_rate, pipeline_rate)?,
            audio_out: AudioOut::new(pipeline_rate, sample_rate)?,
        };
        Ok(Some((wire, StartRequest { agent_id, token, sample_rate, call_id, metadata })))
    }

    fn client_rate(&self) -> u32 {
        self.client_rate
    }

    fn parse(message: Message) -> Result<Event<Bytes>, TransportError> {
        match message {
            Message::Binary(bytes) => Ok(Event::Audio { samples: bytes.len() / 2, audio: bytes }),
            Message::Text(text) => match golos::parse_client_text(text.as_str())? {
                ClientMessage::Start { .. } => Err(TransportError::Protocol("a second start")),
                ClientMessage::Mark { name } => Ok(Event::Mark(name)),
                // Validated by the parser: exactly one key.
                ClientMessage::Dtmf { digit } => Ok(Event::Dtmf(digit.chars().next().unwrap_or('0'))),
                ClientMessage::Hangup {} => Ok(Event::Hangup),
            },
            // Pings are answered by the WebSocket layer; `read` took closes.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Ok(Event::Nothing),
        }
    }

    fn push_audio(&mut self, audio: Bytes) -> Result<(), TransportError> {
        self.audio_in.push(&audio)
    }

    fn pop_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        self.audio_in.pop_frame()
    }

    fn audio(&mut self, frame: &[i16]) -> Result<Message, TransportError> {
        Ok(Message::Binary(Bytes::from(self.audio_out.encode(frame)?)))
    }

    fn mark(&self, name: String) -> Message {
        text(&ServerMessage::Mark { name })
    }

    fn clear(&mut self) -> Message {
        // Marks behind the dropped audio are never answered: the client did not get that
        // audio, so it has nothing to acknowledge.
        self.audio_out.reset();
        text(&ServerMessage::Clear)
    }

    fn say(message: &ServerMessage) -> Option<Message> {
        Some(text(message))
    }
}

/// Twilio Media Streams: base64 μ-law in JSON `media` events, tied to the stream's id.
struct TwilioWire {
    audio_in: twilio::AudioIn,
    audio_out: twilio::AudioOut,
}

impl Wire for TwilioWire {
    const DIALECT: Dialect = Dialect::Twilio;
    const START_TIMEOUT_REASON: Option<&'static str> = Some("no start message in time");
    type Audio = twilio::Media;

    /// Skips `connected` (and events newer than this code) until `start`.
    fn start(message: Message, pipeline_rate: u32) -> Result<Option<(Self, StartRequest)>, TransportError> {
        // Providers send no binary messages; pings are answered by the WebSocket layer.
        let Message::Text(text) = message else { return Ok(None) };
        match twilio::parse_inbound(text.as_str()) {
            Ok(Inbound::Connected { .. }) | Err(TransportError::UnknownType(_)) => Ok(None),
            Ok(Inbound::Start { start, .. }) => {
                let (stream_sid, request) = twilio_request(start)?;
                let audio_in = twilio::AudioIn::new(pipeline_rate)?;
                let audio_out = twilio::AudioOut::new(stream_sid, pipeline_rate)?;
                Ok(Some((Self { audio_in, audio_out }, request)))
            }
            Ok(_) => Err(TransportError::Protocol("media before start")),
            Err(err) => Err(err),
        }
    }

    fn client_rate(&self) -> u32 {
        twilio::SAMPLE_RATE
    }

    fn parse(message: Message) -> Result<Event<twilio::Media>, TransportError> {
        let Message::Text(text) = message else { return Ok(Event::Nothing) };
        match twilio::parse_inbound(text.as_str())? {
            // Base64 carries 3 bytes, 3 μ-law samples, in every 4 characters.
            Inbound::Media { media, .. } => Ok(Event::Audio { samples: media.payload.len() / 4 * 3, audio: media }),
            Inbound::Mark { mark, .. } => Ok(Event::Mark(mark.name)),
            Inbound::Dtmf { dtmf, .. } => golos::validate_dtmf(&dtmf.digit).map(Event::Dtmf),
            Inbound::Stop { .. } => Ok(Event::Hangup),
            Inbound::Connected { .. } | Inbound::Start { .. } => Err(TransportError::Protocol("a second start")),
        }
    }

    fn push_audio(&mut self, audio: twilio::Media) -> Result<(), TransportError> {
        self.audio_in.push(&audio)
    }

    fn pop_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        self.audio_in.pop_frame()
    }

    fn audio(&mut self, frame: &[i16]) -> Result<Message, TransportError> {
        Ok(json(&self.audio_out.media(frame)?))
    }

    fn mark(&self, name: String) -> Message {
        json(&self.audio_out.mark(name))
    }

    fn clear(&mut self) -> Message {
        // Marks already sent are echoed by the provider when it drops their audio; the ones
        // still queued here were never sent, so nothing was played.
        json(&self.audio_out.clear())
    }

    fn say(_: &ServerMessage) -> Option<Message> {
        None
    }
}

/// The one protocol loop: the start, then the call until either side ends it.
async fn serve<P: Wire, S: CallSession, W: Socket>(
    mut socket: W,
    mut session: S,
    pipeline_rate: u32,
    edge: &Edge,
) -> Outcome {
    let (wire, start) = match tokio::time::timeout(START_TIMEOUT, first_start::<P, W>(&mut socket, pipeline_rate)).await
    {
        Ok(Ok(started)) => started,
        Ok(Err(NoStart::Refused(err))) => {
            close::<P, W>(&mut socket, Some((err.code(), &err.to_string())), "refused", None).await;
            return Outcome::NotStarted(err.code());
        }
        Ok(Err(NoStart::TooLarge)) => {
            close_too_large::<P, W>(&mut socket, &edge.counters, "refused").await;
            return Outcome::NotStarted("message_too_large");
        }
        Ok(Err(NoStart::Gone)) => return Outcome::NotStarted("disconnected"),
        Err(_) => {
            EdgeCounters::incr(&edge.counters.start_timeouts);
            let message = format!("no start message within {} s", START_TIMEOUT.as_secs());
            let reason = P::START_TIMEOUT_REASON.unwrap_or(&message);
            let frame = CloseFrame { code: close_code::POLICY, reason: reason.into() };
            close::<P, W>(&mut socket, Some((codes::START_TIMEOUT, &message)), "refused", Some(frame)).await;
            return Outcome::NotStarted(codes::START_TIMEOUT);
        }
    };
    let Admitted { call_id, outputs } = match session.on_start(start).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            close::<P, W>(&mut socket, Some((refusal.code, &refusal.message)), "refused", None).await;
            return Outcome::NotStarted(refusal.code);
        }
    };
    if let Some(started) = P::say(&ServerMessage::Started { call_id, sample_rate: wire.client_rate() }) {
        if send(&mut socket, started).await.is_err() {
            session.on_hangup();
            return Outcome::ClientGone;
        }
    }
    let call = Call {
        socket,
        session,
        wire,
        outputs,
        outputs_open: true,
        caller: CallerLimits::new(edge),
        playout: Playout::new(),
        writing: Writing::default(),
        ending: None,
    };
    call.run().await
}

/// Waits for the first message that matters and requires it to be a valid start.
async fn first_start<P: Wire, W: Socket>(socket: &mut W, pipeline_rate: u32) -> Result<(P, StartRequest), NoStart> {
    loop {
        match read(socket).await {
            Read::Message(message) => {
                if let Some(started) = P::start(message, pipeline_rate).map_err(NoStart::Refused)? {
                    return Ok(started);
                }
            }
            Read::TooLarge => return Err(NoStart::TooLarge),
            Read::Gone => return Err(NoStart::Gone),
        }
    }
}

/// A started call's state, owned by its connection's task.
struct Call<P, S, W> {
    socket: W,
    session: S,
    wire: P,
    outputs: mpsc::Receiver<SessionOutput>,
    outputs_open: bool,
    caller: CallerLimits,
    playout: Playout,
    writing: Writing,
    /// Set once the session ends the call: the queued audio goes out first.
    ending: Option<String>,
}

/// Where the socket is with the queue's packets.
#[derive(Debug, Default)]
struct Writing {
    /// A packet was handed to the socket and not flushed yet. The next one waits for the flush,
    /// so at most one packet sits in the socket's buffer, beyond a `clear`'s reach.
    unflushed: bool,
    /// Since when the socket has taken nothing while something waited; see [`SEND_TIMEOUT`].
    stalled_since: Option<Instant>,
}

/// What the socket did while the loop waited on it.
enum Io {
    Read(Read),
    /// The socket took packets, or stopped taking them: the loop looks again (an ending call
    /// may be done, a stall needs its timer).
    Wrote,
    /// A write failed.
    Broken,
}

/// Why the caller's side of a call is over.
enum Gone {
    /// Closed, reset, broken, or not taking writes (see [`send`]).
    Broken,
    TooLarge,
    HungUp,
}

impl<P: Wire, S: CallSession, W: Socket> Call<P, S, W> {
    async fn run(mut self) -> Outcome {
        loop {
            if let Some(reason) = &self.ending {
                if self.playout.is_empty() {
                    close::<P, W>(&mut self.socket, None, reason, None).await;
                    return Outcome::Ended(reason.clone());
                }
            }
            let stall = self.writing.stalled_since.map(|since| since + SEND_TIMEOUT);
            let turn = tokio::select! {
                io = poll_fn(|cx| poll_io(cx, &mut self.socket, &mut self.wire, &mut self.playout, &mut self.writing)) => {
                    match io {
                        Io::Read(inbound) => self.on_read(inbound).await,
                        Io::Wrote => Ok(()),
                        Io::Broken => Err(Gone::Broken),
                    }
                }
                output = self.outputs.recv(), if self.outputs_open => self.on_output(output).await,
                () = sleep_until(stall), if stall.is_some() => Err(Gone::Broken),
            };
            if let Err(gone) = turn {
                self.session.on_hangup();
                match gone {
                    Gone::Broken => {}
                    Gone::TooLarge => {
                        close_too_large::<P, W>(&mut self.socket, &self.caller.counters, "message_too_large").await;
                    }
                    Gone::HungUp => close::<P, W>(&mut self.socket, None, "hangup", None).await,
                }
                return Outcome::ClientGone;
            }
        }
    }

    async fn on_read(&mut self, inbound: Read) -> Result<(), Gone> {
        let message = match inbound {
            Read::Message(message) => message,
            Read::TooLarge => return Err(Gone::TooLarge),
            Read::Gone => return Err(Gone::Broken),
        };
        let result = match P::parse(message) {
            Ok(Event::Audio { samples, audio }) => {
                if self.caller.admit_audio(samples, self.wire.client_rate()) {
                    self.on_audio(audio)
                } else {
                    Ok(())
                }
            }
            Ok(Event::Mark(name)) => {
                self.session.on_mark(name);
                Ok(())
            }
            Ok(Event::Dtmf(digit)) => {
                if self.caller.admit_dtmf() {
                    self.session.on_dtmf(digit);
                }
                Ok(())
            }
            Ok(Event::Hangup) => return Err(Gone::HungUp),
            Ok(Event::Nothing) => Ok(()),
            Err(err) => Err(err),
        };
        // Bad messages are reported and skipped: one malformed frame should not end a call
        // the caller is in the middle of.
        if let Err(err) = result {
            if let Some(report) = P::say(&ServerMessage::error(&err)) {
                send(&mut self.socket, report).await?;
            } else {
                tracing::debug!(error = %err, code = err.code(), "skipping a message");
            }
        }
        Ok(())
    }

    fn on_audio(&mut self, audio: P::Audio) -> Result<(), TransportError> {
        self.wire.push_audio(audio)?;
        while let Some(frame) = self.wire.pop_frame()? {
            self.session.on_audio(frame);
        }
        Ok(())
    }

    async fn on_output(&mut self, output: Option<SessionOutput>) -> Result<(), Gone> {
        match output {
            Some(SessionOutput::Audio(frame)) => self.caller.push(&mut self.playout, frame),
            Some(SessionOutput::Mark(name)) => self.playout.push_mark(name),
            Some(SessionOutput::Clear) => {
                self.playout.clear();
                let clear = self.wire.clear();
                send(&mut self.socket, clear).await?;
            }
            Some(SessionOutput::Event(event)) => {
                if let Some(event) = P::say(&event) {
                    send(&mut self.socket, event).await?;
                }
            }
            Some(SessionOutput::End { reason }) => self.ending = Some(reason),
            None => {
                self.outputs_open = false;
                self.ending.get_or_insert_with(|| "ended".into());
            }
        }
        Ok(())
    }
}

/// One look at the socket: hands it the queue's packets while it takes them, one flush at a
/// time, then reads. Never waits on a write: a slow reader leaves the packets in the queue
/// (where `clear` and the cap still reach them) and the caller's audio keeps coming in.
fn poll_io<P: Wire, W: Socket>(
    cx: &mut Context<'_>,
    socket: &mut W,
    wire: &mut P,
    playout: &mut Playout,
    writing: &mut Writing,
) -> Poll<Io> {
    let mut wrote = false;
    loop {
        if writing.unflushed {
            match socket.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    writing.unflushed = false;
                    wrote = true;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Broken),
                Poll::Pending => break,
            }
        }
        if playout.is_empty() {
            break;
        }
        match socket.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Io::Broken),
            Poll::Pending => break,
        }
        let message = match playout.pop() {
            Some(Packet::Audio(frame)) => match wire.audio(&frame) {
                Ok(message) => message,
                Err(err) => {
                    tracing::warn!(error = %err, "dropping an outbound frame");
                    continue;
                }
            },
            Some(Packet::Mark(name)) => wire.mark(name),
            None => break,
        };
        if socket.start_send_unpin(message).is_err() {
            return Poll::Ready(Io::Broken);
        }
        writing.unflushed = true;
    }
    let waiting = writing.unflushed || !playout.is_empty();
    if wrote || !waiting {
        // Progress, or nothing left to send: whatever stall there was is over.
        let was_stalled = writing.stalled_since.take().is_some();
        if wrote || was_stalled {
            return Poll::Ready(Io::Wrote);
        }
    } else if writing.stalled_since.is_none() {
        // The socket just stopped taking writes: back to the loop, which arms the timer.
        writing.stalled_since = Some(Instant::now());
        return Poll::Ready(Io::Wrote);
    }
    socket.poll_next_unpin(cx).map(|inbound| Io::Read(sort(inbound)))
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

/// A frame over the limit: the dialect's farewell (the reading side is mid-frame, the
/// writing side still works), then close 1009. Whatever the peer still sends is never read:
/// the connection is dropped right after.
async fn close_too_large<P: Wire, W: Socket>(socket: &mut W, counters: &EdgeCounters, ended: &str) {
    EdgeCounters::incr(&counters.oversize_closed);
    let message = format!("a frame or message exceeds the limit of {} bytes", P::DIALECT.max_message_bytes());
    let frame = CloseFrame { code: close_code::SIZE, reason: "message too big".into() };
    close::<P, W>(socket, Some(("message_too_large", &message)), ended, Some(frame)).await;
}

/// The end of a connection: `error` (a code and message) and `ended {ended}` where the
/// dialect can say them, then the close frame. Failed writes are ignored: the socket is
/// dropped either way.
async fn close<P: Wire, W: Socket>(
    socket: &mut W,
    error: Option<(&str, &str)>,
    ended: &str,
    frame: Option<CloseFrame>,
) {
    if let Some((code, message)) = error {
        if let Some(error) = P::say(&ServerMessage::Error { code: code.into(), message: message.into() }) {
            let _ = send(socket, error).await;
        } else {
            // Nowhere to tell the peer why: the log has it.
            tracing::info!(code, message, "closing a call socket");
        }
    }
    if let Some(ended) = P::say(&ServerMessage::Ended { reason: ended.into() }) {
        let _ = send(socket, ended).await;
    }
    let _ = send(socket, Message::Close(frame)).await;
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

fn json(message: &Outbound) -> Message {
    Message::Text(message.to_json().into())
}

/// Every write to a call socket: a peer that stops reading fills its TCP window and would
/// hold the connection's task (and its connection place) in `send` for as long as it likes;
/// after [`SEND_TIMEOUT`] the peer is treated as gone.
async fn send<W: Socket>(socket: &mut W, message: Message) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Gone::Broken),
    }
}

/// A Twilio `start`'s request and stream id.
fn twilio_request(start: twilio::StartMeta) -> Result<(String, StartRequest), TransportError> {
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
    let request = StartRequest { agent_id, token, sample_rate: twilio::SAMPLE_RATE, call_id, metadata: Some(metadata) };
    Ok((start.stream_sid, request))
}
