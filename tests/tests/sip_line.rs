//! What an agent does on a phone line and how the line holds up, through the real
//! `golos serve`: SIPp plays the trunk's signalling, the test's own UDP socket its media
//! (espeak-ng's voice as A-law RTP; golos's RTP recorded).
//!
//! - `transfer_call` becomes a REFER to the trunk; its NOTIFY says how the transfer went, and
//!   the call ends as transferred (golos sends BYE) or goes on with the agent saying so.
//! - `send_dtmf` keys RFC 4733 events towards the trunk; the agent's greeting names the
//!   INVITE's `X-Account-Id` and the caller's number as call variables.
//! - A line that loses 5 % of the caller's packets and reorders others still carries the
//!   conversation, and the call record's line quality shows the loss.
//! - A trunk identified by digest credentials is challenged and let in with the right
//!   password only.
//!
//! The agents' LLM is the OpenAI simulator scripted to call the tools, their STT the Deepgram
//! simulator (any speech is a turn).

use golos_tests::sip::{self, BadNetwork, Heard, Operator, SipGolos, Sipp};
use golos_tests::Simulator;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TRANSFER_TARGET: &str = "+74959876543";
const TELEPHONE_EVENT: u8 = 101;

/// The simulator scripted by `openai` (its scenario's `openai` section).
fn simulator(openai: &Value) -> (Simulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, json!({"openai": openai}).to_string()).unwrap();
    (Simulator::start_with(&["--config", path.to_str().unwrap()]), dir)
}

const GREETING: &str = "Hello, how can I help?";

/// An English agent with `tools` whose LLM and STT are the simulator.
fn agent(simulator: &Simulator, tools: &Value, greeting: &str) -> Value {
    json!({
        "name": "Reception",
        "system_prompt": "Help the caller.",
        "greeting": greeting,
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "tools": tools,
        "providers": simulator.agent_providers("sim-key")
    })
}

/// golos with a funded org whose number reaches `agent`; the org's admin key.
async fn line(golos: &SipGolos, simulator: &Simulator, tools: &Value, greeting: &str) -> (Operator, String) {
    let operator = golos.operator.clone();
    let (org_id, key) = operator.funded_org("Reception").await;
    operator.put_credential(&key, "sim-key", "sim-key").await;
    let trunk = json!({"source_networks": ["127.0.0.1/32"]});
    operator.agent_line(&org_id, &key, &agent(simulator, tools, greeting), &trunk).await;
    (operator, key)
}

