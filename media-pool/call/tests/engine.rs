//! Every rule of DESIGN.md §4 on a virtual clock, with exact timings.

mod support;

use golos_call::{
    CallConfig, CallEngine, Clip, Command, EndReason, Event, MessageRole, Output, RequestId, ToolConfig, ToolKind,
    TransferCause, TurnMetrics,
};
use std::time::Duration;
use support::{is_play, ms, Ev, Reply, Sim};

fn turn_metrics(sim: &Sim) -> Vec<TurnMetrics> {
    sim.log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Event(Event::Turn(m)) => Some(**m),
            _ => None,
        })
        .collect()
}

fn with_tools(tools: Vec<ToolConfig>) -> CallConfig {
    CallConfig { tools, ..CallConfig::english() }
}

fn function(name: &str, timeout_ms: u64) -> ToolConfig {
    ToolConfig { name: name.to_owned(), kind: ToolKind::Function { timeout: ms(timeout_ms) } }
}

// ---- the WORKLOAD turn ---------------------------------------------------------------------

#[test]
fn workload_turn_adds_zero_latency() {
    let mut sim = Sim::workload();
    let final_ms = sim.utterance(1_000, "what are your opening hours");
    sim.run_until(9_999);
    assert_eq!(final_ms, 2_800);
    // No timer between the final transcript and the LLM request.
    assert_eq!(sim.llm_requests()[0].0, 2_800);
    // Token 1 ("Sure.") goes to TTS the instant it arrives: no lookahead token.
    assert_eq!(sim.tts_requests()[0], (3_000, "Sure.".to_owned()));
    // First audio out the instant TTS delivers it.
    assert_eq!(sim.first(is_play), Some(3_100));
    let metrics = turn_metrics(&sim);
    assert_eq!(metrics.len(), 1);
    let m = metrics[0];
    assert_eq!(m.added, Some(Duration::ZERO));
    assert_eq!(m.final_to_llm_request, Some(Duration::ZERO));
    assert_eq!(m.ttft, Some(ms(200)));
    assert_eq!(m.token_to_tts_request, Some(Duration::ZERO));
    assert_eq!(m.tts_first_audio, Some(ms(100)));
    assert_eq!(m.first_audio_out, Some(ms(300)));
    assert_eq!(m.end_of_utterance, Some(ms(300)));
    // The caller stopped at 2500 and heard the agent at 3100.
    assert_eq!(m.heard_silence, Some(ms(600)));
    assert!(!m.filler && !m.interrupted);
    // Pipelined TTS: 300 frames (6.0 s), back to back, paced every 20 ms with no gap.
    let plays = sim.play_times();
    assert_eq!(plays.len(), 300);
    assert!(plays.iter().enumerate().all(|(k, &t)| t == 3_100 + 20 * k as u64), "gaps in {plays:?}");
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::AgentDone { .. }))), Some(9_080));
    let done_at = sim.log.iter().find_map(|(_, o)| match o {
        Output::Event(Event::AgentDone { at }) => Some(*at - sim.t0),
        _ => None,
    });
    assert_eq!(done_at, Some(ms(9_080)));
    // The next sentence's TTS starts while the current one plays (pipelining), in order.
    let requests = sim.tts_requests();
    assert_eq!(
        requests,
        vec![
            (3_000, "Sure.".to_owned()),
            (3_160, "We're open from nine to six, Monday".to_owned()),
            (3_280, "through Friday.".to_owned()),
            (3_760, "On Saturdays we open at ten and close".to_owned()),
            (4_640, "at four.".to_owned()),
            (5_120, "We're closed on Sundays.".to_owned()),
            (5_440, "Anything else I can help with?".to_owned()),
        ]
    );
    // The whole answer is in the context.
    let last = sim.engine.context().last().unwrap();
    assert_eq!(last.role, MessageRole::Assistant);
    assert_eq!(last.content, support::WORKLOAD_TOKENS.concat());
}

#[test]
fn workload_five_turns_with_one_request_per_sentence() {
    let mut sim = Sim::new(CallConfig { chunk_max_chars: usize::MAX, ..CallConfig::english() });
    let mut start = 1_000;
    for turn in 0..5u64 {
        let final_ms = sim.utterance(start, "what are your opening hours");
        sim.run_until(final_ms + 7_000);
        let first_out = sim.log.iter().filter(|(t, o)| t.as_millis() as u64 >= final_ms && is_play(o)).count();
        assert_eq!(first_out, 300, "turn {turn}");
        // Bot audio ends 300 ms + 6 s - 20 ms after the final; the next utterance 1 s later.
        start = final_ms + 300 + 5_980 + 1_000;
    }
    let metrics = turn_metrics(&sim);
    assert_eq!(metrics.len(), 5);
    assert!(metrics.iter().all(|m| m.added == Some(Duration::ZERO)));
    assert_eq!(sim.tts_requests().len(), 25);
    // Context: five user and five assistant messages, in order.
    let roles: Vec<MessageRole> = sim.engine.context().iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::User, MessageRole::Assistant].repeat(5));
}

// ---- barge-in ------------------------------------------------------------------------------

#[test]
fn barge_in_stops_audio_at_speech_start_plus_100_ms_and_cuts_the_context() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_400, Ev::Interim("wait actually".to_owned()));
    sim.at(4_600, Ev::SpeechStopped { at_ms: 4_600 });
    sim.at(4_900, Ev::Final("wait actually what about sunday".to_owned(), 0.9));
    sim.run_until(4_899);
    // Flushed at exactly onset + 100 ms; the last frame went out one frame earlier.
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(4_100));
    assert_eq!(sim.play_times().last(), Some(&4_080));
    // The transcript's words commit it: both TTS streams still synthesising are cancelled.
    let cancels = sim.times_of(|o| matches!(o, Output::Command(Command::CancelTts { .. })));
    assert_eq!(cancels, [4_400, 4_400]);
    let cancelled: Vec<RequestId> = sim
        .log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Command(Command::CancelTts { request }) => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, [RequestId(3), RequestId(5)]); // as in docs/pipeline.md's diagram
    let metrics = turn_metrics(&sim);
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].interrupted);
    assert_eq!(metrics[0].added, Some(Duration::ZERO));
    assert!(sim.log.iter().any(
        |(t, o)| t.as_millis() == 4_400 && matches!(o, Output::Event(Event::Interruption { committed: true, .. }))
    ));
    // 10 + 40 frames were heard: "Sure." and the first words of the next chunk, cut at a
    // word boundary by the played share of the chunk.
    let assistant = sim.engine.context().iter().rfind(|m| m.role == MessageRole::Assistant).unwrap();
    assert_eq!(assistant.content, "Sure. We're open");
    sim.run_until(5_000);
    let (at, messages, _) = sim.llm_requests().pop().unwrap();
    assert_eq!(at, 4_900);
    assert!(sim.log.iter().any(|(t, o)| t.as_millis() == 4_900
        && matches!(o, Output::Command(Command::StartLlm { request: RequestId(6), .. }))));
    let last_two: Vec<(&str, MessageRole)> =
        messages[messages.len() - 2..].iter().map(|m| (m.content.as_str(), m.role)).collect();
    assert_eq!(
        last_two,
        [("Sure. We're open", MessageRole::Assistant), ("wait actually what about sunday", MessageRole::User)]
    );
}

