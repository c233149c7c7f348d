//! Anthropic Messages against a client written from the streaming and errors docs.

mod common;

use common::{ms, read_sse};
use golos_simulator::{Fault, FaultRule, LlmReply, Provider, Scenario, Simulator, SimulatorHandle, ToolCallScript};
use serde_json::{json, Value};
use tokio::time::Instant;

fn request(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": stream,
        "system": "You answer questions about opening hours.",
        "messages": [{"role": "user", "content": "what are your opening hours"}],
    })
}

async fn post(sim: &SimulatorHandle, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("{}/v1/messages", sim.anthropic_base_url())).json(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request sent")
}

const AUTH: [(&str, &str); 2] = [("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

#[tokio::test(start_paused = true)]
async fn text_and_tool_use_stream_in_the_documented_event_order() {
    let mut scenario = Scenario::default();
    let args = r#"{"location":"San Francisco, CA","unit":"celsius"}"#;
    scenario.anthropic.replies =
        vec![LlmReply::text(["Let", " me", " check."])
            .with_tool_call(ToolCallScript::new("get_weather", args).fragments(4))];
    let sim = Simulator::start(scenario).await.unwrap();
    let started = Instant::now();
    let response = post(&sim, &AUTH, &request(true)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(response.headers().contains_key("request-id"));
    let (events, failure) = read_sse(response, started).await;
    assert!(failure.is_none());

    for event in &events {
        let data = event.json();
        assert_eq!(Some(data["type"].as_str().unwrap()), event.event.as_deref(), "event name equals data.type");
    }
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 3]);
    expected.extend(["content_block_stop", "content_block_start"]);
    expected.extend(["content_block_delta"; 4]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);

    let start = events[0].json();
    assert_eq!(start["message"]["role"], "assistant");
    assert_eq!(start["message"]["content"], json!([]));
    assert!(start["message"]["stop_reason"].is_null());

    let mut text = String::new();
    let mut partial_json = String::new();
    let mut tool = None;
    for event in &events {
        let data = event.json();
        match data["type"].as_str().unwrap() {
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                assert_eq!(data["index"], 1);
                assert_eq!(data["content_block"]["input"], json!({}));
                tool = Some(data["content_block"]["name"].as_str().unwrap().to_owned());
                assert!(data["content_block"]["id"].as_str().unwrap().starts_with("toolu_"));
            }
            "content_block_delta" => match data["delta"]["type"].as_str().unwrap() {
                "text_delta" => text.push_str(data["delta"]["text"].as_str().unwrap()),
                "input_json_delta" => partial_json.push_str(data["delta"]["partial_json"].as_str().unwrap()),
                other => panic!("unexpected delta {other}"),
            },
            _ => {}
        }
    }
    assert_eq!(text, "Let me check.");
    assert_eq!(tool.as_deref(), Some("get_weather"));
    assert_eq!(serde_json::from_str::<Value>(&partial_json).unwrap(), serde_json::from_str::<Value>(args).unwrap());
    let delta = events[events.len() - 2].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // message_start right away; first text delta at the TTFT, then every 20 ms.
    assert_eq!(events[0].at, ms(0));
    assert_eq!(events[3].at, ms(200));
    assert_eq!(events[5].at, ms(240));
}

