//! Phone calls over SIP through the real `golos serve` as a black box. SIPp plays the trunk's
//! signalling; the test's own UDP socket is the trunk's media, speaking a question spoken by
//! espeak-ng as A-law RTP and recording the RTP golos sends back. The agent is the café FAQ
//! agent of `calls.rs` (pocketsphinx STT, canned answers, espeak-ng TTS), reached through a
//! trunk, a granted number and its route, all made through the API.

use golos_tests::sip::{self, BadNetwork, SipGolos};
use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_to_a_routed_number_is_answered_in_pcma_talks_and_is_billed_inbound() {
    let golos = SipGolos::start(&[]);
    let key = golos.operator.phone_line().await.key;
    let rtp_ports = golos.rtp_ports.clone();

    // An unknown source address: 127.0.0.2 is loopback too, but no trunk's network.
    let (ok, log) = golos.sipp("inbound-refused.xml").from_ip("127.0.0.2").run_async().await;
    assert!(ok, "an INVITE from an unknown address must be refused 403:\n{log}");
    // From the trunk, but to a number it does not carry, or with no codec golos speaks.
    let (ok, log) = golos.sipp("inbound-unrouted.xml").run_async().await;
    assert!(ok, "an INVITE to a number the trunk does not carry must be refused 480:\n{log}");
    let (ok, log) = golos.sipp("inbound-no-common-codec.xml").run_async().await;
    assert!(ok, "an INVITE offering only G.729 must be refused 488:\n{log}");
    let (ok, log) = golos.sipp("inbound-media-inside.xml").run_async().await;
    assert!(ok, "an INVITE aiming the media at a private address must be refused 488:\n{log}");

    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let speech = sip::speak_alaw("when are you open");
    let call = tokio::spawn(golos.sipp("inbound-call.xml").set("rtpport", media_port).run_async());
    // golos sends its first RTP (the greeting) to the SDP's address, this socket, from the
    // media port its SDP answer named; the trunk talks for 8 s.
    let heard = tokio::task::spawn_blocking(move || {
        let never = AtomicBool::new(false);
        sip::trunk_media(&media, None, &speech, BadNetwork::default(), 101, &never, Duration::from_secs(8))
    })
    .await
    .unwrap();
    let golos_media = heard.golos_media.expect("golos sends the greeting as RTP");
    assert!(rtp_ports.contains(&golos_media.port()), "{golos_media}");
    let (ok, log) = call.await.unwrap();
    assert!(ok, "the call must be answered 200 with PCMA and hung up with BYE:\n{log}");
    assert_eq!(heard.payload_types, [8].into(), "{heard:?}");
    assert!(heard.packets >= 100 && heard.loud_packets >= 25, "{heard:?}");

    // The call's record: inbound, ended by the caller's BYE, billed, with the conversation.
    let record = golos.operator.ended_calls(&key, 1).await.remove(0);
    assert_eq!(record["status"], "ended", "{record}");
    assert_eq!(record["direction"], "inbound", "{record}");
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    let transcript = record["transcript"].to_string().to_lowercase();
    assert!(transcript.contains("how can i help"), "{record}");
    assert!(transcript.contains("eight in the morning"), "{record}");
}