#[test]
fn strict_barge_in_cancels_everything_at_speech_start_plus_100_ms() {
    let mut sim = Sim::new(CallConfig { barge_in_waits_for_words: false, ..CallConfig::english() });
    // A 60-token answer, so the LLM still streams when the caller cuts in.
    let tokens: Vec<&str> = support::WORKLOAD_TOKENS.repeat(2);
    sim.replies.push_back(Reply::text(200, &tokens));
    sim.utterance(1_000, "what are your opening hours");
    sim.at(3_300, Ev::SpeechStarted { at_ms: 3_300 });
    sim.run_until(4_100);
    // 3300: inside the grace window, so at 3600 (agent audio from 3100); the LLM still streams.
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelLlm { .. }))), [3_600]);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelTts { .. }))), [3_600, 3_600]);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(3_600));
    assert_eq!(sim.play_times().last(), Some(&3_580));
    // 25 frames heard: "Sure." (10) and 15 of the next chunk's.
    let assistant = sim.engine.context().iter().rfind(|m| m.role == MessageRole::Assistant).unwrap();
    assert_eq!(assistant.content, "Sure.");
}

#[test]
fn barge_in_while_the_llm_still_streams_cancels_it_too() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(3_300, Ev::SpeechStarted { at_ms: 3_300 });
    sim.at(3_500, Ev::Final("no stop".to_owned(), 0.9));
    sim.run_until(3_499);
    // Grace: agent audio began at 3100, so not before 3600; the final's words commit earlier.
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), None);
    sim.run_until(3_500);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelLlm { .. }))), [3_500]);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(3_500));
    assert_eq!(sim.llm_requests().last().unwrap().0, 3_500);
}

#[test]
fn no_barge_in_during_the_first_500_ms_of_agent_speech() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    // Agent audio starts at 3100. Speech from 3200: it may interrupt only from 3600.
    sim.at(3_200, Ev::SpeechStarted { at_ms: 3_200 });
    sim.run_until(3_700);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(3_600));

    // Speech that ends inside the grace window never pauses the agent.
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(3_200, Ev::SpeechStarted { at_ms: 3_200 });
    sim.at(3_550, Ev::SpeechStopped { at_ms: 3_550 });
    sim.run_until(9_999);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), None);
    assert_eq!(sim.play_times().len(), 300);
}

#[test]
fn speech_shorter_than_100_ms_does_not_interrupt() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_080, Ev::SpeechStopped { at_ms: 4_080 });
    sim.run_until(9_999);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), None);
    assert_eq!(sim.play_times().len(), 300);
}

#[test]
fn a_backchannel_resumes_the_agent_where_it_paused() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_300, Ev::SpeechStopped { at_ms: 4_300 });
    sim.at(4_500, Ev::Final("Ага.".to_owned(), 0.9));
    sim.run_until(12_000);
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(4_100));
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::Resumed { .. }))), Some(4_500));
    assert_eq!(sim.first(|o| matches!(o, Output::Command(Command::CancelTts { .. }))), None);
    // Nothing lost: 50 frames before the pause, the other 250 from the resume on.
    let plays = sim.play_times();
    assert_eq!(plays.len(), 300);
    assert_eq!(plays[49], 4_080);
    assert_eq!(plays[50], 4_500);
    assert_eq!(plays[299], 4_500 + 249 * 20);
    // Not a turn: no new LLM request, the answer is whole in the context.
    assert_eq!(sim.llm_requests().len(), 1);
    assert_eq!(sim.engine.context().last().unwrap().content, support::WORKLOAD_TOKENS.concat());
}

#[test]
fn a_pause_without_words_resumes_after_the_false_interruption_timeout() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_200, Ev::SpeechStopped { at_ms: 4_200 });
    sim.run_until(12_000);
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::Resumed { .. }))), Some(5_200));
    assert_eq!(sim.play_times()[50], 5_200);
}

#[test]
fn backchannels_over_the_agent_without_a_pause_are_not_turns() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    // Inside the grace window: no pause, and "угу" is not a turn.
    sim.at(3_150, Ev::SpeechStarted { at_ms: 3_150 });
    sim.at(3_400, Ev::SpeechStopped { at_ms: 3_400 });
    sim.at(3_500, Ev::Final("угу".to_owned(), 0.9));
    sim.run_until(9_999);
    assert_eq!(sim.llm_requests().len(), 1);
    assert_eq!(sim.play_times().len(), 300);
}

#[test]
fn a_new_answer_after_a_cut_starts_a_fresh_playout_clock() {
    let mut sim = Sim::workload();
    sim.replies.push_back(Reply::workload());
    // The second answer's TTS is slow to start, so its frames arrive in a burst.
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_400, Ev::Final("and on sunday".to_owned(), 0.9));
    sim.run_until(20_000);
    let plays = sim.play_times();
    assert!(plays.windows(2).all(|w| w[1] >= w[0] + 20), "{plays:?}");
    // Second answer: request 4400, token 1 at 4600, first audio 4700, then 20 ms apart.
    let second: Vec<u64> = plays.iter().copied().filter(|&t| t > 4_400).collect();
    assert_eq!(second.len(), 300);
    assert!(second.iter().enumerate().all(|(k, &t)| t == 4_700 + 20 * k as u64));
}

