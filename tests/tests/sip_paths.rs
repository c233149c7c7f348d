//! The SIP call paths beyond a plain answered call, through the real `golos serve` as a black
//! box with SIPp as the trunk (scenarios in `tests/sip/`): the hold queue's early media, CANCEL
//! and 486; a retransmitted INVITE, RFC 4733 digits, re-INVITEs and the media timeout's BYE;
//! a malformed INVITE; OPTIONS, and 503 while draining. Calls are checked through the calls
//! API. Nothing waits on the wall clock: SIPp waits for each message (`-recv_timeout` bounds
//! it), the test waits for RTP or polls the API with a deadline.

use golos_tests::sip::{stream_silence, PhoneLine, SipGolos};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The media timeout these tests run golos with, instead of the product's 30 s.
const MEDIA_TIMEOUT_SECS: &str = "2";

/// A socket for the trunk's media, named in SDP offers as `[$rtpport]`.
fn media_socket() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the media socket");
    let port = socket.local_addr().expect("local address").port();
    (socket, port)
}

/// An RTP packet golos sent to `socket`: its source (golos's media port) and whether its A-law
/// payload is speech rather than silence.
fn receive_rtp(socket: &UdpSocket, patience: Duration) -> Option<(SocketAddr, bool)> {
    socket.set_read_timeout(Some(patience)).expect("read timeout");
    let mut buf = [0u8; 1500];
    let (len, from) = socket.recv_from(&mut buf).ok()?;
    if len < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let loud = buf[12..len].iter().filter(|&&b| golos_audio::g711::alaw_decode(b).unsigned_abs() > 1000).count();
    Some((from, loud > 10))
}

/// An INVITE from the trunk to `NUMBER` written by hand (SIPp computes Content-Length itself),
/// with `content_length` as its Content-Length (the body's length when `None`) and, when
/// given, `call_id` as its Call-ID.
fn hand_written_invite(
    socket: &UdpSocket,
    branch: &str,
    content_length: Option<&str>,
    call_id: Option<&str>,
) -> String {
    let local = socket.local_addr().expect("local address");
    let call_id = call_id.map(|id| format!("Call-ID: {id}\r\n")).unwrap_or_default();
    let sdp = "v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\n";
    let content_length = content_length.map_or_else(|| sdp.len().to_string(), str::to_owned);
    format!(
        "INVITE sip:74951234567@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\n\
         From: <sip:79161234567@127.0.0.1>;tag={branch}\r\nTo: <sip:74951234567@127.0.0.1>\r\n{call_id}\
         CSeq: 1 INVITE\r\nContact: <sip:79161234567@{local}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {content_length}\r\n\r\n{sdp}"
    )
}

/// Sends `invite` and answers the final status golos sends for it, after ACKing it (a
/// non-2xx final response is retransmitted until then). Every response on `socket` must be
/// for `branch`: nothing earlier sent from it may have been answered.
fn final_status(socket: &UdpSocket, sip: SocketAddr, invite: &str, branch: &str) -> u16 {
    socket.send_to(invite.as_bytes(), sip).expect("send the INVITE");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let mut buf = [0u8; 4000];
    loop {
        let (len, _) = socket.recv_from(&mut buf).expect("golos answers the INVITE");
        let response = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(response.contains(branch), "a response to something else: {response}");
        let status: u16 = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        if status < 200 {
            continue;
        }
        let header = |name: &str| {
            response.lines().find(|l| l.to_ascii_lowercase().starts_with(name)).expect("a header").trim().to_owned()
        };
        let ack = format!(
            "ACK sip:74951234567@127.0.0.1 SIP/2.0\r\n{}\r\n{}\r\n{}\r\n{}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            header("via:"),
            header("from:"),
            header("to:"),
            header("call-id:")
        );
        socket.send_to(ack.as_bytes(), sip).expect("send the ACK");
        return status;
    }
}

/// `POST /v1/admissions` for `call` of the line's org and agent, as another component of the
/// operator's asks it: a slot, or a place in line, held for a call that is not a phone call.
async fn admit(golos: &SipGolos, line: &PhoneLine, call: &str) -> Value {
    let body = json!({"org_id": line.org_id, "agent_id": line.agent_id, "call_id": call});
    golos.operator.post("/v1/admissions", &golos.operator.operator, &body).await
}

/// Frees `call`'s slot or place in line.
async fn release(golos: &SipGolos, line: &PhoneLine, call: &str) {
    let path = format!("/v1/admissions/{call}/release");
    golos.operator.post(&path, &golos.operator.operator, &json!({"org_id": line.org_id})).await;
}

