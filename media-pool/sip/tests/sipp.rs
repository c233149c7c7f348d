//! golos-sip against a real SIP peer: the system `sipp` (Debian `sip-tester`, installed by
//! `scripts/install-deps`) runs each scenario in `tests/scenarios/` as a UAC against an
//! endpoint on 127.0.0.1. The test drives the endpoint's events with a small policy.
//! SIP timers are the stack's: waits here are generous bounds, never latency assertions.

use golos_sip::{CallRef, RejectReason, RejectStatus, SipConfig, SipEndpoint, SipEvent, SipEvents, SipTransport};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc;

/// TEST-ONLY SDP answer: a fixed PCMA/telephone-event answer so the signalling can be tested
/// before the media side (golos-rtp) exists. Nothing listens on its port.
const TEST_ONLY_SDP_ANSWER: &[u8] = b"v=0\r\n\
o=golos 1 1 IN IP4 127.0.0.1\r\n\
s=golos\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

/// Upper bound for anything the peer or the stack does; far above any SIP timer used here
/// except Timer B/H (32 s), which no scenario waits on.
const PATIENCE: Duration = Duration::from_secs(20);

/// SIPp processes share the default media port and compete for CPU: one at a time.
static SIPP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy)]
enum Policy {
    /// 180, then 200 with the SDP answer.
    RingThenAnswer,
    /// 183 with SDP (the hold prompt as early media), then 200.
    EarlyMediaThenAnswer,
    /// Ring and never answer (the caller cancels).
    RingOnly,
    /// Refuse with the status admission gives an over-quota org (486).
    RejectOverQuota,
    /// No provisional response; answer after a pause long enough for the caller to
    /// retransmit its INVITE.
    WaitThenAnswer(Duration),
}

/// What the policy saw, for the assertions.
#[derive(Debug)]
enum Seen {
    Incoming {
        call: CallRef,
        from: Option<String>,
        to: Option<String>,
        transport: SipTransport,
        headers: Vec<(String, String)>,
        offer: String,
    },
    Established(CallRef),
    Cancelled(CallRef),
    RemoteHangup(CallRef),
    /// No ACK for our 200, or a transport failure: no scenario here should see it.
    Failed,
    Options(u16),
}

struct Harness {
    endpoint: SipEndpoint,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn start(policy: Policy) -> Harness {
    let (endpoint, events) = SipEndpoint::bind(SipConfig::new("127.0.0.1:0".parse().unwrap())).await.expect("bind");
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(drive(endpoint.clone(), events, policy, tx));
    Harness { endpoint, seen }
}

async fn drive(endpoint: SipEndpoint, mut events: SipEvents, policy: Policy, seen: mpsc::UnboundedSender<Seen>) {
    while let Some(event) = events.recv().await {
        let record = match event {
            SipEvent::IncomingCall(c) => {
                let call = c.call;
                let record = Seen::Incoming {
                    call,
                    from: c.from.as_ref().map(golos_domain::PhoneNumber::expose_e164),
                    to: c.to.as_ref().map(golos_domain::PhoneNumber::expose_e164),
                    transport: c.transport,
                    headers: c.headers.clone(),
                    offer: String::from_utf8_lossy(&c.sdp_offer).into_owned(),
                };
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    match policy {
                        Policy::RingThenAnswer => {
                            endpoint.ring(call).expect("ring");
                            endpoint.answer(call, TEST_ONLY_SDP_ANSWER.to_vec()).expect("answer");
                        }
                        Policy::EarlyMediaThenAnswer => {
                            endpoint.early_media(call, TEST_ONLY_SDP_ANSWER.to_vec()).expect("183");
                            endpoint.answer(call, TEST_ONLY_SDP_ANSWER.to_vec()).expect("answer");
                        }
                        Policy::RingOnly => endpoint.ring(call).expect("ring"),
                        Policy::RejectOverQuota => {
                            let r = RejectReason::OverQuota.rejection();
                            endpoint.reject(call, r.status, r.retry_after).expect("reject");
                        }
                        Policy::WaitThenAnswer(pause) => {
                            tokio::time::sleep(pause).await;
                            endpoint.answer(call, TEST_ONLY_SDP_ANSWER.to_vec()).expect("answer");
                        }
                    }
                });
                record
            }
            SipEvent::CallEstablished { call } => Seen::Established(call),
            SipEvent::CallCancelled { call } => Seen::Cancelled(call),
            SipEvent::RemoteHangup { call } => Seen::RemoteHangup(call),
            SipEvent::CallFailed { .. } => Seen::Failed,
            SipEvent::Options { status, .. } => Seen::Options(status),
            other => panic!("unexpected event {other:?}"),
        };
        if seen.send(record).is_err() {
            return;
        }
    }
}