#[test]
fn a_late_wake_up_keeps_the_schedule_and_a_very_late_one_does_not_burst() {
    let t0 = std::time::Instant::now();
    let mut call = CallEngine::new(std::sync::Arc::new(CallConfig::english()), t0);
    call.handle(golos_call::Input::SttFinal { text: "hi", confidence: 0.9 }, t0);
    let llm = std::iter::from_fn(|| call.poll_output())
        .find_map(|o| match o {
            Output::Command(Command::StartLlm { request, .. }) => Some(request),
            _ => None,
        })
        .unwrap();
    call.handle(golos_call::Input::LlmToken { request: llm, text: "Hello there, friend." }, t0 + ms(200));
    call.handle(golos_call::Input::LlmEnd { request: llm }, t0 + ms(200));
    let tts = std::iter::from_fn(|| call.poll_output())
        .find_map(|o| match o {
            Output::Command(Command::StartTts { request, .. }) => Some(request),
            _ => None,
        })
        .unwrap();
    let frame: golos_call::Frame = std::sync::Arc::from(vec![1i16; 320]);
    for _ in 0..5 {
        call.handle(golos_call::Input::TtsAudio { request: tts, frame: frame.clone() }, t0 + ms(300));
    }
    let mut plays = Vec::new();
    let wake = |call: &mut CallEngine, at: u64, plays: &mut Vec<u64>| {
        call.handle_timeout(t0 + ms(at));
        while let Some(o) = call.poll_output() {
            if matches!(o, Output::PlayAudio(_)) {
                plays.push(at);
            }
        }
    };
    wake(&mut call, 300, &mut plays);
    assert_eq!(call.poll_timeout(), Some(t0 + ms(320)));
    wake(&mut call, 325, &mut plays); // 5 ms late: next still due at 340
    assert_eq!(call.poll_timeout(), Some(t0 + ms(340)));
    wake(&mut call, 400, &mut plays); // 60 ms late: one frame now, the clock restarts
    assert_eq!(call.poll_timeout(), Some(t0 + ms(420)));
    assert_eq!(plays, [300, 325, 400]);
}

// ---- filler --------------------------------------------------------------------------------

#[test]
fn filler_at_exactly_request_plus_700_ms_without_a_first_token() {
    let mut sim = Sim::workload();
    sim.replies.push_back(Reply::text(1_000, &["Sure."]));
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(6_000);
    let requests = sim.tts_requests();
    assert_eq!(requests, [(3_500, "One moment…".to_owned()), (3_800, "Sure.".to_owned())]);
    assert!(turn_metrics(&sim)[0].filler);
    // The filler's 20 frames (2 words), then the answer's, queued right behind them.
    let plays = sim.play_times();
    assert_eq!((plays[0], plays[19], plays[20]), (3_600, 3_980, 4_000));
    // A filler is not part of the conversation.
    assert_eq!(sim.engine.context().last().unwrap().content, "Sure.");

    // A first token at 699 ms: no filler.
    let mut sim = Sim::workload();
    sim.replies.push_back(Reply::text(699, &["Sure."]));
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(6_000);
    assert_eq!(sim.tts_requests(), [(3_499, "Sure.".to_owned())]);
}

// ---- STT confidence and DTMF -----------------------------------------------------------------

#[test]
fn low_confidence_asks_to_repeat_twice_then_offers_dtmf_and_digits_make_the_turn() {
    let config = CallConfig::english();
    let (repeat, dtmf) = (config.repeat_prompt.clone(), config.dtmf_prompt.clone());
    let mut sim = Sim::new(config);
    sim.at(1_000, Ev::Final("mumble".to_owned(), 0.59));
    sim.at(5_000, Ev::Final("mumble".to_owned(), 0.5));
    sim.at(9_000, Ev::Final("mumble".to_owned(), 0.3));
    sim.run_until(14_000);
    assert_eq!(sim.tts_requests(), [(1_000, repeat.clone()), (5_000, repeat), (9_000, dtmf)]);
    assert!(sim.llm_requests().is_empty());
    let attempts: Vec<u32> = sim
        .log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Event(Event::LowConfidence { attempt, .. }) => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    sim.at(15_000, Ev::Dtmf('4'));
    sim.at(15_500, Ev::Dtmf('2'));
    sim.at(16_000, Ev::Dtmf('#'));
    sim.run_until(16_000);
    let (at, messages, _) = sim.llm_requests().pop().unwrap();
    assert_eq!(at, 16_000);
    assert_eq!(messages.last().unwrap().content, "[DTMF] 42");
    // Without '#', the digits commit 3 s after the last one.
    sim.run_until(30_000);
    sim.at(30_000, Ev::Dtmf('7'));
    sim.run_until(40_000);
    assert_eq!(sim.llm_requests().last().unwrap().0, 33_000);
}

#[test]
fn a_confident_answer_resets_the_low_confidence_count() {
    let config = CallConfig::english();
    let repeat = config.repeat_prompt.clone();
    let mut sim = Sim::new(config);
    sim.at(1_000, Ev::Final("mumble".to_owned(), 0.5));
    // (After the first prompt's 100 frames: an uncertain final over the agent is ignored.)
    sim.at(4_000, Ev::Final("mumble".to_owned(), 0.5));
    sim.at(8_000, Ev::Final("hello".to_owned(), 0.9));
    sim.at(20_000, Ev::Final("mumble".to_owned(), 0.5));
    sim.run_until(21_000);
    assert_eq!(sim.tts_requests().iter().filter(|(_, t)| *t == repeat).count(), 3);
}

// ---- greeting, silence, duration, hangup ----------------------------------------------------

#[test]
fn greeting_at_call_start_enters_the_context() {
    let sim = Sim::new(CallConfig { greeting: Some("Hello, golos here.".to_owned()), ..CallConfig::english() });
    assert_eq!(sim.tts_requests(), [(0, "Hello, golos here.".to_owned())]);
    assert_eq!(sim.engine.context()[0].role, MessageRole::Assistant);
    assert_eq!(sim.engine.context()[0].content, "Hello, golos here.");
}