/// The org's calls (newest first), as listed.
async fn listed_calls(golos: &SipGolos, line: &PhoneLine) -> Vec<Value> {
    golos.operator.get("/v1/calls", &line.key).await["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_caller_hears_early_media_can_cancel_finds_a_full_line_busy_and_is_answered_once_admitted() {
    // One waiter at most in the org's line, so a second held caller finds it full.
    let golos = SipGolos::start(&[
        ("GOLOS_HOLD_MAX_WAITERS_PER_ORG", "1"),
        ("GOLOS_RTP_MEDIA_TIMEOUT_SECS", MEDIA_TIMEOUT_SECS),
    ]);
    let line = golos.operator.phone_line().await;
    let quotas = json!({"quotas": {"max_concurrent_calls": 1, "max_concurrent_calls_per_agent": 1}});
    let (status, org) = golos
        .operator
        .send(reqwest::Method::PATCH, &format!("/v1/orgs/{}", line.org_id), &golos.operator.operator, &quotas)
        .await;
    assert_eq!(status, 200, "{org}");
    // Another call takes the org's only slot.
    let blocker = admit(&golos, &line, "call_blocker").await;
    assert_eq!(blocker["decision"], "admitted", "{blocker}");

    // A caller held in line hangs up before the answer: 183, CANCEL → 200 and 487.
    let (_quiet, quiet_port) = media_socket();
    let (ok, log) = golos.sipp("held-cancel.xml").set("rtpport", quiet_port).run_async().await;
    assert!(ok, "a held call must get 183, then 200 for its CANCEL and 487 for its INVITE:\n{log}");
    // Its place in the line is given back at once, not when it goes stale (15 s without
    // asking): the line, which holds one caller, takes another within a few seconds.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let probe = admit(&golos, &line, "call_probe").await;
        if probe["decision"] == "wait" {
            release(&golos, &line, "call_probe").await;
            break;
        }
        assert_eq!(probe["reason"], "hold_queue_full", "{probe}");
        assert!(Instant::now() < until, "the cancelled caller's place in line was not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A caller over the limit is held: 183 with SDP, and the hold prompt as early media.
    let (held_media, held_port) = media_socket();
    let held = tokio::spawn(golos.sipp("held-call.xml").set("rtpport", held_port).run_async());
    // Three seconds of the prompt (it is paced at 20 ms a packet), longer than the media
    // timeout: a held caller sends nothing, and must not be hung up for it.
    let heard = tokio::task::spawn_blocking(move || {
        let (mut packets, mut loud) = (0, 0);
        while packets < 150 {
            let Some((_, speech)) = receive_rtp(&held_media, Duration::from_secs(15)) else { break };
            packets += 1;
            loud += usize::from(speech);
        }
        (packets, loud)
    })
    .await
    .expect("the media thread");
    assert!(heard.0 == 150 && heard.1 >= 25, "the held caller must hear the hold prompt (packets, loud): {heard:?}");

    // The line (one place) is full now: the next caller is refused 486.
    let (ok, log) = golos.sipp("busy.xml").run_async().await;
    assert!(ok, "a call finding the hold queue full must be refused 486 without Retry-After:\n{log}");

    // The slot frees: the held caller is admitted and answered 200, then hangs up (BYE).
    release(&golos, &line, "call_blocker").await;
    let (ok, log) = held.await.expect("sipp's task");
    assert!(ok, "the held call must be answered 200 once admitted:\n{log}");

    // One call record: the answered one, ended by the caller's BYE. The cancelled and the
    // refused calls never started and left none.
    let record = golos.operator.ended_calls(&line.key, 1).await.remove(0);
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    assert_eq!(record["direction"], "inbound", "{record}");
    let calls = listed_calls(&golos, &line).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_invite_is_one_call_that_takes_digits_and_re_invites_and_ends_on_media_timeout() {
    let golos = SipGolos::start(&[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", MEDIA_TIMEOUT_SECS)]);
    let line = golos.operator.phone_line().await;

    // SIPp sends the INVITE twice, the digits 1, 4, # as RFC 4733 RTP, three re-INVITEs,
    // then nothing: it passes only if golos hangs up with BYE.
    let (ok, log) = golos.sipp("mid-call.xml").run_async().await;
    assert!(ok, "the call must be answered once, answer each re-INVITE 200 with SDP and end with golos's BYE:\n{log}");

    let records = golos.operator.ended_calls(&line.key, 1).await;
    let calls = listed_calls(&golos, &line).await;
    assert_eq!(calls.len(), 1, "a retransmitted INVITE must not make a second call: {calls:?}");
    let record = &records[0];
    // The media timeout ended it: the far end vanished, which is a failure, not a hangup.
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["end_reason"], "failed", "{record}");
    // The digits reached the engine: '#' ends the caller's keypad turn, which the
    // transcript keeps as the user's words.
    let turns = record["transcript"].as_array().cloned().unwrap_or_default();
    assert!(
        turns.iter().any(|turn| turn["role"] == "user" && turn["text"] == "[DTMF] 14"),
        "the caller's digits must be a turn of the transcript: {record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_invite_is_answered_400_and_the_next_call_is_answered() {
    let golos = SipGolos::start(&[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", MEDIA_TIMEOUT_SECS)]);
    let line = golos.operator.phone_line().await;

    let (ok, log) = golos.sipp("malformed-no-contact.xml").run_async().await;
    assert!(ok, "an INVITE without Contact must be answered 400:\n{log}");

    // By hand, from the trunk's address: an INVITE without Call-ID cannot be answered at all
    // and is dropped (RFC 3261 §18.3); one whose Content-Length is not a number, or runs past
    // the end of the datagram, is answered 400.
    let sip = golos.sip;
    tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let no_call_id = hand_written_invite(&socket, "z9hG4bK-no-call-id", None, None);
        socket.send_to(no_call_id.as_bytes(), sip).expect("send");
        for (branch, length) in [("z9hG4bK-length-abc", "abc"), ("z9hG4bK-length-past", "4000")] {
            let invite = hand_written_invite(&socket, branch, Some(length), Some(&format!("{branch}@trunk")));
            assert_eq!(final_status(&socket, sip, &invite, branch), 400, "Content-Length: {length}");
        }
    })
    .await
    .expect("the hand-written INVITEs");

    // The next call is answered and keys 7 # as SIP INFO; the test's media socket stays
    // silent, so golos hangs up after the media timeout.
    let (_media, port) = media_socket();
    let (ok, log) = golos.sipp("info-dtmf.xml").set("rtpport", port).run_async().await;
    assert!(
        ok,
        "a call after the malformed INVITE must be answered 200, take INFO keys and be hung up by golos:\n{log}"
    );
    let records = golos.operator.ended_calls(&line.key, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let turns = records[0]["transcript"].as_array().cloned().unwrap_or_default();
    assert!(
        turns.iter().any(|turn| turn["role"] == "user" && turn["text"] == "[DTMF] 7"),
        "keys sent as SIP INFO reach the engine like RFC 4733 ones: {}",
        records[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_is_answered_200_and_while_draining_options_and_invites_get_503_with_retry_after() {
    let golos = SipGolos::start(&[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", MEDIA_TIMEOUT_SECS), ("GOLOS_DRAIN_SECS", "60")]);
    golos.operator.phone_line().await;
    let (ok, log) = golos.sipp("options.xml").run_async().await;
    assert!(ok, "OPTIONS out of dialog must be answered 200 with Allow:\n{log}");

    // A call in progress keeps the worker draining (rather than gone) while SIPp asks.
    let (media, port) = media_socket();
    let call = tokio::spawn(golos.sipp("answered-until-bye.xml").set("rtpport", port).run_async());
    let (golos_media, _) = tokio::task::spawn_blocking({
        let media = media.try_clone().expect("clone the socket");
        move || receive_rtp(&media, Duration::from_secs(15))
    })
    .await
    .expect("the media thread")
    .expect("golos sends the greeting as RTP");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || stream_silence(&media, golos_media, 0x0bad_cafe, &stop)
    });

    let pid = golos.golos.pid().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    // `/ready` answers 503 once the worker drains; the SIP edge drains before it.
    let until = Instant::now() + Duration::from_secs(15);
    while golos_tests::get_from(golos.golos.addr, "/ready", "").0 != 503 {
        assert!(Instant::now() < until, "golos did not start draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, log) = golos.sipp("options-draining.xml").run_async().await;
    assert!(ok, "OPTIONS to a draining worker must be answered 503 with Retry-After:\n{log}");
    let (ok, log) = golos.sipp("invite-draining.xml").run_async().await;
    assert!(ok, "an INVITE to a draining worker must be refused 503 with Retry-After:\n{log}");

    // The call goes on through the drain; once its trunk falls silent golos hangs up (BYE
    // after the media timeout), the drain has nothing left and golos exits.
    stop.store(true, Ordering::Relaxed);
    streaming.join().expect("the streaming thread");
    let (ok, log) = call.await.expect("sipp's task");
    assert!(ok, "the call in progress must go on while draining and end with golos's BYE:\n{log}");
    let exit = tokio::task::spawn_blocking(move || golos.golos.wait()).await.expect("wait");
    assert!(exit.success(), "{exit:?}");
}
