//! Arbitrary bytes through the stack's parser and golos's INVITE extraction: no panic.

use golos_sip::parse::inspect;
use golos_sip::NumberPlan;
use proptest::prelude::*;

const INVITE: &str = "INVITE sip:74951234567@golos.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: \"A\" <sip:79161234567@10.0.0.1>;tag=abc\r\n\
To: <sip:74951234567@golos.example>\r\n\
Call-ID: 1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
X-Campaign: spring\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes, NumberPlan::BareDigitsAreE164);
    }

    /// Mutations of a valid INVITE reach deeper than random bytes: header values, URIs,
    /// lengths.
    #[test]
    fn mutated_invites_never_panic(edits in proptest::collection::vec((0..INVITE.len(), any::<u8>()), 1..12), cut in 0..=INVITE.len()) {
        let mut bytes = INVITE.as_bytes()[..cut.max(1)].to_vec();
        bytes.extend_from_slice(&INVITE.as_bytes()[cut.max(1)..]);
        for (at, b) in edits {
            if at < bytes.len() { bytes[at] = b; }
        }
        for plan in [NumberPlan::BareDigitsAreE164, NumberPlan::PlusOnly] {
            let _ = inspect(&bytes, plan);
        }
    }

    #[test]
    fn header_like_lines_never_panic(user in "[+0-9a-z;=()<>@:. -]{0,40}", value in "\\PC{0,300}") {
        let msg = INVITE
            .replace("79161234567", &user)
            .replace("spring", &value);
        let _ = inspect(msg.as_bytes(), NumberPlan::BareDigitsAreE164);
    }
}