#[test]
fn sixty_seconds_without_an_answer_says_goodbye_then_hangs_up() {
    let config = CallConfig { greeting: Some("Hello there.".to_owned()), ..CallConfig::english() };
    let goodbye = config.silence_goodbye.clone();
    let mut sim = Sim::new(config);
    sim.run();
    // Greeting: 2 words, frames 100..480; then 60 s of nothing.
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::AgentDone { .. }))), Some(480));
    assert_eq!(sim.tts_requests()[1], (60_480, goodbye.clone()));
    // The goodbye plays in full (6 words, 60 frames), then the hangup.
    let frames = goodbye.split_whitespace().count() as u64 * 10;
    let hangup = sim.first(|o| matches!(o, Output::Hangup { reason: EndReason::SilenceTimeout }));
    assert_eq!(hangup, Some(60_480 + 100 + (frames - 1) * 20));
    assert!(sim.engine.is_ended());
    assert_eq!(sim.engine.poll_timeout(), None);
}

#[test]
fn caller_activity_restarts_the_silence_timer() {
    let mut sim = Sim::workload();
    sim.at(30_000, Ev::SpeechStarted { at_ms: 30_000 });
    sim.at(30_500, Ev::SpeechStopped { at_ms: 30_500 });
    sim.run_until(100_000);
    assert_eq!(sim.tts_requests()[0].0, 90_500);
}

#[test]
fn max_call_duration_ends_the_call_politely_even_mid_answer() {
    let config = CallConfig {
        max_call_duration: ms(5_000),
        silence_timeout: Duration::from_secs(3_600),
        ..CallConfig::english()
    };
    let goodbye = config.max_duration_goodbye.clone();
    let mut sim = Sim::new(config);
    sim.utterance(1_000, "what are your opening hours");
    sim.run();
    // The answer is cut at 5 s: LLM finished already, TTS streams cancelled, audio flushed.
    assert!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelTts { .. }))).iter().all(|&t| t == 5_000));
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), Some(5_000));
    assert_eq!(sim.tts_requests().last().unwrap(), &(5_000, goodbye.clone()));
    let frames = goodbye.split_whitespace().count() as u64 * 10;
    assert_eq!(
        sim.first(|o| matches!(o, Output::Hangup { reason: EndReason::MaxDuration })),
        Some(5_100 + (frames - 1) * 20)
    );
}

#[test]
fn caller_hangup_cancels_everything_in_flight() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.at(3_300, Ev::Hangup);
    sim.run();
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelLlm { .. }))), [3_300]);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelTts { .. }))), [3_300, 3_300]);
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::CallEnded { .. }))), Some(3_300));
    assert_eq!(sim.engine.poll_timeout(), None);
}

#[test]
fn a_reconnect_resumes_the_conversation_from_its_snapshot() {
    let config =
        CallConfig { greeting: Some("Hello.".to_owned()), max_call_duration: ms(60_000), ..CallConfig::english() };
    let mut sim = Sim::new(config.clone());
    sim.utterance(2_000, "what are your opening hours");
    sim.run_until(11_000);
    let snapshot = sim.engine.snapshot(sim.t0 + ms(11_000));
    assert_eq!(snapshot.turns, 1);
    assert_eq!(snapshot.elapsed, ms(11_000));
    let roles: Vec<MessageRole> = snapshot.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::Assistant, MessageRole::User, MessageRole::Assistant]);
    // It is what the worker stores: it survives JSON.
    let json = serde_json::to_string(&snapshot).unwrap();
    let restored: golos_call::Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, snapshot);

    // The client reconnects 2 minutes later: no second greeting, same conversation.
    let later = sim.t0 + ms(131_000);
    let mut call = CallEngine::from_snapshot(std::sync::Arc::new(config), restored, later);
    assert_eq!(call.poll_output(), None);
    call.handle(golos_call::Input::SttFinal { text: "and on sunday", confidence: 0.9 }, later);
    let messages = std::iter::from_fn(|| call.poll_output())
        .find_map(|o| match o {
            Output::Command(Command::StartLlm { messages, .. }) => Some(messages),
            _ => None,
        })
        .unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2].content, support::WORKLOAD_TOKENS.concat());
    assert_eq!(messages[3].content, "and on sunday");
    // The 60 s limit counts from the original start: 11 s were used, 49 s are left.
    assert_eq!(call.poll_timeout(), Some(later + ms(700))); // the filler first
    let mut deadlines = Vec::new();
    let mut t = later;
    while let Some(next) = call.poll_timeout() {
        if next > later + ms(60_000) {
            break;
        }
        t = next;
        call.handle_timeout(t);
        deadlines.push(t - later);
        while let Some(o) = call.poll_output() {
            if let Output::Command(Command::StartTts { text, .. }) = o {
                if *text == *CallConfig::english().max_duration_goodbye {
                    assert_eq!(t - later, ms(49_000));
                    return;
                }
            }
        }
    }
    panic!("no max-duration goodbye; deadlines {deadlines:?} up to {t:?}");
}

#[test]
fn a_snapshot_mid_answer_leaves_the_answer_out() {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(4_000);
    let snapshot = sim.engine.snapshot(sim.t0 + ms(4_000));
    let roles: Vec<MessageRole> = snapshot.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::User]);
}

fn call_quality(sim: &Sim) -> golos_call::CallQuality {
    sim.log
        .iter()
        .find_map(|(_, o)| match o {
            Output::Event(Event::CallEnded { quality, .. }) => Some(*quality),
            _ => None,
        })
        .unwrap()
}

#[test]
fn call_quality_is_reported_when_the_call_ends() {
    let mut sim = Sim::new(with_tools(vec![function("lookup", 1_000)]));
    sim.tool_latency = Some(ms(300));
    sim.replies.push_back(Reply::tool("c1", "lookup", "{}"));
    sim.replies.push_back(Reply::text(1_000, &["Found it."]));
    sim.utterance(1_000, "look it up");
    sim.at(4_100, Ev::SpeechStarted { at_ms: 4_100 });
    sim.at(4_700, Ev::Interim("no wait".to_owned()));
    sim.at(4_800, Ev::SpeechStopped { at_ms: 4_800 });
    sim.at(8_000, Ev::Final("mumble".to_owned(), 0.4));
    sim.at(14_000, Ev::Hangup);
    sim.run();
    let quality = call_quality(&sim);
    assert_eq!(quality.turns, 1);
    assert_eq!(quality.mean_stt_confidence, Some(f32::midpoint(0.95, 0.4)));
    assert_eq!(quality.low_confidence_finals, 1);
    assert_eq!((quality.tools_finished, quality.tools_succeeded), (1, 1));
    assert_eq!(quality.interruptions, 1);
    // The tool answered at 3300; with no token by 4000 the filler (2 words) plays from 4100:
    // one stretch of speech, no gap, until the caller cut in.
    assert_eq!((quality.playout_gaps, quality.longest_gap), (0, Duration::ZERO));
}

