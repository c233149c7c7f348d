//! The golos WebSocket protocol end to end: an axum server on port 0 running `ws::run` with a
//! tiny echo session, and a real tokio-tungstenite client.

use axum::extract::WebSocketUpgrade;
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use golos_transports::golos::{codes, encode_audio, ServerMessage, Speaker};
use golos_transports::ws::{self, Admitted, CallSession, Dialect, Edge, Refusal, SessionOutput, StartRequest};
use golos_transports::Frame;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Echoes the caller's audio back, with a mark after every 5 frames; `#` is a barge-in,
/// other keys come back as a transcript line; hangup ends the call.
#[derive(Default)]
struct Echo {
    tx: Option<mpsc::Sender<SessionOutput>>,
    frames: usize,
}

impl Echo {
    fn out(&self, output: SessionOutput) {
        // The test sends little; a full channel would mean a bug in the loop under test.
        self.tx.as_ref().expect("started").try_send(output).expect("room in the channel");
    }
}

impl CallSession for Echo {
    async fn on_start(&mut self, start: StartRequest) -> Result<Admitted, Refusal> {
        if start.token != "good" {
            return Err(Refusal { code: codes::UNAUTHORIZED, message: "bad token".into() });
        }
        let (tx, outputs) = mpsc::channel(256);
        self.tx = Some(tx);
        Ok(Admitted { call_id: format!("call-{}", start.agent_id), outputs })
    }

    fn on_audio(&mut self, frame: Frame) {
        self.frames += 1;
        self.out(SessionOutput::Audio(frame));
        if self.frames.is_multiple_of(5) {
            self.out(SessionOutput::Mark(format!("after-{}", self.frames)));
        }
    }

    fn on_mark(&mut self, name: String) {
        self.out(SessionOutput::Event(ServerMessage::Transcript {
            role: Speaker::User,
            text: format!("ack {name}"),
            is_final: true,
        }));
    }

    fn on_dtmf(&mut self, digit: char) {
        if digit == '#' {
            self.out(SessionOutput::Clear);
        } else if digit == '0' {
            self.out(SessionOutput::End { reason: "agent_ended".into() });
        } else {
            self.out(SessionOutput::Event(ServerMessage::Transcript {
                role: Speaker::User,
                text: digit.to_string(),
                is_final: true,
            }));
        }
    }

