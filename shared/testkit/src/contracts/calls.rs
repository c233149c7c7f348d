//! Call records as a state machine (`record_start` → `record_end`), erasure, retention and
//! transcript blobs.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::{AgentId, CallId, Kopecks, OrgId, PhoneNumber};
use golos_ports::{CallDirection, CallRecord, CallStatus, CallWrite, PageRequest, PortError};

fn caller() -> PhoneNumber {
    PhoneNumber::parse("+79161234567").expect("number")
}

fn business() -> PhoneNumber {
    PhoneNumber::parse("+74951234567").expect("number")
}

fn started(org: &OrgId, call: &CallId, agent: &AgentId) -> CallRecord {
    CallRecord {
        id: call.clone(),
        org_id: org.clone(),
        agent_id: agent.clone(),
        direction: CallDirection::Inbound,
        from: Some(caller()),
        to: Some(business()),
        status: CallStatus::InProgress,
        started_at: T0,
        ended_at: None,
        duration_secs: None,
        end_reason: None,
        cost: None,
        transcript: None,
        metrics: serde_json::json!({}),
        expires_at: Some(T0.plus_secs(90 * 86_400)),
        erased: None,
    }
}

/// The end as the worker reports it: no numbers (a web call's report), a transcript.
fn ended(org: &OrgId, call: &CallId, agent: &AgentId, cost: i64) -> CallRecord {
    CallRecord {
        from: None,
        to: None,
        status: CallStatus::Ended,
        ended_at: Some(T0.plus_secs(61)),
        duration_secs: Some(61),
        end_reason: Some(golos_domain::EndReason::CallerHangup),
        cost: Some(Kopecks::new(cost)),
        transcript: Some(vec![1, 2, 3, 0, 255]),
        metrics: serde_json::json!({"turns": [{"ttft_ms": 300}], "metadata": {"crm": "42"}}),
        expires_at: Some(T0.plus_secs(61 + 90 * 86_400)),
        ..started(org, call, agent)
    }
}

pub async fn start_then_end_and_replays_change_nothing(h: &impl Harness) {
    let calls = h.calls();
    let (org, call, agent) = (fixtures::org_id(), fixtures::call_id(), fixtures::agent_id());
    let start = started(&org, &call, &agent);
    assert_eq!(calls.record_start(&start).await.unwrap(), CallWrite::Written(start.clone()));
    assert_eq!(calls.record_start(&start).await.unwrap(), CallWrite::Unchanged(start.clone()), "replayed start");
    assert_eq!(calls.get(&org, &call).await.unwrap(), Some(start.clone()));

    let end = ended(&org, &call, &agent, 600);
    let written = calls.record_end(&end).await.unwrap();
    let mut expected = end.clone();
    (expected.from, expected.to) = (Some(caller()), Some(business()));
    assert_eq!(written, CallWrite::Written(expected.clone()), "the end keeps the start's numbers");
    assert_eq!(calls.get(&org, &call).await.unwrap(), Some(expected.clone()));

    // A replayed end, even one that says something else, is answered with what is stored.
    let other = ended(&org, &call, &agent, 99_999);
    assert_eq!(calls.record_end(&other).await.unwrap(), CallWrite::Unchanged(expected.clone()));
    let failed = CallRecord { status: CallStatus::Failed, ..other };
    assert_eq!(calls.record_end(&failed).await.unwrap(), CallWrite::Unchanged(expected.clone()));
    // A start that arrives after the end does not reopen the call.
    assert_eq!(calls.record_start(&start).await.unwrap(), CallWrite::Unchanged(expected.clone()));
    assert_eq!(calls.get(&org, &call).await.unwrap(), Some(expected));

    // Each method writes only its own state.
    assert!(matches!(
        calls.record_start(&ended(&org, &fixtures::call_id(), &agent, 1)).await,
        Err(PortError::Invalid { .. })
    ));
    assert!(matches!(
        calls.record_end(&started(&org, &fixtures::call_id(), &agent)).await,
        Err(PortError::Invalid { .. })
    ));
}

