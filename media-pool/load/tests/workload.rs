//! The WORKLOAD call on the shard's virtual clock: time moves only when the test jumps to the
//! next deadline, so every WORKLOAD timing is exact and nothing sleeps.

use golos_load::load::workload_call_config;
use golos_load::sim::{Recorder, SimCall, SimShared, TurnRecord};
use golos_shard::{Shard, ShardCallId, TimeSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn config() -> Arc<golos_call::CallConfig> {
    workload_call_config()
}

/// Steps the shard from deadline to deadline until no call is left (or `limit` passes).
fn run_to_end(shard: &mut Shard, limit: Instant) -> usize {
    let mut batches = 0;
    while let Some(at) = shard.next_deadline() {
        assert!(at <= limit, "calls still running at the limit");
        assert!(shard.run_due(at) > 0);
        batches += 1;
    }
    batches
}

fn recorder() -> Arc<Mutex<Recorder>> {
    let recorder = Recorder::shared();
    recorder.lock().unwrap().keep_turns = true;
    recorder
}

/// Bot audio for a turn: 300 frames from T_out1; the next utterance (75 frames) starts at the
/// first 20 ms slot ≥ T_bot_end + 1 s and the final comes 300 ms after it ends.
#[test]
fn one_workload_call_adds_exactly_zero_latency_on_every_turn() {
    let t0 = Instant::now();
    let recorder = recorder();
    let shared = SimShared::new(5, Arc::clone(&recorder));
    let mut shard = Shard::new(TimeSource::Virtual);
    shard.add_call(ShardCallId(1), config(), Box::new(SimCall::new(shared, 1)), t0);
    run_to_end(&mut shard, t0 + Duration::from_secs(60));
    assert!(shard.is_empty(), "the call hung up after its 5th turn");

    let recorder = recorder.lock().unwrap();
    assert_eq!(recorder.turns_answered, 5);
    assert_eq!(recorder.turns_lost, 0);
    assert_eq!(recorder.calls_ended, 1);
    assert_eq!(recorder.added_max, Duration::ZERO);
    assert_eq!(recorder.added_us.max(), 0);
    let finals: Vec<Duration> = recorder.turns.iter().map(|t| t.t_final - t0).collect();
    // Utterance 1 at 1000 ms, 75 frames → first silence at 2500, final at 2800. Bot audio
    // 3100..9100 (last write at 9080) → next utterance at the first slot ≥ 10080: 10080, and so on.
    assert_eq!(finals, [ms(2_800), ms(11_880), ms(20_960), ms(30_040), ms(39_120)]);
    for turn in &recorder.turns {
        assert_eq!(turn.t_out1 - turn.t_final, ms(300), "turn {}", turn.turn);
    }
    // Every caller frame went in on its slot.
    assert_eq!(recorder.input_lag_us.max(), 1);
    // The engine saw no delay between final and LLM request, nor between token 1 and TTS.
    assert_eq!(recorder.final_to_llm_us.max(), 1);
    assert_eq!(recorder.token_to_tts_us.max(), 1);
}

#[test]
fn many_calls_in_one_shard_do_not_interfere() {
    let t0 = Instant::now();
    let recorder = recorder();
    let shared = SimShared::new(5, Arc::clone(&recorder));
    let mut shard = Shard::new(TimeSource::Virtual);
    // 200 calls, several starting in the same instant and the rest at odd offsets, so their
    // deadlines interleave and coincide.
    let starts: Vec<Duration> = (0..200u64).map(|i| Duration::from_micros((i / 4) * 7_919)).collect();
    let mut next = 0;
    while next < starts.len() || !shard.is_empty() {
        let add_at = starts.get(next).map(|d| t0 + *d);
        let due = shard.next_deadline();
        match (add_at, due) {
            (Some(add), due) if due.is_none_or(|d| add <= d) => {
                shard.add_call(
                    ShardCallId(next as u64),
                    config(),
                    Box::new(SimCall::new(Arc::clone(&shared), next as u64)),
                    add,
                );
                next += 1;
            }
            (_, Some(due)) => {
                shard.run_due(due);
            }
            _ => unreachable!(),
        }
    }
    let recorder = recorder.lock().unwrap();
    assert_eq!(recorder.calls_ended, 200);
    assert_eq!(recorder.turns_answered, 1_000);
    assert_eq!(recorder.turns_lost, 0);
    assert_eq!(recorder.added_max, Duration::ZERO);
    // Each call's timeline is the solo call's, shifted by its start.
    for call in 0..200u64 {
        let turns: Vec<&TurnRecord> = recorder.turns.iter().filter(|t| t.call == call).collect();
        let start = t0 + starts[call as usize];
        let finals: Vec<Duration> = turns.iter().map(|t| t.t_final - start).collect();
        assert_eq!(finals, [ms(2_800), ms(11_880), ms(20_960), ms(30_040), ms(39_120)], "call {call}");
    }
}