#[test]
fn a_slow_tts_without_pipelining_shows_as_a_playout_gap() {
    let reply = || Reply::text(200, &["Sure.", " Next", " sentence", " here."]);
    // Pipelined: the second sentence's audio (TTS first audio 300 ms) is ready in time.
    let mut sim = Sim::workload();
    sim.replies.push_back(reply());
    sim.tts_ttfb = ms(300);
    sim.utterance(1_000, "what are your opening hours");
    sim.at(9_000, Ev::Hangup);
    sim.run();
    assert_eq!(call_quality(&sim).playout_gaps, 0);

    // One TTS request at a time: "Sure." plays 3300..3480, the next request starts when the
    // first one ends (3480), its audio at 3780: a 280 ms gap.
    let mut sim = Sim::new(CallConfig { tts_pipeline_depth: 1, ..CallConfig::english() });
    sim.replies.push_back(reply());
    sim.tts_ttfb = ms(300);
    sim.utterance(1_000, "what are your opening hours");
    sim.at(9_000, Ev::Hangup);
    sim.run();
    let quality = call_quality(&sim);
    assert_eq!((quality.playout_gaps, quality.longest_gap), (1, ms(280)));
}

// ---- the LLM→TTS queue -----------------------------------------------------------------------

#[test]
fn a_full_tts_queue_pauses_the_llm_and_loses_nothing() {
    let mut sim = Sim::workload();
    sim.replies.push_back(Reply::Silent);
    sim.tts_ttfb = ms(500);
    sim.at(1_000, Ev::Final("tell me everything".to_owned(), 0.9));
    sim.run_until(1_000);
    let request = sim
        .log
        .iter()
        .find_map(|(_, o)| match o {
            Output::Command(Command::StartLlm { request, .. }) => Some(*request),
            _ => None,
        })
        .unwrap();
    // (No digit before the dot: `9.` waits for the next token in case it is `9.5`.)
    let sentences: Vec<String> = (1..=12).map(|i| format!(" Part {i} done.")).collect();
    for (i, sentence) in sentences.iter().enumerate() {
        sim.at(1_100 + 10 * i as u64, Ev::Token(request, sentence.clone()));
    }
    // The driver stops reading while paused, so the end of the stream comes after the resume.
    sim.at(2_500, Ev::LlmEnd(request));
    sim.run_until(30_000);
    // 2 synthesising + 10 queued at the 12th sentence (1210): pause; the first TTS stream
    // (3 words, 30 frames) ends at 1100 + 500 + 580 = 2180, a slot frees: resume.
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::PauseLlm { .. }))), [1_210]);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::ResumeLlm { .. }))), [2_180]);
    let texts: Vec<String> = sim.tts_requests().into_iter().map(|(_, t)| t).collect();
    let expected: Vec<String> = sentences.iter().map(|s| s.trim().to_owned()).collect();
    assert_eq!(texts, expected);
    assert_eq!(sim.play_times().len(), 12 * 30);
}

// ---- tools ---------------------------------------------------------------------------------

#[test]
fn a_tool_call_runs_and_the_llm_restarts_with_its_result() {
    let mut sim = Sim::new(with_tools(vec![function("get_hours", 5_000)]));
    sim.tool_latency = Some(ms(300));
    sim.replies.push_back(Reply::tool("c1", "get_hours", r#"{"day":"sunday"}"#));
    sim.utterance(1_000, "are you open on sunday");
    sim.run_until(9_000);
    let calls = sim.times_of(|o| matches!(o, Output::Command(Command::CallTool { .. })));
    assert_eq!(calls, [3_000]);
    let requests = sim.llm_requests();
    assert_eq!(requests.len(), 2);
    let (at, messages, tools_enabled) = &requests[1];
    assert_eq!((*at, *tools_enabled), (3_300, true));
    let tail = &messages[messages.len() - 2..];
    assert_eq!(tail[0].role, MessageRole::Assistant);
    assert_eq!(tail[0].tool_calls[0].name, "get_hours");
    assert_eq!(tail[1].role, MessageRole::Tool);
    assert_eq!(tail[1].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(tail[1].content, "result of get_hours");
    // The tool call came before 700 ms: no filler; the answer's audio from 3600.
    assert!(sim.tts_requests().iter().all(|(_, t)| t != "One moment…"));
    assert_eq!(sim.first(is_play), Some(3_600));
}

#[test]
fn at_most_ten_tools_run_at_once() {
    let mut sim = Sim::new(with_tools(vec![function("lookup", 5_000)]));
    sim.tool_latency = Some(ms(300));
    let calls = (0..12).map(|i| (format!("c{i}"), "lookup".to_owned(), "{}".to_owned())).collect();
    sim.replies.push_back(Reply::ToolCalls { after_ms: 200, calls });
    sim.utterance(1_000, "look everything up");
    sim.run_until(4_000);
    let starts = sim.times_of(|o| matches!(o, Output::Command(Command::CallTool { .. })));
    assert_eq!(starts, [[3_000; 10].as_slice(), &[3_300, 3_300]].concat());
    assert_eq!(sim.llm_requests()[1].0, 3_600);
    assert_eq!(sim.llm_requests()[1].1.iter().filter(|m| m.role == MessageRole::Tool).count(), 12);
}

#[test]
fn a_tool_that_does_not_answer_times_out() {
    let mut sim = Sim::new(with_tools(vec![function("slow", 2_500)]));
    sim.replies.push_back(Reply::tool("c1", "slow", "{}"));
    sim.utterance(1_000, "do the slow thing");
    sim.run_until(6_000);
    assert_eq!(sim.llm_requests()[1].0, 5_500);
    let tool = sim.llm_requests()[1].1.iter().find(|m| m.role == MessageRole::Tool).unwrap().content.clone();
    assert_eq!(tool, "error: timed out after 2500 ms");
    // A late answer is ignored.
    sim.at(6_000, Ev::ToolResult("c1".to_owned(), Ok("late".to_owned())));
    sim.run_until(7_000);
    assert_eq!(sim.llm_requests().len(), 2);
}

#[test]
fn every_tool_call_in_the_context_gets_a_result_even_when_interrupted() {
    let mut sim = Sim::new(with_tools(vec![function("slow", 10_000)]));
    sim.replies.push_back(Reply::tool("c1", "slow", "{}"));
    sim.utterance(1_000, "do the slow thing");
    sim.at(4_000, Ev::Final("never mind, what are your hours".to_owned(), 0.9));
    sim.run_until(4_000);
    let (at, messages, _) = sim.llm_requests().pop().unwrap();
    assert_eq!(at, 4_000);
    let roles: Vec<MessageRole> = messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::User, MessageRole::Assistant, MessageRole::Tool, MessageRole::User]);
    assert_eq!(messages[1].tool_calls[0].id, "c1");
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(messages[2].content, "error: cancelled: the caller interrupted");
    // The late result of the cancelled call changes nothing.
    sim.at(5_000, Ev::ToolResult("c1".to_owned(), Ok("done".to_owned())));
    sim.run_until(5_000);
    assert_eq!(sim.llm_requests().len(), 2);
}

#[test]
fn invalid_tool_json_is_retried_twice_then_the_turn_goes_on_without_tools() {
    let mut sim = Sim::new(with_tools(vec![function("get_hours", 5_000)]));
    for _ in 0..3 {
        sim.replies.push_back(Reply::tool("c1", "get_hours", "{\"day\": sun"));
    }
    sim.utterance(1_000, "are you open on sunday");
    sim.run_until(9_000);
    let requests: Vec<(u64, bool)> = sim.llm_requests().into_iter().map(|(t, _, tools)| (t, tools)).collect();
    assert_eq!(requests, [(2_800, true), (3_000, true), (3_200, true), (3_400, false)]);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelLlm { .. }))), [3_000, 3_200, 3_400]);
    assert_eq!(sim.first(is_play), Some(3_700));
}