pub async fn end_before_start_stays_ended(h: &impl Harness) {
    let calls = h.calls();
    let (org, call, agent) = (fixtures::org_id(), fixtures::call_id(), fixtures::agent_id());
    let end = ended(&org, &call, &agent, 1_200);
    assert_eq!(calls.record_end(&end).await.unwrap(), CallWrite::Written(end.clone()));
    let start = started(&org, &call, &agent);
    assert_eq!(calls.record_start(&start).await.unwrap(), CallWrite::Unchanged(end.clone()), "late start");
    assert_eq!(calls.get(&org, &call).await.unwrap(), Some(end));
}

pub async fn racing_start_and_end_always_end_ended(h: &impl Harness) {
    let calls = h.calls();
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let rounds = match h.scale() {
        crate::Scale::Full => 50,
        crate::Scale::Reduced => 10,
    };
    for round in 0..rounds {
        let call = fixtures::call_id();
        let (start, end) = (started(&org, &call, &agent), ended(&org, &call, &agent, 600));
        // Both orders, concurrently, each event delivered twice.
        let (a, b, c, d) = if round % 2 == 0 {
            tokio::join!(
                calls.record_start(&start),
                calls.record_end(&end),
                calls.record_start(&start),
                calls.record_end(&end)
            )
        } else {
            let (b, a, d, c) = tokio::join!(
                calls.record_end(&end),
                calls.record_start(&start),
                calls.record_end(&end),
                calls.record_start(&start)
            );
            (a, b, c, d)
        };
        let ends = [b.unwrap(), d.unwrap()];
        assert_eq!(ends.iter().filter(|w| w.written()).count(), 1, "one end is written: {ends:?}");
        for start in [a.unwrap(), c.unwrap()] {
            if let CallWrite::Unchanged(seen) = start {
                assert_eq!(seen.id, call);
            }
        }
        let stored = calls.get(&org, &call).await.unwrap().expect("stored");
        assert_eq!((stored.status, stored.cost), (CallStatus::Ended, Some(Kopecks::new(600))), "round {round}");
        assert_eq!(stored.transcript, end.transcript);
    }
}

pub async fn erasure_keeps_a_tombstone_without_personal_data(h: &impl Harness) {
    let calls = h.calls();
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let other_org = fixtures::org_id();
    let (a, b, c, d) = (fixtures::call_id(), fixtures::call_id(), fixtures::call_id(), fixtures::call_id());
    // a: ended, the caller's; b: live, the caller's (dialled out to them); c: someone else's;
    // d: the caller's in another org.
    calls.record_start(&started(&org, &a, &agent)).await.unwrap();
    calls.record_end(&ended(&org, &a, &agent, 600)).await.unwrap();
    let mut outbound = started(&org, &b, &agent);
    (outbound.from, outbound.to) = (Some(business()), Some(caller()));
    calls.record_start(&outbound).await.unwrap();
    let mut stranger = ended(&org, &c, &agent, 600);
    stranger.from = Some(PhoneNumber::parse("+791612345678").unwrap());
    calls.record_end(&stranger).await.unwrap();
    calls.record_start(&started(&other_org, &d, &agent)).await.unwrap();
    calls.put_transcript_blob(&org, &a, b"sealed", T0.plus_secs(3600)).await.unwrap();

    let mut found = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let result = calls.find_by_number(&org, &caller(), &page).await.unwrap();
        found.extend(result.items.into_iter().map(|c| c.id));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 1),
            None => break,
        }
    }
    found.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(found, expected, "from or to, this org only, exact numbers");

    let at = T0.plus_secs(3_600);
    let erased = calls.erase(&org, &a, at).await.unwrap();
    let stored = calls.get(&org, &a).await.unwrap().unwrap();
    assert_eq!(stored, erased);
    assert_eq!((stored.from.as_ref(), stored.to.as_ref(), stored.transcript.as_ref()), (None, None, None));
    assert_eq!(stored.metrics, serde_json::json!({}));
    let erasure = stored.erased.clone().expect("erased");
    assert_eq!((erasure.at, erasure.from_masked.as_deref()), (at, Some("+7*****4567")));
    assert_eq!((stored.status, stored.cost), (CallStatus::Ended, Some(Kopecks::new(600))), "billing kept");
    assert_eq!(calls.transcript_blob(&org, &a, T0).await.unwrap(), None, "the blob went with it");
    assert_eq!(calls.erase(&org, &a, at.plus_secs(5)).await.unwrap(), stored, "erasing again changes nothing");
    // A replayed end does not bring the data back.
    assert_eq!(calls.record_end(&ended(&org, &a, &agent, 600)).await.unwrap(), CallWrite::Unchanged(stored));

    // A live call erased before its end: the end is recorded, its personal data is not.
    calls.erase(&org, &b, at).await.unwrap();
    let end = calls.record_end(&ended(&org, &b, &agent, 1_200)).await.unwrap();
    let CallWrite::Written(end) = end else { panic!("the end of an erased live call is recorded: {end:?}") };
    assert_eq!((end.status, end.cost, end.transcript.as_ref()), (CallStatus::Ended, Some(Kopecks::new(1_200)), None));
    assert_eq!((end.from.as_ref(), end.metrics.clone()), (None, serde_json::json!({})));
    assert_eq!(end.erased.as_ref().map(|e| (e.at, e.to_masked.as_deref())), Some((at, Some("+7*****4567"))));
    assert_eq!(calls.get(&org, &b).await.unwrap(), Some(end));

    let left = calls.find_by_number(&org, &caller(), &PageRequest::first(10)).await.unwrap();
    assert!(left.items.is_empty(), "erased calls are not found again: {left:?}");
    assert_eq!(calls.find_by_number(&other_org, &caller(), &PageRequest::first(10)).await.unwrap().items.len(), 1);
    assert!(calls.get(&org, &c).await.unwrap().unwrap().from.is_some(), "another number is untouched");
    assert!(matches!(calls.erase(&org, &fixtures::call_id(), at).await, Err(PortError::NotFound { .. })));
}

