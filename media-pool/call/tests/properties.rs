//! Random callers and providers against the engine: whatever happens, it never panics, never
//! asks for a deadline in the past (the harness asserts that), never plays faster than one
//! frame per 20 ms, never plays while paused, emits nothing after the call ended, and every
//! call ends.

mod support;

use golos_call::{CallConfig, Command, Event, MessageRole, Output, ToolConfig, ToolKind};
use proptest::prelude::*;
use std::time::Duration;
use support::{ms, Ev, Reply, Sim};

#[derive(Debug, Clone)]
enum Caller {
    Speech { start: u64, length: u64 },
    Final { at: u64, text: &'static str, confidence: f32 },
    Interim { at: u64, text: &'static str },
    Dtmf { at: u64, digit: char },
    Hangup { at: u64 },
}

fn caller() -> impl Strategy<Value = Caller> {
    let at = 0u64..40_000;
    prop_oneof![
        4 => (at.clone(), 20u64..3_000).prop_map(|(start, length)| Caller::Speech { start, length }),
        4 => (at.clone(), proptest::sample::select(vec!["what are your hours", "ага", "", "да", "stop please", "mhm ok"]), 0.0f32..1.0)
            .prop_map(|(at, text, confidence)| Caller::Final { at, text, confidence }),
        2 => (at.clone(), proptest::sample::select(vec!["wait", "угу", "no no"])).prop_map(|(at, text)| Caller::Interim { at, text }),
        1 => (at.clone(), proptest::sample::select(vec!['1', '5', '#'])).prop_map(|(at, digit)| Caller::Dtmf { at, digit }),
        1 => (30_000u64..200_000).prop_map(|at| Caller::Hangup { at }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        3 => Just(Reply::workload()),
        2 => (0u64..1_500).prop_map(|ttft| Reply::text(ttft, &["Hello", " there.", " Bye", " now"])),
        1 => Just(Reply::tool("c1", "lookup", r#"{"q":"x"}"#)),
        1 => Just(Reply::tool("c2", "lookup", "{oops")),
        1 => Just(Reply::tool("c3", "end_call", "{}")),
        1 => Just(Reply::tool("c4", "transfer_call", "{}")),
        1 => Just(Reply::tool("c5", "send_dtmf", r#"{"digits":"9"}"#)),
        1 => Just(Reply::tool("c6", "escalate_to_human", "{}")),
        1 => Just(Reply::tool("c7", "no_such_tool", "{}")),
        1 => Just(Reply::ToolCalls { after_ms: 100, calls: vec![
            ("m1".to_owned(), "lookup".to_owned(), "{}".to_owned()),
            ("m2".to_owned(), "end_call".to_owned(), "{}".to_owned()),
        ] }),
        1 => Just(Reply::ToolCalls { after_ms: 100, calls: vec![
            ("m3".to_owned(), "lookup".to_owned(), "{}".to_owned()),
            ("m4".to_owned(), "send_dtmf".to_owned(), r#"{"digits":"1"}"#.to_owned()),
            ("m5".to_owned(), "no_such_tool".to_owned(), "{}".to_owned()),
        ] }),
        1 => (0u64..2_000).prop_map(|after_ms| Reply::Error { after_ms }),
    ]
}

fn config(greeting: bool) -> CallConfig {
    let tool = |name: &str, kind| ToolConfig { name: name.to_owned(), kind };
    CallConfig {
        greeting: greeting.then(|| "Hello, how can I help?".to_owned()),
        tools: vec![
            tool("lookup", ToolKind::Function { timeout: ms(1_000) }),
            tool("end_call", ToolKind::EndCall),
            tool("transfer_call", ToolKind::TransferCall { destination: None }),
            tool("send_dtmf", ToolKind::SendDtmf),
            tool("escalate_to_human", ToolKind::EscalateToHuman),
        ],
        max_call_duration: Duration::from_secs(600),
        ..CallConfig::english()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_engine_stays_consistent(
        script in proptest::collection::vec(caller(), 0..12),
        replies in proptest::collection::vec(reply(), 0..6),
        greeting in any::<bool>(),
        tts_fails in proptest::bool::weighted(0.1),
        tool_latency in proptest::option::of(0u64..1_500),
    ) {
        let mut sim = Sim::new(config(greeting));
        sim.replies.extend(replies);
        sim.tts_fails = tts_fails;
        sim.tool_latency = tool_latency.map(ms);
        for event in script {
            match event {
                Caller::Speech { start, length } => {
                    sim.at(start, Ev::SpeechStarted { at_ms: start });
                    sim.at(start + length, Ev::SpeechStopped { at_ms: start + length });
                }
                Caller::Final { at, text, confidence } => sim.at(at, Ev::Final(text.to_owned(), confidence)),
                Caller::Interim { at, text } => sim.at(at, Ev::Interim(text.to_owned())),
                Caller::Dtmf { at, digit } => sim.at(at, Ev::Dtmf(digit)),
                Caller::Hangup { at } => sim.at(at, Ev::Hangup),
            }
        }
        sim.run();

        prop_assert!(sim.engine.is_ended(), "the call never ended");
        prop_assert_eq!(sim.engine.poll_timeout(), None);
        let end = sim.log.iter().position(|(_, o)| matches!(o, Output::Event(Event::CallEnded { .. })));
        prop_assert_eq!(end, Some(sim.log.len() - 1), "outputs after the end of the call");

        // Every context sent to the LLM is one a provider accepts: each tool call is answered
        // by exactly one tool message, after it, and no tool message answers nothing.
        for (_, messages, _) in sim.llm_requests() {
            let mut open: Vec<String> = Vec::new();
            for message in &messages {
                match message.role {
                    MessageRole::Assistant => {
                        prop_assert!(open.is_empty(), "unanswered tool calls {:?} before a new assistant message", open);
                        open.extend(message.tool_calls.iter().map(|c| c.id.clone()));
                    }
                    MessageRole::Tool => {
                        let id = message.tool_call_id.clone().unwrap_or_default();
                        let index = open.iter().position(|o| *o == id);
                        prop_assert!(index.is_some(), "tool message for {} answers no open call", id);
                        open.remove(index.unwrap());
                    }
                    MessageRole::User | MessageRole::System => {
                        prop_assert!(open.is_empty(), "unanswered tool calls {:?} before a user message", open);
                    }
                }
            }
            prop_assert!(open.is_empty(), "unanswered tool calls {:?} at the end", open);
        }

        // No stream is left open for the driver: every LLM and TTS request it was asked to
        // start either finished (its end or error reached the engine) or was cancelled.
        let mut open = std::collections::BTreeSet::new();
        for (_, output) in &sim.log {
            match output {
                Output::Command(Command::StartLlm { request, .. } | Command::StartTts { request, .. }) => {
                    open.insert(*request);
                }
                Output::Command(Command::CancelLlm { request } | Command::CancelTts { request }) => {
                    open.remove(request);
                }
                _ => {}
            }
        }
        for (_, ev) in &sim.trace {
            if let Some(Ev::LlmEnd(r) | Ev::LlmError(r) | Ev::TtsEnd(r) | Ev::TtsError(r)) = ev {
                open.remove(r);
            }
        }
        prop_assert!(open.is_empty(), "requests left open: {:?}", open);

        let english = CallConfig::english();
        // Last words end the call soon: a goodbye or transfer message is followed by the
        // hangup or transfer after their audio, well before the `goodbye_max` cap.
        let last_words = [
            english.goodbye.as_str(),
            english.silence_goodbye.as_str(),
            english.max_duration_goodbye.as_str(),
            english.transfer_message.as_str(),
        ];
        let said = sim.log.iter().find_map(|(t, o)| match o {
            Output::Command(Command::StartTts { text, .. }) if last_words.contains(&&**text) => Some(*t),
            _ => None,
        });
        if let Some(said) = said {
            let ended = sim.log.last().map(|(t, _)| *t).unwrap();
            prop_assert!(ended < said + english.goodbye_max, "last words at {:?}, end at {:?} (the cap, not the audio)", said, ended);
        }

        let final_words = [english.silence_goodbye.as_str(), english.max_duration_goodbye.as_str()];
        let mut last_play: Option<Duration> = None;
        let mut paused = false;
        for (at, output) in &sim.log {
            match output {
                Output::PlayAudio(_) => {
                    prop_assert!(!paused, "audio while paused at {:?}", at);
                    if let Some(last) = last_play {
                        prop_assert!(*at >= last + ms(20), "frames {:?} and {:?} closer than 20 ms", last, at);
                    }
                    last_play = Some(*at);
                }
                Output::Event(Event::Interruption { committed: false, .. }) => paused = true,
                Output::Event(Event::Interruption { committed: true, .. } | Event::Resumed { .. }) => paused = false,
                // A goodbye (silence or max duration) takes over from a paused answer.
                Output::Command(Command::StartTts { text, .. }) if final_words.contains(&&**text) => paused = false,
                _ => {}
            }
        }
    }
}