#[test]
fn end_call_says_goodbye_and_hangs_up_after_playout() {
    let config = with_tools(vec![ToolConfig { name: "end_call".to_owned(), kind: ToolKind::EndCall }]);
    let goodbye = config.goodbye.clone();
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "end_call", "{}"));
    sim.utterance(1_000, "that's all, bye");
    sim.run();
    assert_eq!(sim.tts_requests(), [(3_000, goodbye.clone())]);
    let frames = goodbye.split_whitespace().count() as u64 * 10;
    let last_frame = 3_100 + (frames - 1) * 20;
    assert_eq!(sim.play_times().last(), Some(&last_frame));
    assert_eq!(sim.first(|o| matches!(o, Output::Hangup { reason: EndReason::AgentHangup })), Some(last_frame));
}

#[test]
fn end_call_next_to_a_customer_tool_still_hangs_up_after_the_goodbye() {
    let config = with_tools(vec![
        function("lookup", 5_000),
        ToolConfig { name: "end_call".to_owned(), kind: ToolKind::EndCall },
    ]);
    let goodbye = config.goodbye.clone();
    let mut sim = Sim::new(config);
    let calls = vec![
        ("c1".to_owned(), "lookup".to_owned(), "{}".to_owned()),
        ("c2".to_owned(), "end_call".to_owned(), "{}".to_owned()),
    ];
    sim.replies.push_back(Reply::ToolCalls { after_ms: 200, calls });
    sim.utterance(1_000, "thanks, bye");
    sim.run();
    assert!(sim.first(|o| matches!(o, Output::Command(Command::CallTool { .. }))).is_none());
    let frames = goodbye.split_whitespace().count() as u64 * 10;
    assert_eq!(
        sim.first(|o| matches!(o, Output::Hangup { reason: EndReason::AgentHangup })),
        Some(3_100 + (frames - 1) * 20)
    );
}

#[test]
fn an_unintelligible_barge_in_asks_to_repeat_at_once() {
    let config = CallConfig::english();
    let repeat = config.repeat_prompt.clone();
    let mut sim = Sim::new(config);
    sim.utterance(1_000, "what are your opening hours");
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.at(4_500, Ev::SpeechStopped { at_ms: 4_500 });
    sim.at(4_700, Ev::Final("mmrhm blah".to_owned(), 0.3));
    sim.run_until(6_000);
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelTts { .. }))), [4_700, 4_700]);
    assert_eq!(sim.tts_requests().last().unwrap(), &(4_700, repeat));
    assert_eq!(sim.play_times().iter().find(|&&t| t > 4_100), Some(&4_800));
}

#[test]
fn caller_input_during_the_goodbye_does_not_start_a_turn() {
    let config = with_tools(vec![ToolConfig { name: "end_call".to_owned(), kind: ToolKind::EndCall }]);
    let goodbye = config.goodbye.clone();
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "end_call", "{}"));
    sim.at(500, Ev::Dtmf('1')); // its 3 s commit falls inside the goodbye
    sim.utterance(1_000, "that's all, bye");
    sim.at(3_400, Ev::Final("wait one more thing".to_owned(), 0.9));
    sim.run();
    assert_eq!(sim.llm_requests().len(), 1);
    let frames = goodbye.split_whitespace().count() as u64 * 10;
    assert_eq!(sim.first(|o| matches!(o, Output::Hangup { .. })), Some(3_100 + (frames - 1) * 20));
}

#[test]
fn goodbyes_cannot_be_barged_into() {
    let config = with_tools(vec![ToolConfig { name: "end_call".to_owned(), kind: ToolKind::EndCall }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "end_call", "{}"));
    sim.utterance(1_000, "that's all, bye");
    sim.at(3_700, Ev::SpeechStarted { at_ms: 3_700 });
    sim.run();
    assert_eq!(sim.first(|o| matches!(o, Output::FlushPlayout)), None);
    assert!(sim.first(|o| matches!(o, Output::Hangup { .. })).is_some());
}

