//! Property tests for the parsers that take bytes from providers: they never panic, and how
//! the network splits the bytes never changes what they read.

use golos_providers::sse::{SseEvent, SseParser};
use golos_providers::wav;
use proptest::prelude::*;
use std::fmt::Write as _;

fn event() -> impl Strategy<Value = SseEvent> {
    ("[a-z_]{1,12}", proptest::collection::vec("[^\r\n]{0,30}", 1..4))
        .prop_map(|(event, lines)| SseEvent { event, data: lines.join("\n") })
}

fn encode(events: &[SseEvent], crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for e in events {
        let _ = write!(out, ": keep-alive{nl}event: {}{nl}", e.event);
        for line in e.data.split('\n') {
            let _ = write!(out, "data: {line}{nl}");
        }
        out.push_str(nl);
    }
    out.into_bytes()
}

proptest! {
    #[test]
    fn sse_events_survive_any_split(events in proptest::collection::vec(event(), 0..6), crlf in any::<bool>(),
                                    cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let bytes = encode(&events, crlf);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut parser = SseParser::default();
        let mut parsed = Vec::new();
        let mut from = 0;
        for to in points.into_iter().chain([bytes.len()]) {
            parsed.extend(parser.push(&bytes[from..to]).unwrap());
            from = to;
        }
        prop_assert_eq!(parsed, events);
        prop_assert!(!parser.is_mid_event());
    }

    #[test]
    fn sse_parser_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut parser = SseParser::default();
        for chunk in chunks {
            let _ = parser.push(&chunk);
        }
    }

    #[test]
    fn wav_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), header in any::<bool>()) {
        let mut input = if header { wav::encode(16_000, &[1, 2, 3]) } else { Vec::new() };
        input.extend(bytes);
        let parsed = wav::parse(&input);
        if header {
            // A valid header followed by junk: the declared data chunk is read, whatever follows.
            prop_assert_eq!(parsed.unwrap().samples, vec![1, 2, 3]);
        }
    }

    #[test]
    fn resampling_keeps_the_duration(samples in proptest::collection::vec(any::<i16>(), 0..2_000),
                                     from in prop::sample::select(vec![8_000u32, 16_000, 22_050, 24_000, 44_100, 48_000]),
                                     to in prop::sample::select(vec![8_000u32, 16_000, 48_000])) {
        let out = wav::resample(&samples, from, to);
        prop_assert_eq!(out.len() as u64, samples.len() as u64 * u64::from(to) / u64::from(from));
        let (lo, hi) = samples.iter().fold((i16::MAX, i16::MIN), |(l, h), &s| (l.min(s), h.max(s)));
        prop_assert!(out.iter().all(|&s| samples.is_empty() || (lo..=hi).contains(&s)), "no overshoot");
    }
}
