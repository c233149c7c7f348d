//! Phone calls over SIP through the real `golos serve` as a black box. SIPp plays the trunk's
//! signalling; the test's own UDP socket is the trunk's media, speaking a question spoken by
//! espeak-ng as A-law RTP and recording the RTP golos sends back. The agent is the café FAQ
//! agent of `calls.rs` (pocketsphinx STT, canned answers, espeak-ng TTS), reached through a
//! trunk, a granted number and its route, all made through the API.

use golos_tests::sip::SipGolos;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// 8 kHz A-law of `text` in a caller's voice.
fn speak_alaw(text: &str) -> Vec<u8> {
    golos_tests::speak_raw(text, &["-r", "8000", "-e", "a-law"])
}

/// What the test's media socket heard from golos.
#[derive(Debug, Default)]
struct Heard {
    packets: usize,
    payload_types: std::collections::BTreeSet<u8>,
    loud_packets: usize,
}

/// The trunk's media side for `talk`: sends `speech` as 20 ms A-law RTP after a second of
/// silence (the greeting), then silence, and records golos's packets. Every packet goes to
/// where golos's SDP said; golos latches onto this socket as the peer.
fn trunk_media(socket: &UdpSocket, golos_media: SocketAddr, speech: &[u8], talk: Duration) -> Heard {
    socket.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut heard = Heard::default();
    let started = Instant::now();
    let mut next = started;
    let (mut sequence, mut timestamp) = (1u16, 1000u32);
    let silence = [0xD5u8; 160];
    let mut frames = speech.chunks(160).map(<[u8]>::to_vec);
    let mut buf = [0u8; 1500];
    while started.elapsed() < talk {
        if Instant::now() >= next {
            let in_speech = started.elapsed() > Duration::from_secs(3);
            let payload = if in_speech { frames.next().unwrap_or_else(|| silence.to_vec()) } else { silence.to_vec() };
            let mut packet = vec![0x80, 8];
            packet.extend_from_slice(&sequence.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&payload);
            let _ = socket.send_to(&packet, golos_media);
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(160);
            next += Duration::from_millis(20);
        }
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if len >= 12 && buf[0] >> 6 == 2 {
                heard.packets += 1;
                heard.payload_types.insert(buf[1] & 0x7F);
                // A-law silence is 0xD5/0x55; speech moves far from it.
                let loud = buf[12..len].iter().filter(|&&b| golos_audio::g711::alaw_decode(b).unsigned_abs() > 1000);
                if loud.count() > 10 {
                    heard.loud_packets += 1;
                }
            }
        }
    }
    heard
}

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
    let speech = speak_alaw("when are you open");
    let call = tokio::spawn(golos.sipp("inbound-call.xml").set("rtpport", media_port).run_async());
    // golos sends its first RTP (the greeting) to the SDP's address, this socket; its source
    // is golos's media port, which the SDP answer named.
    media.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 1500];
    let (_, golos_media) = media.recv_from(&mut buf).expect("golos sends the greeting as RTP");
    assert!(rtp_ports.contains(&golos_media.port()), "{golos_media}");
    let heard = tokio::task::spawn_blocking(move || trunk_media(&media, golos_media, &speech, Duration::from_secs(8)))
        .await
        .unwrap();
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
