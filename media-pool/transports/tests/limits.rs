//! The protocol loops' limits on a virtual clock: `ws::run` and `ws::run_twilio` over an
//! in-memory socket, with `tokio::time::pause`, so every timing is exact and no test sleeps.

use axum::extract::ws::Message;
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::task::AtomicWaker;
use futures::{Sink, Stream, StreamExt};
use golos_transports::golos::encode_audio;
use golos_transports::limits::EdgeCounters;
use golos_transports::ws::{
    self, Admitted, CallSession, Edge, Refusal, SessionOutput, StartRequest, SEND_TIMEOUT, START_TIMEOUT,
};
use golos_transports::Frame;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The server's end of an in-memory WebSocket. While `window.full` is set, writes do not
/// complete: a peer that stopped reading, its TCP window full.
struct MemorySocket {
    from_client: UnboundedReceiver<Result<Message, axum::Error>>,
    to_client: UnboundedSender<Message>,
    window: Arc<Window>,
}

/// The peer's receive window, shared by both ends.
#[derive(Default)]
struct Window {
    full: AtomicBool,
    /// The writer waiting for room, woken when the peer reads again.
    writer: AtomicWaker,
}

impl Stream for MemorySocket {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_next_unpin(cx)
    }
}

impl Sink<Message> for MemorySocket {
    type Error = axum::Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        self.window.writer.register(cx.waker());
        if self.window.full.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), axum::Error> {
        self.to_client.unbounded_send(message).map_err(axum::Error::new)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// The client's end.
struct Client {
    to_server: UnboundedSender<Result<Message, axum::Error>>,
    from_server: UnboundedReceiver<Message>,
    window: Arc<Window>,
}

impl Client {
    /// Stops reading: the server's writes wait.
    fn stall(&self) {
        self.window.full.store(true, Ordering::Relaxed);
    }

    /// Reads again: the server's waiting write goes on.
    fn resume(&self) {
        self.window.full.store(false, Ordering::Relaxed);
        self.window.writer.wake();
    }

    fn send(&self, message: Message) {
        self.to_server.unbounded_send(Ok(message)).expect("the server is reading");
    }

    fn send_json(&self, value: &serde_json::Value) {
        self.send(Message::Text(value.to_string().into()));
    }

    async fn next(&mut self) -> Message {
        self.from_server.next().await.expect("a message")
    }

    async fn next_json(&mut self) -> serde_json::Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn pair() -> (MemorySocket, Client) {
    let (to_server, from_client) = unbounded();
    let (to_client, from_server) = unbounded();
    let window = Arc::new(Window::default());
    (MemorySocket { from_client, to_client, window: Arc::clone(&window) }, Client { to_server, from_server, window })
}

/// Counts the caller's frames that reach the session and answers nothing (its output channel
/// is handed to the test through `outputs_to`, when given).
#[derive(Clone, Default)]
struct Counting {
    frames: Arc<AtomicUsize>,
    keys: Arc<AtomicUsize>,
    hangups: Arc<AtomicUsize>,
    outputs: Option<mpsc::Sender<SessionOutput>>,
    outputs_to: Option<std::sync::mpsc::Sender<mpsc::Sender<SessionOutput>>>,
}

impl CallSession for Counting {
    async fn on_start(&mut self, _: StartRequest) -> Result<Admitted, Refusal> {
        let (tx, outputs) = mpsc::channel(16);
        if let Some(to) = &self.outputs_to {
            to.send(tx.clone()).unwrap();
        }
        // Kept open: the call goes on until the connection ends.
        self.outputs = Some(tx);
        Ok(Admitted { call_id: "c1".into(), outputs })
    }
    fn on_audio(&mut self, _: Frame) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }
    fn on_mark(&mut self, _: String) {}
    fn on_dtmf(&mut self, _: char) {
        self.keys.fetch_add(1, Ordering::Relaxed);
    }
    fn on_hangup(&mut self) {
        self.hangups.fetch_add(1, Ordering::Relaxed);
    }
}

fn start() -> serde_json::Value {
    serde_json::json!({"type":"start","agent_id":"a1","token":"t","sample_rate":16000})
}

#[tokio::test(start_paused = true)]
async fn a_socket_without_start_is_closed_with_1008_after_exactly_five_seconds() {
    let (socket, mut client) = pair();
    let edge = Edge::default();
    let counters = Arc::clone(&edge.counters);
    let server = tokio::spawn(async move { ws::run(socket, Counting::default(), 16_000, &edge).await });
    let connected = Instant::now();
    // A ping does not count as a start.
    client.send(Message::Ping(vec![1].into()));
    let error = client.next_json().await;
    assert_eq!(connected.elapsed(), START_TIMEOUT);
    assert_eq!(START_TIMEOUT, Duration::from_secs(5));
    assert_eq!(error["code"], "start_timeout");
    assert_eq!(client.next_json().await, serde_json::json!({"type":"ended","reason":"refused"}));
    match client.next().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert_eq!(server.await.unwrap(), ws::Outcome::NotStarted("start_timeout"));
    assert_eq!(EdgeCounters::get(&counters.start_timeouts), 1);
}

#[tokio::test(start_paused = true)]
async fn a_start_just_inside_the_five_seconds_is_taken() {
    let (socket, mut client) = pair();
    tokio::spawn(async move { ws::run(socket, Counting::default(), 16_000, &Edge::default()).await });
    tokio::time::sleep(START_TIMEOUT.saturating_sub(Duration::from_millis(1))).await;
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    // The timeout was only for the start: the call goes on well past it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    client.send_json(&serde_json::json!({"type":"dtmf","digit":"12"}));
    assert_eq!(client.next_json().await["code"], "invalid_dtmf");
}

#[tokio::test(start_paused = true)]
async fn a_media_stream_without_start_is_closed_with_1008() {
    let (socket, mut client) = pair();
    let edge = Edge::default();
    tokio::spawn(async move { ws::run_twilio(socket, Counting::default(), 16_000, &edge).await });
    let connected = Instant::now();
    client.send_json(&serde_json::json!({"event":"connected","protocol":"Call","version":"1.0.0"}));
    match client.next().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert_eq!(connected.elapsed(), START_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn audio_at_fifty_times_real_time_is_cut_to_real_time_plus_one_second() {
    let (socket, mut client) = pair();
    let session = Counting::default();
    let frames = Arc::clone(&session.frames);
    let edge = Edge::default();
    let counters = Arc::clone(&edge.counters);
    tokio::spawn(async move { ws::run(socket, session, 16_000, &edge).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    // 2 s of virtual time, five 20 ms frames every 2 ms (tokio's timer counts in whole
    // milliseconds): 5,000 frames, 100 s of audio.
    let frame = Message::Binary(encode_audio(&[100; 320]).into());
    for _ in 0..1_000 {
        for _ in 0..5 {
            client.send(frame.clone());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Everything sent is read before the loop goes idle.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let passed = frames.load(Ordering::Relaxed);
    // 2 s of real time plus the 1 s burst: 150 frames, give or take the last one.
    assert!((149..=151).contains(&passed), "{passed} frames reached the session");
    assert_eq!(EdgeCounters::get(&counters.caller_audio_dropped_frames), 5_000 - passed as u64);
    // Back at real time, nothing more is dropped.
    let before = EdgeCounters::get(&counters.caller_audio_dropped_frames);
    for _ in 0..100 {
        client.send(frame.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(EdgeCounters::get(&counters.caller_audio_dropped_frames), before);
    assert_eq!(frames.load(Ordering::Relaxed), passed + 100);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_key_presses_is_cut_to_a_human_pace() {
    let (socket, mut client) = pair();
    let session = Counting::default();
    let keys = Arc::clone(&session.keys);
    let edge = Edge::default();
    let counters = Arc::clone(&edge.counters);
    tokio::spawn(async move { ws::run(socket, session, 16_000, &edge).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    for _ in 0..1_000 {
        client.send_json(&serde_json::json!({"type":"dtmf","digit":"5"}));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    // A second's worth of presses at 80 ms each.
    assert_eq!(keys.load(Ordering::Relaxed), 12);
    assert_eq!(EdgeCounters::get(&counters.caller_dtmf_dropped), 988);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_let_go_after_the_send_timeout() {
    let (socket, mut client) = pair();
    let (outputs_to, outputs) = std::sync::mpsc::channel();
    let session = Counting { outputs_to: Some(outputs_to), ..Counting::default() };
    let hangups = Arc::clone(&session.hangups);
    let server = tokio::spawn(async move { ws::run(socket, session, 16_000, &Edge::default()).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    let outputs = outputs.recv().unwrap();
    // The agent speaks; the peer's window is full from the first frame on.
    client.stall();
    let stalled_at = Instant::now();
    outputs.send(SessionOutput::Audio(vec![0; 320].into())).await.unwrap();
    assert_eq!(server.await.unwrap(), ws::Outcome::ClientGone);
    assert_eq!(stalled_at.elapsed(), SEND_TIMEOUT);
    assert_eq!(hangups.load(Ordering::Relaxed), 1, "the call is ended, not left running");
}

fn audio(n: i16) -> SessionOutput {
    SessionOutput::Audio(vec![n; 320].into())
}

/// The first sample of a golos audio message (the pipeline's and the client's rates match, so
/// a frame goes out as it came).
fn first_sample(message: &Message) -> i16 {
    match message {
        Message::Binary(bytes) => i16::from_le_bytes([bytes[0], bytes[1]]),
        other => panic!("expected audio, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn audio_goes_out_as_the_session_hands_it_over() {
    let (socket, mut client) = pair();
    let (outputs_to, outputs) = std::sync::mpsc::channel();
    let session = Counting { outputs_to: Some(outputs_to), ..Counting::default() };
    tokio::spawn(async move { ws::run(socket, session, 16_000, &Edge::default()).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    let outputs = outputs.recv().unwrap();
    // A burst of five frames and a mark: all of it at once, on the virtual clock's same
    // instant. Spacing frames 20 ms apart is the engine's job, not the transport's.
    let handed_over = Instant::now();
    for n in 0..5 {
        outputs.send(audio(n)).await.unwrap();
    }
    outputs.send(SessionOutput::Mark("m".into())).await.unwrap();
    for n in 0..5 {
        assert_eq!(first_sample(&client.next().await), n);
    }
    assert_eq!(client.next_json().await, serde_json::json!({"type":"mark","name":"m"}));
    assert_eq!(handed_over.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_holds_up_neither_the_caller_nor_the_session_and_a_clear_drops_its_backlog() {
    let (socket, mut client) = pair();
    let (outputs_to, outputs) = std::sync::mpsc::channel();
    let session = Counting { outputs_to: Some(outputs_to), ..Counting::default() };
    let (keys, hangups) = (Arc::clone(&session.keys), Arc::clone(&session.hangups));
    let server = tokio::spawn(async move { ws::run(socket, session, 16_000, &Edge::default()).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    let outputs = outputs.recv().unwrap();
    client.send_json(&serde_json::json!({"type":"dtmf","digit":"1"}));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(keys.load(Ordering::Relaxed), 1);
    // The peer stops reading; the session keeps talking, 60 frames and a mark into a channel
    // of 16: the transport drains it into its queue instead of blocking on the socket.
    client.stall();
    for n in 0..60 {
        outputs.send(audio(n)).await.unwrap();
    }
    outputs.send(SessionOutput::Mark("behind-the-backlog".into())).await.unwrap();
    // The caller is still heard.
    client.send_json(&serde_json::json!({"type":"dtmf","digit":"2"}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(keys.load(Ordering::Relaxed), 2);
    // Barge-in while nothing of it went out: the backlog and its mark are dropped, the clear
    // waits for the peer, and the next answer follows it.
    outputs.send(SessionOutput::Clear).await.unwrap();
    outputs.send(audio(100)).await.unwrap();
    outputs.send(SessionOutput::Mark("next".into())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.resume();
    assert_eq!(client.next_json().await, serde_json::json!({"type":"clear"}));
    assert_eq!(first_sample(&client.next().await), 100);
    assert_eq!(client.next_json().await, serde_json::json!({"type":"mark","name":"next"}));
    // Two seconds stalled, inside the send timeout: the call goes on.
    client.send_json(&serde_json::json!({"type":"hangup"}));
    assert_eq!(server.await.unwrap(), ws::Outcome::ClientGone);
    assert_eq!(hangups.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_backlog_past_ten_seconds_sheds_its_oldest_frames() {
    let (socket, mut client) = pair();
    let (outputs_to, outputs) = std::sync::mpsc::channel();
    let session = Counting { outputs_to: Some(outputs_to), ..Counting::default() };
    let edge = Edge::default();
    let counters = Arc::clone(&edge.counters);
    tokio::spawn(async move { ws::run(socket, session, 16_000, &edge).await });
    client.send_json(&start());
    assert_eq!(client.next_json().await["type"], "started");
    let outputs = outputs.recv().unwrap();
    client.stall();
    // 12 s of audio and a mark in the middle, none of it taken.
    for n in 0..600 {
        outputs.send(audio(n)).await.unwrap();
        if n == 50 {
            outputs.send(SessionOutput::Mark("early".into())).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(EdgeCounters::get(&counters.playout_shed_frames), 100);
    client.resume();
    // The mark outlives its shed frame; the newest 10 s follow in order.
    assert_eq!(client.next_json().await, serde_json::json!({"type":"mark","name":"early"}));
    for n in 100..600 {
        assert_eq!(first_sample(&client.next().await), n);
    }
}