#[test]
fn transfer_call_speaks_then_transfers() {
    let config = with_tools(vec![ToolConfig {
        name: "transfer_call".to_owned(),
        kind: ToolKind::TransferCall { destination: Some("+79990001122".to_owned()) },
    }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "transfer_call", "{}"));
    sim.utterance(1_000, "give me a person");
    sim.run_until(10_000);
    let transfer = sim.log.iter().find_map(|(t, o)| match o {
        Output::Transfer { target, cause } => {
            assert_eq!(*cause, TransferCause::TransferCall);
            Some((t.as_millis() as u64, target.clone()))
        }
        _ => None,
    });
    // "Transferring your call." is 3 words: frames 3100..3680.
    assert_eq!(transfer, Some((3_680, "+79990001122".to_owned())));
    // The call is not over until the line says how the transfer went.
    assert_eq!(sim.first(|o| matches!(o, Output::Hangup { .. })), None);
}

fn transfer_sim() -> Sim {
    let config = CallConfig {
        tools: vec![ToolConfig {
            name: "transfer_call".to_owned(),
            kind: ToolKind::TransferCall { destination: Some("+79990001122".to_owned()) },
        }],
        ..CallConfig::english()
    };
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "transfer_call", "{}"));
    sim.utterance(1_000, "give me a person");
    sim
}

#[test]
fn a_completed_transfer_ends_the_call_as_transferred() {
    let mut sim = transfer_sim();
    sim.run_until(5_000);
    let transferred_at = sim.first(|o| matches!(o, Output::Transfer { .. })).expect("a transfer");
    sim.at(transferred_at + 4_000, Ev::TransferResult(Ok(())));
    sim.run();
    assert_eq!(
        sim.log.iter().find_map(|(t, o)| match o {
            Output::Hangup { reason } => Some((t.as_millis() as u64, *reason)),
            _ => None,
        }),
        Some((transferred_at + 4_000, EndReason::Transfer))
    );
    assert!(sim.engine.is_ended());
}

#[test]
fn a_failed_transfer_is_told_to_the_caller_and_the_conversation_goes_on() {
    let mut sim = transfer_sim();
    let failed = CallConfig::english().transfer_failed_message;
    sim.run_until(5_000);
    let transferred_at = sim.first(|o| matches!(o, Output::Transfer { .. })).expect("a transfer");
    // While the line rings the target, the caller's words are not the agent's turn.
    sim.utterance(transferred_at + 1_000, "hello? anyone?");
    sim.at(transferred_at + 6_000, Ev::TransferResult(Err("the line is busy".to_owned())));
    sim.run_until(transferred_at + 9_000);
    assert_eq!(sim.llm_requests().len(), 1, "no turn during the transfer");
    assert!(sim.tts_requests().iter().any(|(t, text)| *t == transferred_at + 6_000 && *text == failed));
    assert_eq!(sim.first(|o| matches!(o, Output::Hangup { .. })), None);
    let note = sim.engine.context().last().expect("a note");
    assert_eq!(note.role, MessageRole::System);
    assert!(note.content.contains("the line is busy"), "{}", note.content);
    // The caller speaks again and gets an answer with the failure in its context.
    sim.replies.push_back(Reply::text(300, &["Of course, what is it?"]));
    sim.utterance(transferred_at + 10_000, "then help me yourself");
    sim.run_until(transferred_at + 16_000);
    assert_eq!(sim.llm_requests().len(), 2);
    assert!(!sim.engine.is_ended());
}

#[test]
fn a_transfer_without_an_answer_in_time_counts_as_failed() {
    let mut sim = transfer_sim();
    let config = CallConfig::english();
    sim.run_until(5_000);
    let transferred_at = sim.first(|o| matches!(o, Output::Transfer { .. })).expect("a transfer");
    sim.run_until(transferred_at + config.transfer_timeout.as_millis() as u64 + 100);
    let said_at = sim.tts_requests().iter().find(|(_, text)| *text == config.transfer_failed_message).map(|(t, _)| *t);
    assert_eq!(said_at, Some(transferred_at + config.transfer_timeout.as_millis() as u64));
    assert!(sim.log.iter().any(|(_, o)| matches!(o, Output::Event(Event::TransferFailed { .. }))));
}