/// One call through the SIPp scenario `name`, the caller asking for a person over `network`;
/// whether SIPp's scenario held, its log, and what the caller heard.
async fn call(sip: SocketAddr, name: &'static str, network: BadNetwork) -> (bool, String, Heard) {
    let (media, rtcp) = sip::media_pair();
    let media_port = media.local_addr().unwrap().port();
    let speech = sip::speak_alaw("I would like to speak to a person please");
    let stop = Arc::new(AtomicBool::new(false));
    let talking = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || {
            sip::trunk_media(&media, Some(&rtcp), &speech, network, TELEPHONE_EVENT, &stop, Duration::from_secs(60))
        })
    };
    let (ok, log) = Sipp::new(sip, name).set("rtpport", media_port).run_async().await;
    stop.store(true, Ordering::Relaxed);
    (ok, log, talking.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_call_refers_the_caller_to_the_target_and_a_refused_transfer_goes_on() {
    let (simulator, _scenario) = simulator(&json!({
        "replies": [
            {"when": "did not go through", "tokens": ["Sorry", " about", " that."]},
            {"tokens": [], "tool_calls": [{"name": "transfer_call", "arguments": "{\"reason\": \"asked for a person\"}", "fragments": 1}]}
        ],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }));
    let golos = SipGolos::start(&[]);
    let (operator, key) =
        line(&golos, &simulator, &json!([{"type": "transfer_call", "destination": TRANSFER_TARGET}]), GREETING).await;
    let receiver = golos_tests::WebhookReceiver::start().await;
    let endpoint = reqwest::Client::new()
        .post(format!("http://{}/v1/webhook-endpoints", golos.golos.addr))
        .header("X-API-Key", &key)
        .json(&json!({"url": receiver.url, "event_types": ["call.transfer", "agent.escalation_triggered"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint.status(), 201);
    let secret = endpoint.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();

    // The trunk takes the transfer and its NOTIFY says the target answered: golos hangs up.
    let (ok, log, heard) = call(golos.sip, "transfer-accepted.xml", BadNetwork::default()).await;
    assert!(ok, "golos must REFER the caller to the target, then hang up after the trunk's NOTIFY 200:\n{log}");
    assert!(heard.loud_packets > 25, "the caller heard the greeting and the transfer message: {heard:?}");
    let record = operator.billed_call(&key, None).await;
    assert_eq!(record["end_reason"], "transfer", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["outcome"], "completed", "{record}");
    let media = &record["metrics"]["line"]["media"];
    assert!(media["packets_received"].as_u64().is_some_and(|n| n > 100), "{record}");
    assert!(media["mos"].as_f64().is_some_and(|mos| mos > 4.0), "a clean loopback line: {record}");
    let first = record["id"].as_str().unwrap().to_owned();

    // The trunk refuses the REFER: the agent says so and the call goes on until the caller
    // hangs up.
    let (ok, log, _) = call(golos.sip, "transfer-refused.xml", BadNetwork::default()).await;
    assert!(ok, "a refused REFER must leave the call up (the trunk's BYE answered 200):\n{log}");
    let record = operator.billed_call(&key, Some(&first)).await;
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["outcome"], "refused", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["sip_status"], 603, "{record}");
    let second = record["id"].as_str().unwrap().to_owned();

    // Each outcome reaches the org's webhook endpoint as one `call.transfer`, with the call's
    // numbers (the org's own endpoints receive them).
    let transfer_of = |queued: &[Value], call: &str| -> Option<Value> {
        queued.iter().find(|e| e["type"] == "call.transfer" && e["data"]["call_id"] == call).cloned()
    };
    let queued = receiver
        .until("both transfers' outcomes", |q| transfer_of(q, &first).is_some() && transfer_of(q, &second).is_some())
        .await;
    receiver.received().iter().for_each(|delivery| delivery.verify(&secret));
    for (call, status, reason) in [
        (&first, "completed", Value::Null),
        (&second, "failed", json!("the phone network refused to transfer the call")),
    ] {
        let transfer = transfer_of(&queued, call).unwrap();
        assert_eq!(transfer["id"], format!("evt_call_transfer_{call}_1"), "{transfer}");
        let data = &transfer["data"];
        assert_eq!((&data["status"], &data["reason"]), (&json!(status), &reason), "{transfer}");
        assert_eq!(data["destination"], TRANSFER_TARGET, "{transfer}");
        assert_eq!(data["initiated_by"], "transfer_call", "{transfer}");
        assert_eq!(data["direction"], "inbound", "{transfer}");
        assert_eq!((&data["from"], &data["to"]), (&json!("+79161234567"), &json!(sip::NUMBER)), "{transfer}");
        assert!(data["requested_at"].as_str().unwrap() <= data["ended_at"].as_str().unwrap(), "{transfer}");
    }
    let transfers = queued.iter().filter(|e| e["type"] == "call.transfer").count();
    assert_eq!(transfers, 2, "one event per outcome: {queued:#?}");
    assert!(!queued.iter().any(|e| e["type"] == "agent.escalation_triggered"), "transfer_call is no escalation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dtmf_keys_rfc_4733_events_to_the_trunk() {
    let (simulator, _scenario) = simulator(&json!({
        "replies": [
            {"when": "sent", "tokens": ["Done."]},
            {"tokens": [], "tool_calls": [{"name": "send_dtmf", "arguments": "{\"digits\": \"12#\"}", "fragments": 1}]}
        ],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }));
    let golos = SipGolos::start(&[]);
    // The greeting names a header of the INVITE and the caller's number.
    let greeting = "Hello, account {{sip_x_account_id}}, calling from {{ caller_number }}.";
    let (operator, key) = line(&golos, &simulator, &json!([{"type": "send_dtmf"}]), greeting).await;
    // inbound-call.xml offers telephone-event/8000 as payload type 101 and hangs up after 10 s.
    let (ok, log, heard) = call(golos.sip, "inbound-call.xml", BadNetwork::default()).await;
    assert!(ok, "{log}");
    assert_eq!(heard.digits, "12#", "{heard:?}");
    assert!(heard.payload_types.contains(&TELEPHONE_EVENT) && heard.payload_types.contains(&8), "{heard:?}");
    let record = operator.billed_call(&key, None).await;
    let transcript = record["transcript"].to_string();
    assert!(transcript.contains("Hello, account 4242, calling from +79161234567."), "{record}");
    assert_eq!(record["metrics"]["metadata"]["sip_x_account_id"], "4242", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_reordering_line_still_carries_the_call_and_its_quality_shows_the_loss() {
    let (simulator, _scenario) = simulator(&json!({
        "replies": [{"tokens": ["We", " are", " open", " from", " eight", " in", " the", " morning."]}],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }));
    let golos = SipGolos::start(&[]);
    let (operator, key) = line(&golos, &simulator, &json!([]), GREETING).await;
    // 5 % of the caller's packets lost, one in 7 arriving after its successor.
    let network = BadNetwork { drop_every: Some(20), swap_every: Some(7) };
    let (ok, log, heard) = call(golos.sip, "inbound-call.xml", network).await;
    assert!(ok, "the call completes over the bad line:\n{log}");
    assert!(heard.loud_packets > 50, "the caller heard the greeting and the answer: {heard:?}");
    let record = operator.billed_call(&key, None).await;
    let transcript = record["transcript"].to_string().to_lowercase();
    assert!(transcript.contains("eight in the morning"), "the caller's turn was heard and answered: {record}");
    let media = &record["metrics"]["line"]["media"];
    let loss = media["loss_ratio"].as_f64().unwrap_or_default();
    assert!((0.03..=0.07).contains(&loss), "about 5 % lost: {media}");
    assert!(media["packets_lost"].as_u64().is_some_and(|n| n > 10), "{media}");
    let mos = media["mos"].as_f64().unwrap_or_default();
    assert!((2.5..4.0).contains(&mos), "5 % loss costs the line its good MOS: {media}");
    // RTCP: golos reported its stream (SR, every 5 s and on RTCP's port), the trunk answered
    // with a receiver report, and golos took the round trip from it.
    assert!(heard.sender_reports >= 1, "{heard:?}");
    assert!(media["round_trip_ms"].as_f64().is_some_and(|ms| (0.0..1_000.0).contains(&ms)), "{media}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_trunk_is_challenged_and_admitted_only_with_its_password() {
    let (simulator, _scenario) = simulator(&json!({
        "replies": [{"tokens": ["Hello."]}],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }));
    let golos = SipGolos::start(&[]);
    let operator = &golos.operator;
    let (org_id, key) = operator.funded_org("Digest").await;
    operator.put_credential(&key, "sim-key", "sim-key").await;
    // No source networks: the credentials alone say who the trunk is.
    let identification = json!({"digest_username": "exolve-test", "digest_password": "trunk-s3cret"});
    operator.agent_line(&org_id, &key, &agent(&simulator, &json!([]), GREETING), &identification).await;

    let (ok, log) = golos.sipp("digest-wrong-password.xml").set("rtpport", 9).run_async().await;
    assert!(ok, "a wrong password is refused 403 after the 401 challenge:\n{log}");
    let (ok, log, heard) = call(golos.sip, "digest-call.xml", BadNetwork::default()).await;
    assert!(ok, "the challenge (401), then the authenticated INVITE answered 200:\n{log}");
    assert!(heard.loud_packets > 25, "the caller heard the greeting: {heard:?}");
    let record = operator.billed_call(&key, None).await;
    assert_eq!(record["direction"], "inbound", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_speech_recogniser_left_the_caller_is_asked_for_the_keypad_and_is_heard() {
    let (simulator, _scenario) = simulator(&json!({
        "replies": [{"tokens": ["You", " pressed", " seven."]}],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }));
    let golos = SipGolos::start(&[("GOLOS_RTP_MEDIA_TIMEOUT_SECS", "2")]);
    let operator = &golos.operator;
    let (org_id, key) = operator.funded_org("Keypad").await;
    operator.put_credential(&key, "sim-key", "sim-key").await;
    // The only recogniser is a Deepgram endpoint nobody listens on: the chain runs out at
    // once, and its last tier is the keypad.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut agent = agent(&simulator, &json!([]), GREETING);
    agent["providers"]["stt"] = json!([
        {"kind": "deepgram", "endpoint": format!("ws://{closed}"), "credentials_secret": "sim-key"},
        {"kind": "dtmf_menu"}
    ]);
    operator.agent_line(&org_id, &key, &agent, &json!({"source_networks": ["127.0.0.1/32"]})).await;
    let (media, _rtcp) = sip::media_pair();
    let port = media.local_addr().unwrap().port();
    // The trunk keys 7 # by SIP INFO; its media stays silent, so golos hangs up after 2 s.
    let (ok, log) = golos.sipp("info-dtmf.xml").set("rtpport", port).run_async().await;
    assert!(ok, "{log}");
    let record = operator.billed_call(&key, None).await;
    assert_eq!(record["metrics"]["quality"]["stt_lost_dtmf_menu"], true, "{record}");
    let turns = record["transcript"].as_array().cloned().unwrap_or_default();
    assert!(turns.iter().any(|t| t["role"] == "user" && t["text"] == "[DTMF] 7"), "{record}");
    assert!(turns.iter().any(|t| t["role"] == "assistant" && t["text"] == "You pressed seven."), "{record}");
}