#[tokio::test(start_paused = true)]
async fn plain_text_reply_ends_with_end_turn_and_non_streaming_is_a_message() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let (events, _) = read_sse(post(&sim, &AUTH, &request(true)).await, Instant::now()).await;
    let stop = events.iter().find(|e| e.event.as_deref() == Some("message_delta")).unwrap().json();
    assert_eq!(stop["delta"]["stop_reason"], "end_turn");

    let mut scenario = Scenario::default();
    scenario.anthropic.replies =
        vec![LlmReply::text(["Hi"]).with_tool_call(ToolCallScript::new("end_call", r#"{"reason":"done"}"#))];
    sim.set_scenario(scenario);
    let response = post(&sim, &AUTH, &request(false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0], json!({"type": "text", "text": "Hi"}));
    assert_eq!(body["content"][1]["type"], "tool_use");
    assert_eq!(body["content"][1]["input"], json!({"reason": "done"}));
    assert_eq!(body["stop_reason"], "tool_use");
}

#[tokio::test(start_paused = true)]
async fn headers_are_required() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let response = post(&sim, &[("anthropic-version", "2023-06-01")], &request(true)).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let response = post(&sim, &[("x-api-key", "k")], &request(true)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");

    let mut body = request(true);
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(post(&sim, &AUTH, &body).await.status(), 400);
    assert_eq!(sim.request_count(Provider::Anthropic), 3);
}

#[tokio::test(start_paused = true)]
async fn overloaded_529_then_rate_limit_then_ok() {
    let mut scenario = Scenario::default();
    scenario.anthropic.faults =
        vec![FaultRule::first(1, Fault::status(529)), FaultRule::requests(2, Some(2), Fault::rate_limited(3))];
    let sim = Simulator::start(scenario).await.unwrap();
    let response = post(&sim, &AUTH, &request(true)).await;
    assert_eq!(response.status().as_u16(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(body["type"], "error");

    let response = post(&sim, &AUTH, &request(true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "rate_limit_error");

    assert_eq!(post(&sim, &AUTH, &request(true)).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn error_event_mid_stream() {
    let mut scenario = Scenario::default();
    scenario.anthropic.faults = vec![FaultRule::always(Fault::StreamError { events: 6 })];
    let sim = Simulator::start(scenario).await.unwrap();
    let (events, failure) = read_sse(post(&sim, &AUTH, &request(true)).await, Instant::now()).await;
    assert!(failure.is_none());
    assert_eq!(events.len(), 7);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json(), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    assert!(events.iter().all(|e| e.event.as_deref() != Some("message_stop")));
}

#[tokio::test(start_paused = true)]
async fn reset_mid_stream_and_malformed_event() {
    let mut scenario = Scenario::default();
    scenario.anthropic.faults = vec![
        FaultRule::first(1, Fault::ResetAfter { events: 5 }),
        FaultRule::requests(2, Some(2), Fault::Malformed { event: 4 }),
    ];
    let sim = Simulator::start(scenario).await.unwrap();
    let (events, failure) = read_sse(post(&sim, &AUTH, &request(true)).await, Instant::now()).await;
    assert_eq!(events.len(), 5);
    assert!(failure.is_some());

    let (events, failure) = read_sse(post(&sim, &AUTH, &request(true)).await, Instant::now()).await;
    assert!(failure.is_none());
    assert_eq!(events[4].event.as_deref(), Some("content_block_delta"));
    assert!(serde_json::from_str::<Value>(&events[4].data).is_err());
    assert_eq!(events.last().unwrap().event.as_deref(), Some("message_stop"));
}

#[tokio::test(start_paused = true)]
async fn reply_chosen_by_the_tool_result_in_the_last_message() {
    let mut scenario = Scenario::default();
    scenario.anthropic.replies = vec![
        LlmReply::text(["Checking."]).with_tool_call(ToolCallScript::new("book", r#"{"slot":"10:00"}"#)),
        LlmReply::text(["Booked", " for", " ten."]).when("confirmed"),
    ];
    let sim = Simulator::start(scenario).await.unwrap();
    let mut body = request(false);
    body["messages"] = json!([
        {"role": "user", "content": "book me at ten"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "book", "input": {"slot": "10:00"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"status\":\"confirmed\"}"}]},
    ]);
    let reply: Value = post(&sim, &AUTH, &body).await.json().await.unwrap();
    assert_eq!(reply["content"][0]["text"], "Booked for ten.");
    assert_eq!(reply["stop_reason"], "end_turn");

    let first: Value = post(&sim, &AUTH, &request(false)).await.json().await.unwrap();
    assert_eq!(first["content"][1]["name"], "book", "no `when` matched: the cycled reply");
}
