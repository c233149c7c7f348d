//! The durable queue with SQS semantics.

use crate::Harness;
use golos_ports::QueueConfig;
use std::collections::BTreeSet;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn config(max_receives: u32) -> QueueConfig {
    QueueConfig { name: "events".into(), max_receives, default_visibility: Duration::from_secs(30) }
}

pub async fn send_receive_delete(h: &impl Harness) {
    let queue = h.queue(config(5)).await;
    let mut sent = BTreeSet::new();
    for i in 0..3 {
        sent.insert(format!("{{\"n\":{i},\"text\":\"привет\"}}"));
    }
    for body in &sent {
        queue.send(body, Duration::ZERO).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(queue.receive(10, Duration::from_secs(30)).await.unwrap());
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(got.iter().map(|m| m.body.clone()).collect::<BTreeSet<_>>(), sent);
    assert!(got.iter().all(|m| m.receive_count == 1));
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "in-flight messages are hidden");
    for m in &got {
        queue.delete(&m.receipt).await.unwrap();
        queue.delete(&m.receipt).await.unwrap();
    }
    assert_eq!(queue.depth().await.unwrap(), 0);
}

pub async fn unacknowledged_message_reappears_after_visibility_timeout(h: &impl Harness) {
    let queue = h.queue(config(5)).await;
    queue.send("work", Duration::ZERO).await.unwrap();
    let first = queue.receive(1, SECOND).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(queue.receive(1, SECOND).await.unwrap().is_empty());
    h.advance(Duration::from_millis(1_500)).await;
    let second = queue.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(second.len(), 1, "the message came back after its visibility timeout");
    assert_eq!(
        (second[0].id.as_str(), second[0].body.as_str(), second[0].receive_count),
        (first[0].id.as_str(), "work", 2)
    );
    // A consumer can also hand a message back at once.
    queue.change_visibility(&second[0].receipt, Duration::ZERO).await.unwrap();
    let third = queue.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].receive_count, 3);
}

pub async fn delayed_message_is_invisible_until_due(h: &impl Harness) {
    let queue = h.queue(config(5)).await;
    queue.send("later", Duration::from_secs(1)).await.unwrap();
    assert!(queue.receive(1, SECOND).await.unwrap().is_empty(), "delayed");
    h.advance(Duration::from_millis(1_500)).await;
    let got = queue.receive(1, SECOND).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
}

pub async fn dead_letters_after_max_receives_and_redrive(h: &impl Harness) {
    let queue = h.queue(config(3)).await;
    queue.send("poison", Duration::ZERO).await.unwrap();
    for attempt in 1..=3 {
        let got = queue.receive(1, Duration::from_secs(30)).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        queue.change_visibility(&got[0].receipt, Duration::ZERO).await.unwrap();
    }
    assert!(
        queue.receive(1, Duration::from_secs(30)).await.unwrap().is_empty(),
        "after max receives it is dead-lettered"
    );
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 1, "looking does not remove");
    assert_eq!(queue.redrive(10).await.unwrap(), 1);
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
    let back = queue.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(back.len(), 1, "redrive returns it to the queue");
    assert_eq!((back[0].body.as_str(), back[0].receive_count), ("poison", 1));
    queue.delete(&back[0].receipt).await.unwrap();
    assert_eq!(queue.redrive(10).await.unwrap(), 0);
}

pub async fn stale_receipt_does_not_delete_a_redelivery(h: &impl Harness) {
    let queue = h.queue(config(5)).await;
    queue.send("once", Duration::ZERO).await.unwrap();
    let first = queue.receive(1, Duration::from_secs(30)).await.unwrap().remove(0);
    queue.change_visibility(&first.receipt, Duration::ZERO).await.unwrap();
    let second = queue.receive(1, Duration::from_secs(30)).await.unwrap().remove(0);
    assert_eq!(second.id, first.id);
    queue.delete(&second.receipt).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
}

/// Receives from `queue` until `want` messages came (a few polls: SQS samples its servers).
async fn receive_all(queue: &dyn golos_ports::Queue, want: usize) -> Vec<golos_ports::QueueMessage> {
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(queue.receive(10, Duration::from_secs(30)).await.unwrap());
        if got.len() >= want {
            break;
        }
    }
    got
}

pub async fn dead_letter_goes_straight_to_the_dead_letter_queue(h: &impl Harness) {
    let queue = h.queue(config(5)).await;
    let id = queue.dead_letter("{\"status\":404}").await.unwrap();
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].id.as_str(), dead[0].body.as_str()), (id.as_str(), "{\"status\":404}"));
    assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "not in the queue itself");
    assert_eq!(queue.depth().await.unwrap(), 0, "the queue's depth does not count it");
    assert!(queue.redrive_ids(&[]).await.unwrap() == 0, "nothing named, nothing moved");
}

pub async fn redrive_ids_moves_only_the_named_dead_letters(h: &impl Harness) {
    let queue = h.queue(config(3)).await;
    let mut ids = Vec::new();
    for body in ["a", "b", "c", "d"] {
        ids.push(queue.dead_letter(body).await.unwrap());
    }
    let named = vec![ids[0].clone(), ids[2].clone(), "no-such-message".to_owned(), ids[0].clone()];
    assert_eq!(queue.redrive_ids(&named).await.unwrap(), 2, "unknown and repeated ids are skipped");

    let left: BTreeSet<_> = queue.dead_letters(10).await.unwrap().into_iter().map(|d| d.body).collect();
    assert_eq!(left, BTreeSet::from(["b".to_owned(), "d".to_owned()]), "the others stay inspectable");
    let back = receive_all(&*queue, 2).await;
    assert_eq!(back.iter().map(|m| m.body.as_str()).collect::<BTreeSet<_>>(), BTreeSet::from(["a", "c"]));
    assert!(back.iter().all(|m| m.receive_count == 1), "a fresh receive count: {back:?}");
    for m in &back {
        queue.delete(&m.receipt).await.unwrap();
    }
    assert_eq!(queue.redrive_ids(&ids[..1]).await.unwrap(), 0, "moved once");
    assert_eq!(queue.redrive_ids(&ids[1..2]).await.unwrap(), 1);
    let b = receive_all(&*queue, 1).await;
    assert_eq!(b.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 1, "d is still there");
}
