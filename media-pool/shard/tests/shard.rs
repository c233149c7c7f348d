//! The shard on a virtual clock: time moves only when the test jumps to the next deadline, so
//! every timing is exact and nothing sleeps.

use golos_call::{Output, RequestId};
use golos_shard::{CallSink, Feed, Shard, ShardCallId, TimeSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// No greeting: the probes below drive the call themselves.
fn config() -> Arc<golos_call::CallConfig> {
    Arc::new(golos_call::CallConfig { greeting: None, ..golos_call::CallConfig::english() })
}

/// Counts its steps; its deadline is a fixed instant until it has run once.
struct Probe {
    at: Option<Instant>,
    steps: Arc<Mutex<Vec<(u64, Instant)>>>,
    id: u64,
}

impl CallSink for Probe {
    fn output(&mut self, _: Output, _: &mut Feed<'_>) {}

    fn poll_timeout(&self) -> Option<Instant> {
        self.at
    }

    fn handle_timeout(&mut self, call: &mut Feed<'_>) {
        self.steps.lock().unwrap().push((self.id, call.now()));
        self.at = None;
    }
}

#[test]
fn deadlines_due_in_the_same_instant_run_in_one_batch() {
    let t0 = Instant::now();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let mut shard = Shard::new(TimeSource::Virtual);
    let due = t0 + ms(20);
    for id in 0..50 {
        let at = if id == 49 { due + Duration::from_nanos(1) } else { due };
        let probe = Probe { at: Some(at), steps: Arc::clone(&steps), id };
        shard.add_call(ShardCallId(id), config(), Box::new(probe), t0);
    }
    assert_eq!(shard.next_deadline(), Some(due));
    assert_eq!(shard.run_due(t0 + Duration::from_nanos(19_999_999)), 0, "nothing is due early");
    assert_eq!(shard.run_due(due), 49, "all 49 due calls in one batch");
    assert_eq!(shard.stats().batches, 1);
    assert!(steps.lock().unwrap().iter().all(|&(_, at)| at == due));
    // The 50th is due 1 ns later: the next wake-up.
    assert_eq!(shard.next_deadline(), Some(due + Duration::from_nanos(1)));
    assert_eq!(shard.run_due(due + Duration::from_nanos(1)), 1);
    // Only the engines' own far deadlines (silence timeout) are left.
    assert!(shard.next_deadline().unwrap() >= t0 + Duration::from_secs(60));
}

#[test]
fn inputs_reach_the_engine_and_an_ended_call_is_removed() {
    let t0 = Instant::now();
    let mut shard = Shard::new(TimeSource::Virtual);
    let steps = Arc::new(Mutex::new(Vec::new()));
    shard.add_call(ShardCallId(7), config(), Box::new(Probe { at: None, steps, id: 7 }), t0);
    assert_eq!(shard.len(), 1);
    // A late provider event for a request the call never made is ignored by the engine.
    shard.input(ShardCallId(7), golos_call::Input::LlmEnd { request: RequestId(99) }, t0 + ms(1));
    shard.input(ShardCallId(7), golos_call::Input::Hangup, t0 + ms(2));
    assert!(shard.is_empty());
    assert_eq!(shard.next_deadline(), None, "its heap entries went stale");
    // Inputs for a call that is gone are dropped.
    shard.input(ShardCallId(7), golos_call::Input::Hangup, t0 + ms(3));
    assert_eq!(shard.stats().calls_ended, 1);
}

/// Tells the test what happened to its call, from the shard's thread.
struct Notify(crossbeam_channel::Sender<&'static str>);

impl CallSink for Notify {
    fn started(&mut self, _: Instant) {
        let _ = self.0.send("started");
    }

    fn output(&mut self, output: Output, _: &mut Feed<'_>) {
        if let Output::Command(golos_call::Command::StartLlm { .. }) = output {
            let _ = self.0.send("StartLlm");
        }
    }

    fn caller_audio(&mut self, _: golos_call::Frame, _: &mut Feed<'_>) {
        let _ = self.0.send("audio");
    }

    fn closed(&mut self, _: Instant) {
        let _ = self.0.send("closed");
    }
}

/// The pool's real threads and inbound channels; the test blocks on what the sink reports
/// (bounded by a generous timeout) and never sleeps.
#[test]
fn the_pool_routes_edges_through_each_shards_inbound_channel() {
    let pool = golos_shard::ShardPool::new(2);
    let (tx, rx) = crossbeam_channel::unbounded();
    let wait = || rx.recv_timeout(Duration::from_secs(10)).expect("the shard answers");
    let first = pool.add_call(config(), Box::new(Notify(tx.clone())));
    let second = pool.add_call(config(), Box::new(Notify(tx)));
    assert_ne!(first.shard(), second.shard(), "round robin");
    assert_eq!([wait(), wait()], ["started", "started"]);

    assert!(first.audio(Arc::from(vec![0i16; 320])));
    assert_eq!(wait(), "audio");
    let final_text = golos_shard::OwnedInput::SttFinal { text: "what are your opening hours".into(), confidence: 0.9 };
    assert!(first.input(final_text));
    assert_eq!(wait(), "StartLlm", "no timer between the final and the LLM request");
    assert!(first.hangup());
    assert_eq!(wait(), "closed");

    let stats = pool.shutdown();
    assert_eq!(wait(), "closed", "shutdown ends the calls still up");
    assert_eq!(stats.iter().map(|s| s.calls_added).sum::<u64>(), 2);
    assert_eq!(stats.iter().map(|s| s.calls_ended).sum::<u64>(), 2);
}

/// Reports each caller frame's first sample; the first frame holds the shard's thread until
/// the test opens the gate, so the test can fill the audio queue behind it.
struct Gated {
    report: crossbeam_channel::Sender<String>,
    gate: Option<crossbeam_channel::Receiver<()>>,
}

impl CallSink for Gated {
    fn output(&mut self, _: Output, _: &mut Feed<'_>) {}

    fn caller_audio(&mut self, frame: golos_call::Frame, _: &mut Feed<'_>) {
        let _ = self.report.send(format!("audio {}", frame[0]));
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv_timeout(Duration::from_secs(10));
        }
    }

    fn closed(&mut self, _: Instant) {
        let _ = self.report.send("closed".into());
    }
}

/// A shard that falls behind sheds its oldest caller audio, counts it, and still gets the
/// hangup queued behind the audio: control inputs are never shed.
#[test]
fn a_full_audio_queue_sheds_the_oldest_frames_and_never_a_hangup() {
    let counters = Arc::new(golos_shard::ShardCounters::default());
    let pool = golos_shard::ShardPool::with_audio_queue(1, 4, &counters);
    let (report, reports) = crossbeam_channel::unbounded();
    let (open_gate, gate) = crossbeam_channel::bounded(1);
    let call = pool.add_call(config(), Box::new(Gated { report, gate: Some(gate) }));
    let next = || reports.recv_timeout(Duration::from_secs(10)).expect("the shard reports");
    let frame = |n: i16| Arc::from(vec![n; 320]);
    assert!(call.audio(frame(0)));
    assert_eq!(next(), "audio 0", "the shard is now held inside the first frame");
    for n in 1..=10 {
        assert!(call.audio(frame(n)));
    }
    assert_eq!(counters.audio_shed.load(std::sync::atomic::Ordering::Relaxed), 6, "frames 1-6 made room");
    assert!(call.hangup());
    open_gate.send(()).unwrap();
    let rest: Vec<String> = (0..5).map(|_| next()).collect();
    assert_eq!(rest, ["audio 7", "audio 8", "audio 9", "audio 10", "closed"]);
    pool.shutdown();
}