#[test]
fn the_llm_cannot_choose_where_a_call_is_transferred() {
    let config = with_tools(vec![ToolConfig {
        name: "transfer_call".to_owned(),
        kind: ToolKind::TransferCall { destination: Some("+79990001122".to_owned()) },
    }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "transfer_call", r#"{"destination":"+88216000000"}"#));
    sim.utterance(1_000, "transfer me to +88216000000");
    sim.run_until(6_000);
    let targets: Vec<String> = sim
        .log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Transfer { target, .. } => Some(target.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["+79990001122"]);
}

#[test]
fn send_dtmf_sends_digits_and_the_llm_goes_on() {
    let config = with_tools(vec![ToolConfig { name: "send_dtmf".to_owned(), kind: ToolKind::SendDtmf }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "send_dtmf", r#"{"digits":"1234#"}"#));
    sim.utterance(1_000, "press my extension");
    sim.run_until(4_000);
    let sent = sim.log.iter().find_map(|(t, o)| match o {
        Output::SendDtmf { digits } => Some((t.as_millis() as u64, digits.clone())),
        _ => None,
    });
    assert_eq!(sent, Some((3_000, "1234#".to_owned())));
    assert_eq!(sim.llm_requests()[1].0, 3_000);
}

#[test]
fn without_a_recogniser_the_caller_is_asked_for_the_keypad_and_keys_make_the_turn() {
    let config = CallConfig::english();
    let prompt = config.dtmf_prompt.clone();
    let mut sim = Sim::new(config);
    sim.at(1_000, Ev::SttUnavailable { dtmf_menu: true });
    sim.at(6_000, Ev::Dtmf('4'));
    sim.at(6_200, Ev::Dtmf('2'));
    sim.at(6_400, Ev::Dtmf('#'));
    sim.run_until(7_000);
    assert_eq!(sim.tts_requests().first(), Some(&(1_000, prompt)));
    assert!(sim.log.iter().any(|(_, o)| matches!(o, Output::Event(Event::DtmfMenu { .. }))));
    let user = sim.engine.context().iter().rev().find(|m| m.role == MessageRole::User).expect("a turn");
    assert_eq!(user.content, "[DTMF] 42");
    assert_eq!(sim.llm_requests().len(), 1);
}

#[test]
fn without_a_recogniser_or_a_keypad_menu_the_call_ends_with_an_apology() {
    let config = CallConfig::english();
    let apology = config.apology.clone();
    let mut sim = Sim::new(config);
    sim.at(1_000, Ev::SttUnavailable { dtmf_menu: false });
    sim.run_until(20_000);
    assert_eq!(sim.tts_requests().first(), Some(&(1_000, apology)));
    assert!(sim.log.iter().any(|(_, o)| matches!(o, Output::Hangup { reason: EndReason::Failed })));
}

#[test]
fn send_dtmf_refuses_what_is_not_a_keypad_digit() {
    let config = with_tools(vec![ToolConfig { name: "send_dtmf".to_owned(), kind: ToolKind::SendDtmf }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "send_dtmf", r#"{"digits":"12; rm -rf"}"#));
    sim.utterance(1_000, "press something");
    sim.run_until(4_000);
    assert_eq!(sim.first(|o| matches!(o, Output::SendDtmf { .. })), None);
    let result = sim.engine.context().iter().find(|m| m.role == MessageRole::Tool).expect("a tool result");
    assert!(result.content.starts_with("error: digits"), "{}", result.content);
}

#[test]
fn escalate_to_human_emits_an_event_and_hands_off() {
    let config = CallConfig {
        escalation_target: Some("+79990003344".to_owned()),
        ..with_tools(vec![ToolConfig { name: "escalate_to_human".to_owned(), kind: ToolKind::EscalateToHuman }])
    };
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "escalate_to_human", r#"{"reason":"angry caller"}"#));
    sim.utterance(1_000, "I want to complain");
    sim.run();
    assert!(sim.log.iter().any(|(t, o)| t.as_millis() == 3_000
        && matches!(o, Output::Event(Event::Escalation { reason, transfer_to })
            if reason == "angry caller" && transfer_to.as_deref() == Some("+79990003344"))));
    assert!(sim
        .log
        .iter()
        .any(|(_, o)| matches!(o, Output::Transfer { target, cause: TransferCause::EscalateToHuman }
        if target == "+79990003344")));
}

#[test]
fn escalate_to_human_without_a_destination_is_reported_and_the_call_goes_on() {
    let config = with_tools(vec![ToolConfig { name: "escalate_to_human".to_owned(), kind: ToolKind::EscalateToHuman }]);
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::tool("c1", "escalate_to_human", r#"{"reason":"wants a refund"}"#));
    sim.utterance(1_000, "I want my money back");
    sim.run_until(8_000);
    let escalations: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Event(Event::Escalation { reason, transfer_to }) => Some((reason.clone(), transfer_to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(escalations, [("wants a refund".to_owned(), None)]);
    assert_eq!(sim.first(|o| matches!(o, Output::Transfer { .. })), None);
    assert_eq!(sim.first(|o| matches!(o, Output::Hangup { .. })), None, "the call goes on");
}

// ---- failures: never silence ----------------------------------------------------------------

#[test]
fn an_llm_failure_is_answered_with_a_spoken_apology() {
    let config = CallConfig::english();
    let apology = config.apology.clone();
    let mut sim = Sim::new(config);
    sim.replies.push_back(Reply::Error { after_ms: 250 });
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(9_000);
    assert_eq!(sim.tts_requests(), [(3_050, apology)]);
    assert_eq!(sim.first(is_play), Some(3_150));
}

#[test]
fn a_tts_failure_plays_the_apology_clip() {
    let mut sim = Sim::workload();
    sim.tts_fails = true;
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(9_000);
    assert_eq!(sim.first(|o| matches!(o, Output::PlayClip(Clip::Apology))), Some(3_100));
    assert_eq!(sim.times_of(|o| matches!(o, Output::Command(Command::CancelLlm { .. }))), [3_100]);
    // The clip's length counts as agent speech; then the agent waits for the caller again.
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::AgentDone { .. }))), Some(7_100));
    // Not a word of the answer was heard, so none of it is in the context.
    let roles: Vec<MessageRole> = sim.engine.context().iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::User]);
}

#[test]
fn the_apology_clip_is_paced_by_the_engine_even_when_its_audio_arrives_at_once() {
    let mut sim = Sim::workload();
    sim.tts_fails = true;
    sim.utterance(1_000, "what are your opening hours");
    for _ in 0..30 {
        sim.at(3_200, Ev::ClipAudio);
    }
    sim.at(3_200, Ev::ClipEnd);
    sim.run_until(9_000);
    let expected: Vec<u64> = (0..30).map(|k| 3_200 + 20 * k).collect();
    assert_eq!(sim.play_times(), expected);
    // Audio inside the clip's window does not stretch it: the agent listens again at its end.
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::AgentDone { .. }))), Some(7_100));
}

#[test]
fn a_barge_in_stops_the_apology_clip() {
    let mut sim = Sim::workload();
    sim.tts_fails = true;
    sim.utterance(1_000, "what are your opening hours");
    for _ in 0..100 {
        sim.at(3_200, Ev::ClipAudio);
    }
    sim.at(3_200, Ev::ClipEnd);
    sim.at(4_000, Ev::SpeechStarted { at_ms: 4_000 });
    sim.run_until(9_000);
    // 500 ms of barge-in grace from the first frame, then 100 ms of speech: nothing after.
    assert!(sim.play_times().iter().all(|&t| t < 4_100), "{:?}", sim.play_times());
}

// ---- prompts --------------------------------------------------------------------------------

#[test]
fn a_fixed_prompt_is_synthesised_and_paced_but_stays_out_of_the_conversation() {
    let mut sim = Sim::workload();
    sim.at(1_000, Ev::SayPrompt("please hold the line".to_owned()));
    sim.run_until(3_000);
    assert_eq!(sim.tts_requests(), [(1_000, "please hold the line".to_owned())]);
    let expected: Vec<u64> = (0..40).map(|k| 1_100 + 20 * k).collect();
    assert_eq!(sim.play_times(), expected);
    assert_eq!(sim.first(|o| matches!(o, Output::Event(Event::AgentDone { .. }))), Some(1_880));
    assert!(sim.engine.context().is_empty());
    assert!(sim.log.iter().all(|(_, o)| !matches!(o, Output::Event(Event::Transcript { .. }))));
}

// ---- cost ----------------------------------------------------------------------------------

#[test]
fn the_engine_is_small() {
    let size = std::mem::size_of::<CallEngine>();
    println!("size_of::<CallEngine>() = {size} bytes");
    assert!(size <= 1_024, "{size}");
}