impl Harness {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.seen.recv()).await.expect("an event in time").expect("endpoint running")
    }

    /// Nothing more arrives within a short while: used only to show an event did *not*
    /// repeat, so a slow machine can only make it pass, never fail wrongly.
    async fn quiet(&mut self) {
        if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), self.seen.recv()).await {
            panic!("unexpected extra event {extra:?}");
        }
    }
}

fn sipp_bin() -> PathBuf {
    let out = std::process::Command::new("which").arg("sipp").output().expect("which");
    assert!(out.status.success(), "sipp is not installed: run scripts/install-deps (Debian package sip-tester)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(name)
}

/// Runs one SIPp call of `name` against `target`; panics with SIPp's output if it fails.
async fn sipp(name: &str, target: SocketAddr, transport: &str) {
    let _one_at_a_time = SIPP.lock().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let error_file = logs.path().join("errors.log");
    let mut cmd = tokio::process::Command::new(sipp_bin());
    cmd.arg(target.to_string())
        .args(["-sf"])
        .arg(scenario(name))
        .args(["-m", "1", "-t", transport, "-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin"])
        .args(["-recv_timeout", "15s", "-timeout", "30s", "-timeout_error", "-trace_err", "-error_file"])
        .arg(&error_file)
        .current_dir(logs.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out =
        tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("sipp finished").expect("sipp ran");
    if !out.status.success() {
        let errors = std::fs::read_to_string(&error_file).unwrap_or_default();
        panic!(
            "sipp {name} failed ({}):\n--- errors\n{errors}\n--- stderr\n{}\n--- stdout (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&String::from_utf8_lossy(&out.stdout), 40)
        );
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test]
async fn a_call_is_answered_acked_and_hung_up_by_the_caller() {
    let mut h = start(Policy::RingThenAnswer).await;
    sipp("call.xml", h.endpoint.local_udp_addr(), "u1").await;

    let Seen::Incoming { call, from, to, transport, headers, offer } = h.next().await else {
        panic!("an incoming call first")
    };
    // Bare digits, as Exolve sends them, read as E.164.
    assert_eq!(from.as_deref(), Some("+79161234567"));
    assert_eq!(to.as_deref(), Some("+74951234567"));
    assert_eq!(transport, SipTransport::Udp);
    assert_eq!(headers, vec![("X-Campaign".to_owned(), "sipp".to_owned())]);
    assert!(offer.contains("a=rtpmap:8 PCMA/8000"), "{offer}");
    assert!(matches!(h.next().await, Seen::Established(c) if c == call));
    assert!(matches!(h.next().await, Seen::RemoteHangup(c) if c == call));
    assert_eq!(h.endpoint.active_calls(), 0);
}

#[tokio::test]
async fn a_call_over_tcp_works_the_same() {
    let mut h = start(Policy::RingThenAnswer).await;
    let tcp = h.endpoint.local_tcp_addr().expect("TCP is on by default");
    sipp("call.xml", tcp, "t1").await;
    let Seen::Incoming { call, transport, .. } = h.next().await else { panic!("an incoming call first") };
    assert_eq!(transport, SipTransport::Tcp);
    assert!(matches!(h.next().await, Seen::Established(c) if c == call));
    assert!(matches!(h.next().await, Seen::RemoteHangup(c) if c == call));
}

#[tokio::test]
async fn early_media_comes_before_the_answer() {
    let mut h = start(Policy::EarlyMediaThenAnswer).await;
    sipp("early-media.xml", h.endpoint.local_udp_addr(), "u1").await;
    let Seen::Incoming { call, .. } = h.next().await else { panic!("an incoming call first") };
    assert!(matches!(h.next().await, Seen::Established(c) if c == call));
    assert!(matches!(h.next().await, Seen::RemoteHangup(c) if c == call));
}

#[tokio::test]
async fn a_cancel_before_the_answer_ends_the_call_with_487() {
    let mut h = start(Policy::RingOnly).await;
    sipp("cancel.xml", h.endpoint.local_udp_addr(), "u1").await;
    let Seen::Incoming { call, .. } = h.next().await else { panic!("an incoming call first") };
    assert!(matches!(h.next().await, Seen::Cancelled(c) if c == call));
    assert_eq!(h.endpoint.active_calls(), 0);
    // The call is gone: answering it now is an error, not a late 200.
    assert!(h.endpoint.answer(call, TEST_ONLY_SDP_ANSWER.to_vec()).is_err());
}

#[tokio::test]
async fn a_retransmitted_invite_is_one_call() {
    let mut h = start(Policy::WaitThenAnswer(Duration::from_secs(1))).await;
    sipp("retransmit.xml", h.endpoint.local_udp_addr(), "u1").await;
    let Seen::Incoming { call, .. } = h.next().await else { panic!("an incoming call first") };
    assert!(matches!(h.next().await, Seen::Established(c) if c == call));
    assert!(matches!(h.next().await, Seen::RemoteHangup(c) if c == call));
    h.quiet().await;
}

#[tokio::test]
async fn a_refused_call_gets_486() {
    let mut h = start(Policy::RejectOverQuota).await;
    assert_eq!(RejectReason::OverQuota.rejection().status, RejectStatus::BusyHere);
    sipp("reject-486.xml", h.endpoint.local_udp_addr(), "u1").await;
    assert!(matches!(h.next().await, Seen::Incoming { .. }));
    h.quiet().await;
    assert_eq!(h.endpoint.active_calls(), 0);
}

#[tokio::test]
async fn options_is_200_and_draining_turns_options_and_invites_to_503() {
    let mut h = start(Policy::RingThenAnswer).await;
    let addr = h.endpoint.local_udp_addr();
    sipp("options-200.xml", addr, "u1").await;
    assert!(matches!(h.next().await, Seen::Options(200)));

    h.endpoint.set_draining(true);
    sipp("options-503.xml", addr, "u1").await;
    assert!(matches!(h.next().await, Seen::Options(503)));
    // Refused before the worker sees it: no IncomingCall.
    sipp("reject-503.xml", addr, "u1").await;
    h.quiet().await;

    h.endpoint.set_draining(false);
    sipp("call.xml", addr, "u1").await;
    assert!(matches!(h.next().await, Seen::Incoming { .. }));
}

#[tokio::test]
async fn malformed_requests_are_refused_or_dropped_and_the_next_call_goes_through() {
    let mut h = start(Policy::RingThenAnswer).await;
    let addr = h.endpoint.local_udp_addr();

    // Parses, but a dialog cannot be made from it: 400.
    sipp("malformed.xml", addr, "u1").await;

    // Does not parse as SIP at all: dropped (RFC 3261 §18.3 — there is no Via to answer).
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    for junk in [
        &b"\x00\xff\xfe garbage"[..],
        b"INVITE sip:x SIP/2.0\r\nVia: \r\n\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200\r\nCSeq: x\r\n\r\n",
        b"INVITE sip:7@h SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
        // The stack cannot build a response to an unparseable To: dropped.
        b"INVITE sip:7@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\nFrom: <sip:a@h>;tag=1\r\nTo: <>\r\nCall-ID: y\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n",
        // Parses, but without a From tag no transaction can be keyed (RFC 2543 peers are
        // not supported): the stack drops it.
        b"INVITE sip:7@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@h>\r\nTo: <sip:7@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ] {
        socket.send_to(junk, addr).await.expect("send");
    }

    sipp("call.xml", addr, "u1").await;
    let Seen::Incoming { call, .. } = h.next().await else { panic!("the good call is the first event") };
    assert!(matches!(h.next().await, Seen::Established(c) if c == call));
    assert!(matches!(h.next().await, Seen::RemoteHangup(c) if c == call));
}