pub async fn expired_records_are_deleted(h: &impl Harness) {
    let calls = h.calls();
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let (old, kept) = (fixtures::call_id(), fixtures::call_id());
    let mut expiring = ended(&org, &old, &agent, 600);
    expiring.expires_at = Some(T0.plus_secs(10));
    calls.record_end(&expiring).await.unwrap();
    calls.record_end(&ended(&org, &kept, &agent, 600)).await.unwrap();
    let deleted = calls.delete_expired(T0.plus_secs(11), 100).await.unwrap();
    // A store that expires items itself (DynamoDB TTL) may report nothing: what it reports
    // is gone, and nothing unexpired is.
    for (o, c) in &deleted {
        assert_eq!((o, c), (&org, &old), "{deleted:?}");
        assert_eq!(calls.get(o, c).await.unwrap(), None);
    }
    assert!(calls.get(&org, &kept).await.unwrap().is_some());
}

pub async fn transcript_blobs_expire_and_are_replaced(h: &impl Harness) {
    let calls = h.calls();
    let (org, call) = (fixtures::org_id(), fixtures::call_id());
    assert_eq!(calls.transcript_blob(&org, &call, T0).await.unwrap(), None);
    let big: Vec<u8> = (0..=255u8).cycle().take(300 * 1024).collect();
    calls.put_transcript_blob(&org, &call, &big, T0.plus_secs(60)).await.unwrap();
    assert_eq!(calls.transcript_blob(&org, &call, T0).await.unwrap(), Some(big));
    assert_eq!(calls.transcript_blob(&fixtures::org_id(), &call, T0).await.unwrap(), None, "per org");
    calls.put_transcript_blob(&org, &call, b"two", T0.plus_secs(60)).await.unwrap();
    assert_eq!(calls.transcript_blob(&org, &call, T0).await.unwrap(), Some(b"two".to_vec()));
    assert_eq!(calls.transcript_blob(&org, &call, T0.plus_secs(60)).await.unwrap(), None, "expired");
    calls.delete_transcript_blob(&org, &call).await.unwrap();
    calls.delete_transcript_blob(&org, &call).await.unwrap();
    assert_eq!(calls.transcript_blob(&org, &call, T0).await.unwrap(), None);
}
