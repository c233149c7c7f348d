//! Answers to a re-INVITE (or UPDATE) in an established call, sans-IO: a session refresh gets
//! our SDP again; a hold (`a=sendonly` / `a=inactive`) or its release gets our SDP with the
//! mirrored direction (RFC 3264 §6.1, §8.4) and a new version in its `o=` line, since it changed.

use golos_rtp::sdp::{self, Direction};

/// Our answer to a new offer, and the direction it gives the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reanswer {
    pub sdp: Vec<u8>,
    pub direction: Direction,
}

/// The answer to `offer` given our current SDP `ours`. An offer that does not parse (or an
/// offerless re-INVITE) keeps the call as it is: our SDP unchanged, `sendrecv`.
pub fn reanswer(offer: &[u8], ours: &[u8]) -> Reanswer {
    let offered = sdp::parse(offer).ok().map(|session| {
        let audio = session.media.iter().find(|m| m.media == "audio");
        audio.and_then(|m| m.direction).or(session.direction).unwrap_or_default()
    });
    let direction = offered.map_or(Direction::SendRecv, Direction::answer);
    let Ok(text) = std::str::from_utf8(ours) else { return Reanswer { sdp: ours.to_vec(), direction } };
    if current_direction(text) == direction {
        return Reanswer { sdp: ours.to_vec(), direction };
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut wrote_direction = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let ending = &line[bare.len()..];
        if is_direction(bare) {
            out.push_str("a=");
            out.push_str(direction.attribute());
            out.push_str(ending);
            wrote_direction = true;
        } else if let Some(origin) = bare.strip_prefix("o=") {
            out.push_str("o=");
            out.push_str(&bump_version(origin));
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    if !wrote_direction {
        if !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        out.push_str("a=");
        out.push_str(direction.attribute());
        out.push_str("\r\n");
    }
    Reanswer { sdp: out.into_bytes(), direction }
}

fn is_direction(line: &str) -> bool {
    matches!(line, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive")
}

fn current_direction(text: &str) -> Direction {
    text.lines().map(|l| l.trim_end_matches('\r')).find(|l| is_direction(l)).map_or(Direction::SendRecv, |l| {
        match &l[2..] {
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        }
    })
}

/// `<user> <session id> <version> <net> <addr type> <addr>` with the version one higher.
fn bump_version(origin: &str) -> String {
    let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
    if let Some(version) = fields.get_mut(2) {
        if let Ok(number) = version.parse::<u64>() {
            *version = number.wrapping_add(1).to_string();
        }
    }
    fields.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OURS: &str = "v=0\r\no=golos 42 1 IN IP4 203.0.113.7\r\ns=golos\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n";

    fn offer(direction: &str) -> String {
        format!("v=0\r\no=trunk 1 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n{direction}")
    }

    #[test]
    fn a_hold_is_answered_recvonly_with_a_new_version_and_its_release_sendrecv() {
        let held = reanswer(offer("a=sendonly\r\n").as_bytes(), OURS.as_bytes());
        assert_eq!(held.direction, Direction::RecvOnly);
        let text = String::from_utf8(held.sdp.clone()).unwrap();
        assert!(text.contains("\r\na=recvonly\r\n") && !text.contains("sendrecv"), "{text}");
        assert!(text.contains("o=golos 42 2 IN IP4 203.0.113.7\r\n"), "{text}");
        assert!(sdp::parse(&held.sdp).is_ok());

        let inactive = reanswer(offer("a=inactive\r\n").as_bytes(), &held.sdp);
        assert_eq!(inactive.direction, Direction::Inactive);
        let released = reanswer(offer("a=sendrecv\r\n").as_bytes(), &inactive.sdp);
        assert_eq!(released.direction, Direction::SendRecv);
        let text = String::from_utf8(released.sdp).unwrap();
        assert!(text.contains("a=sendrecv\r\n") && text.contains("o=golos 42 4 "), "{text}");
    }

    #[test]
    fn a_refresh_or_an_unreadable_offer_gets_the_same_sdp() {
        assert_eq!(reanswer(offer("").as_bytes(), OURS.as_bytes()).sdp, OURS.as_bytes());
        assert_eq!(
            reanswer(b"", OURS.as_bytes()),
            Reanswer { sdp: OURS.as_bytes().to_vec(), direction: Direction::SendRecv }
        );
        assert_eq!(reanswer(b"garbage", OURS.as_bytes()).sdp, OURS.as_bytes());
    }

    proptest! {
        #[test]
        fn arbitrary_offers_never_panic(offer in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = reanswer(&offer, OURS.as_bytes());
        }
    }
}