    fn on_hangup(&mut self) {}
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/ws",
            get(|upgrade: WebSocketUpgrade| async move {
                ws::limit_upgrade(upgrade, Dialect::Golos).on_upgrade(|socket| async move {
                    ws::run(socket, Echo::default(), 16_000, &Edge::default()).await;
                })
            }),
        )
        .route(
            "/twilio",
            get(|upgrade: WebSocketUpgrade| async move {
                ws::limit_upgrade(upgrade, Dialect::Twilio).on_upgrade(|socket| async move {
                    ws::run_twilio(socket, Echo::default(), 16_000, &Edge::default()).await;
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("ws://{addr}/ws")
}

async fn connect() -> Client {
    tokio_tungstenite::connect_async(serve().await).await.unwrap().0
}

async fn connect_twilio() -> Client {
    let url = serve().await.replace("/ws", "/twilio");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send_json(client: &mut Client, value: serde_json::Value) {
    client.send(Message::text(value.to_string())).await.unwrap();
}

/// The next message, failing the test instead of hanging if none comes.
async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(10), client.next()).await.expect("a message in time").unwrap().unwrap()
}

async fn next_json(client: &mut Client) -> serde_json::Value {
    match next(client).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a control message, got {other:?}"),
    }
}

async fn start(client: &mut Client, rate: u32) {
    send_json(client, serde_json::json!({"type":"start","agent_id":"a1","token":"good","sample_rate":rate})).await;
    assert_eq!(next_json(client).await, serde_json::json!({"type":"started","call_id":"call-a1","sample_rate":rate}));
}

#[tokio::test]
async fn audio_is_echoed_as_20ms_frames_with_marks() {
    let mut client = connect().await;
    start(&mut client, 16_000).await;
    // 100 ms of audio as ten 10 ms messages, all at once: five echoed 20 ms frames.
    let audio: Vec<i16> = (0..1_600).map(|i| i as i16).collect();
    for piece in audio.chunks(160) {
        client.send(Message::binary(encode_audio(piece))).await.unwrap();
    }
    let mut echoed = Vec::new();
    while echoed.len() < 1_600 {
        match next(&mut client).await {
            Message::Binary(bytes) => {
                assert_eq!(bytes.len(), 640, "one 20 ms frame per message");
                echoed.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, audio);
    // The mark comes right after the fifth frame.
    assert_eq!(next_json(&mut client).await, serde_json::json!({"type":"mark","name":"after-5"}));
    send_json(&mut client, serde_json::json!({"type":"mark","name":"after-5"})).await;
    assert_eq!(next_json(&mut client).await["text"], "ack after-5");
    send_json(&mut client, serde_json::json!({"type":"hangup"})).await;
    assert_eq!(next_json(&mut client).await, serde_json::json!({"type":"ended","reason":"hangup"}));
}

#[tokio::test]
async fn other_client_rates_are_resampled_both_ways() {
    let mut client = connect().await;
    start(&mut client, 8_000).await;
    client.send(Message::binary(encode_audio(&[500; 160]))).await.unwrap();
    let Message::Binary(bytes) = next(&mut client).await else { panic!("not audio") };
    assert_eq!(bytes.len(), 320, "20 ms at 8 kHz");
}

#[tokio::test]
async fn bad_messages_are_reported_and_the_call_goes_on() {
    let mut client = connect().await;
    start(&mut client, 16_000).await;
    send_json(&mut client, serde_json::json!({"type":"dance"})).await;
    assert_eq!(next_json(&mut client).await["code"], "unknown_type");
    client.send(Message::binary(vec![0; 3])).await.unwrap();
    assert_eq!(next_json(&mut client).await["code"], "invalid_audio_frame");
    send_json(&mut client, serde_json::json!({"type":"start","agent_id":"a1","token":"good"})).await;
    assert_eq!(next_json(&mut client).await["code"], "protocol_violation");
    send_json(&mut client, serde_json::json!({"type":"dtmf","digit":"5"})).await;
    assert_eq!(next_json(&mut client).await["text"], "5");
}

#[tokio::test]
async fn barge_in_sends_clear_after_the_audio_already_sent() {
    let mut client = connect().await;
    start(&mut client, 16_000).await;
    // 1 s of audio, 50 frames; the barge-in comes after the first one. This client reads as
    // fast as the echo talks, so most of it is sent before the clear: the backlog a clear
    // drops only builds up with a slow reader (tests/limits.rs).
    for _ in 0..10 {
        client.send(Message::binary(encode_audio(&[7; 1_600]))).await.unwrap();
    }
    assert!(matches!(next(&mut client).await, Message::Binary(_)));
    send_json(&mut client, serde_json::json!({"type":"dtmf","digit":"#"})).await;
    let mut frames_after = 0;
    loop {
        match next(&mut client).await {
            Message::Binary(_) => frames_after += 1,
            Message::Text(text) => {
                match serde_json::from_str::<serde_json::Value>(text.as_str()).unwrap()["type"].as_str() {
                    // The echo's marks after every fifth frame go out with the audio before them.
                    Some("mark") => {}
                    Some("clear") => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(frames_after < 50, "{frames_after} frames after the first");
    // The caller's audio reaches the session paced by the input jitter buffer, so the echo may
    // still be sending frames it got after the clear (new audio, not the cleared backlog); the
    // call then ends as the session says, and no frame is sent twice.
    send_json(&mut client, serde_json::json!({"type":"dtmf","digit":"0"})).await;
    loop {
        match next(&mut client).await {
            Message::Binary(_) => frames_after += 1,
            Message::Text(text) => {
                let message: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if message["type"] == "mark" {
                    continue;
                }
                assert_eq!(message, serde_json::json!({"type":"ended","reason":"agent_ended"}));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(frames_after < 50, "{frames_after} frames after the first: more than the 50 echoed");
}

#[tokio::test]
async fn refused_and_malformed_starts_end_the_connection() {
    let mut client = connect().await;
    send_json(&mut client, serde_json::json!({"type":"start","agent_id":"a1","token":"bad"})).await;
    assert_eq!(next_json(&mut client).await["code"], "unauthorized");
    assert_eq!(next_json(&mut client).await, serde_json::json!({"type":"ended","reason":"refused"}));
    assert!(matches!(next(&mut client).await, Message::Close(_)));

    let mut client = connect().await;
    client.send(Message::binary(encode_audio(&[0; 320]))).await.unwrap();
    assert_eq!(next_json(&mut client).await["code"], "protocol_violation");

    let mut client = connect().await;
    send_json(&mut client, serde_json::json!({"type":"start","agent_id":"a1","token":"good","sample_rate":11025}))
        .await;
    assert_eq!(next_json(&mut client).await["code"], "unsupported_sample_rate");
}

fn twilio_start(token: &str) -> serde_json::Value {
    serde_json::json!({"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{
        "streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],
        "customParameters":{"agent_id":"a1","token":token},
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})
}

fn twilio_media(chunk: u32, samples: &[i16]) -> serde_json::Value {
    serde_json::json!({"event":"media","sequenceNumber":(chunk + 1).to_string(),"streamSid":"MZ1",
        "media":{"track":"inbound","chunk":chunk.to_string(),"timestamp":(chunk * 20).to_string(),
        "payload":golos_transports::twilio::encode_payload(samples)}})
}

#[tokio::test]
async fn twilio_stream_audio_is_echoed_as_mulaw_with_marks_and_clear() {
    let mut client = connect_twilio().await;
    send_json(&mut client, serde_json::json!({"event":"connected","protocol":"Call","version":"1.0.0"})).await;
    send_json(&mut client, twilio_start("good")).await;
    // 100 ms of a 500 Hz tone as five 20 ms chunks: five media messages back, then a mark.
    let tone: Vec<i16> =
        (0..800).map(|i| (8_000.0 * (f64::from(i) * std::f64::consts::TAU / 16.0).sin()) as i16).collect();
    for (n, chunk) in tone.chunks(160).enumerate() {
        send_json(&mut client, twilio_media(n as u32 + 1, chunk)).await;
    }
    let mut echoed = Vec::new();
    for _ in 0..5 {
        let message = next_json(&mut client).await;
        assert_eq!((message["event"].as_str(), message["streamSid"].as_str()), (Some("media"), Some("MZ1")));
        let payload = golos_transports::twilio::decode_payload(message["media"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload.len(), 160, "20 ms of mu-law");
        echoed.extend(golos_audio::g711::mulaw_decode_all(&payload));
    }
    assert_eq!(
        next_json(&mut client).await,
        serde_json::json!({"event":"mark","streamSid":"MZ1","mark":{"name":"after-5"}})
    );
    // The tone survives mu-law and two resamplings (8 -> 16 -> 8 kHz), after the filters' delay.
    let rms = (echoed[400..].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 400.0).sqrt();
    assert!(rms > 4_000.0, "rms {rms}");

    // Barge-in in the middle of a long answer: the clear follows what was sent.
    for n in 0..50 {
        send_json(&mut client, twilio_media(6 + n, &[300; 160])).await;
    }
    assert_eq!(next_json(&mut client).await["event"], "media");
    send_json(&mut client, serde_json::json!({"event":"dtmf","streamSid":"MZ1","sequenceNumber":"60","dtmf":{"track":"inbound_track","digit":"#"}})).await;
    let mut frames_after = 0;
    loop {
        let message = next_json(&mut client).await;
        match message["event"].as_str() {
            Some("media") => frames_after += 1,
            Some("clear") => {
                assert_eq!(message, serde_json::json!({"event":"clear","streamSid":"MZ1"}));
                break;
            }
            _ => {}
        }
    }
    assert!(frames_after < 50, "{frames_after} frames before clear");
    // Unknown events are skipped; the stop ends the stream and the server closes.
    send_json(&mut client, serde_json::json!({"event":"dance"})).await;
    send_json(&mut client, serde_json::json!({"event":"stop","sequenceNumber":"99","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}})).await;
    loop {
        match next(&mut client).await {
            Message::Close(_) => break,
            Message::Text(text) => assert!(!text.as_str().contains("\"clear\""), "{text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn twilio_stream_with_a_bad_token_or_format_is_closed() {
    let mut client = connect_twilio().await;
    send_json(&mut client, twilio_start("bad")).await;
    assert!(matches!(next(&mut client).await, Message::Close(_)));

    let mut client = connect_twilio().await;
    let mut start = twilio_start("good");
    start["start"]["mediaFormat"]["encoding"] = "audio/x-alaw".into();
    send_json(&mut client, start).await;
    assert!(matches!(next(&mut client).await, Message::Close(_)));
}

/// A raw client: the upgrade by hand, then a binary frame *header* announcing `len` bytes and
/// no payload, as a peer that wants the server to buffer `len` bytes would start. Returns
/// the close code the server answers with, after any text messages before it.
async fn announce_frame(url: &str, len: u64) -> (Vec<String>, Option<u16>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let path = url.trim_start_matches("ws://").trim_start_matches(&authority).to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        response.push(tcp.read_u8().await.unwrap());
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    // FIN + binary, masked (0x80) with the shortest length encoding (0x7E: 16-bit length
    // follows, 0x7F: 64-bit), a zero mask.
    let mut header = vec![0x82];
    match u16::try_from(len) {
        Ok(short) if short >= 126 => {
            header.push(0xFE);
            header.extend(short.to_be_bytes());
        }
        _ => {
            header.push(0xFF);
            header.extend(len.to_be_bytes());
        }
    }
    header.extend([0; 4]);
    tcp.write_all(&header).await.unwrap();
    let mut texts = Vec::new();
    loop {
        let read = async {
            let opcode = tcp.read_u8().await? & 0x0F;
            let len = match tcp.read_u8().await? & 0x7F {
                0x7E => u64::from(tcp.read_u16().await?),
                0x7F => tcp.read_u64().await?,
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).unwrap()];
            tcp.read_exact(&mut payload).await?;
            std::io::Result::Ok((opcode, payload))
        };
        match tokio::time::timeout(Duration::from_secs(10), read).await.expect("the server answers in time") {
            Ok((0x1, payload)) => texts.push(String::from_utf8(payload).unwrap()),
            Ok((0x8, payload)) => return (texts, payload.get(..2).map(|code| u16::from_be_bytes([code[0], code[1]]))),
            Ok((opcode, _)) => panic!("unexpected opcode {opcode}"),
            Err(_) => return (texts, None),
        }
    }
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_from_its_header_with_1009() {
    // 16 MiB announced before `start`: the server answers without waiting for the payload.
    let (texts, code) = announce_frame(&serve().await, 16 * 1024 * 1024).await;
    assert_eq!(code, Some(1009), "{texts:?}");
    assert!(texts[0].contains("message_too_large"), "{texts:?}");
    assert!(texts[1].contains("ended"), "{texts:?}");
    // One byte over the golos limit is enough; Twilio's is larger, its close has no messages.
    let (_, code) = announce_frame(&serve().await, golos_transports::golos::MAX_MESSAGE_BYTES as u64 + 1).await;
    assert_eq!(code, Some(1009));
    let twilio = serve().await.replace("/ws", "/twilio");
    let (texts, code) = announce_frame(&twilio, Dialect::Twilio.max_message_bytes() as u64 + 1).await;
    assert_eq!((texts.len(), code), (0, Some(1009)));
}

#[tokio::test]
async fn a_message_over_the_socket_limit_ends_the_call_with_1009() {
    let mut client = connect().await;
    start(&mut client, 16_000).await;
    send_json(
        &mut client,
        serde_json::json!({"type":"mark","name":"x".repeat(ws::Dialect::Golos.max_message_bytes())}),
    )
    .await;
    assert_eq!(next_json(&mut client).await["code"], "message_too_large");
    assert_eq!(next_json(&mut client).await["reason"], "message_too_large");
    match next(&mut client).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}
