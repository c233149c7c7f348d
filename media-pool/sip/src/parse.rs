//! The stack's parser with golos's extraction on top: what an INVITE from the wire becomes
//! before the worker sees it. Public so fuzzing and diagnostics reach the same code as the
//! endpoint.

use crate::digest::DigestAnswer;
use crate::policy::{header_visible_to_agent, phone_from_user, uri_user, MAX_VISIBLE_HEADERS, MAX_VISIBLE_HEADER_LEN};
use crate::{NumberPlan, SipError};
use golos_domain::PhoneNumber;
use rsipstack::sip::{HeadersExt, Method, Request, SipMessage};

/// The parts of an INVITE golos uses.
#[derive(Debug)]
pub(crate) struct InviteFields {
    pub from: Option<PhoneNumber>,
    pub to: Option<PhoneNumber>,
    pub headers: Vec<(String, String)>,
    pub sdp_offer: Vec<u8>,
    pub digest: Option<Box<DigestAnswer>>,
}

/// A parse failure of peer input. The stack's own error text quotes the bytes it choked on
/// (a From or To holds phone numbers), and these errors are logged: a fixed description only.
fn peer_error(what: &'static str) -> SipError {
    SipError::Parse(what.to_owned())
}

/// Reads an INVITE (or any dialog-creating request). Fails, so the adapter answers `400`,
/// when a header a dialog needs is missing or has no tag: the stack would otherwise drop the
/// request with a warning the caller never sees.
pub(crate) fn invite_fields(req: &Request, plan: NumberPlan) -> Result<InviteFields, SipError> {
    let from = req.from_header().map_err(|_| peer_error("no From"))?;
    match from.tag() {
        Ok(Some(_)) => {}
        _ => return Err(SipError::Parse("From has no tag".into())),
    }
    let to = req.to_header().map_err(|_| peer_error("no To"))?;
    to.uri().map_err(|_| peer_error("To is not a URI"))?;
    check_content_length(req)?;
    req.call_id_header().map_err(|_| peer_error("no Call-ID"))?;
    let cseq = req.cseq_header().map_err(|_| peer_error("no CSeq"))?;
    // RFC 3261 §8.1.1.8: without a Contact there is nowhere to send our BYE or re-INVITE.
    if req.method == Method::Invite && req.contact_header().is_err() {
        return Err(SipError::Parse("INVITE without Contact".into()));
    }
    // RFC 3261 §8.1.1.5: the CSeq method matches the request's. A mismatch would confuse
    // the transaction the ACK and CANCEL are matched against.
    if cseq.method().ok() != Some(req.method) {
        return Err(SipError::Parse("CSeq method differs from the request method".into()));
    }

    let from = uri_user(from.value()).and_then(|u| phone_from_user(u, plan));
    let dialled = uri_user(to.value()).or_else(|| req.uri.auth.as_ref().map(|a| a.user.as_str()));
    let to = dialled.and_then(|u| phone_from_user(u, plan));
    let headers = req
        .headers
        .iter()
        .filter(|h| header_visible_to_agent(h.name()))
        .take(MAX_VISIBLE_HEADERS)
        .map(|h| (h.name().to_owned(), truncate(h.value(), MAX_VISIBLE_HEADER_LEN).to_owned()))
        .collect();
    let is_sdp = req.headers.iter().any(|h| {
        h.name().eq_ignore_ascii_case("Content-Type")
            && h.value().trim().to_ascii_lowercase().starts_with("application/sdp")
    });
    let sdp_offer = if is_sdp { req.body.clone() } else { Vec::new() };
    let digest = req
        .headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("Authorization"))
        .and_then(|h| DigestAnswer::parse(h.value()))
        .map(Box::new);
    Ok(InviteFields { from, to, headers, sdp_offer, digest })
}

/// RFC 3261 §18.3 and §20.14: the Content-Length says where the body ends. A value that is
/// not a number, or one past the end of the datagram (the body was cut), is a broken request,
/// answered 400 rather than read as whatever the datagram happens to hold.
fn check_content_length(req: &Request) -> Result<(), SipError> {
    let declared = req.headers.iter().find(|h| h.name().eq_ignore_ascii_case("Content-Length") || h.name() == "l");
    let Some(declared) = declared else { return Ok(()) };
    let length: usize =
        declared.value().trim().parse().map_err(|_| SipError::Parse("Content-Length is not a number".into()))?;
    if length > req.body.len() {
        return Err(SipError::Parse("the body is shorter than its Content-Length".into()));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a datagram is, as golos reads it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Inspected {
    /// An INVITE golos would offer to the worker, with its caller and dialled numbers (masked
    /// in `Debug`) and the number of headers the agent would see.
    Invite { from: Option<PhoneNumber>, to: Option<PhoneNumber>, visible_headers: usize, sdp_len: usize },
    /// Another request.
    Request { method: String },
    /// A response.
    Response { status: u16 },
}

/// Parses `bytes` with the stack's parser and, for an INVITE, golos's extraction. Never
/// panics, whatever the input (fuzzed in `tests/fuzz_parse.rs`).
pub fn inspect(bytes: &[u8], plan: NumberPlan) -> Result<Inspected, SipError> {
    let msg = SipMessage::try_from(bytes).map_err(|_| peer_error("not a SIP message"))?;
    match msg {
        SipMessage::Request(req) if req.method == Method::Invite => {
            let f = invite_fields(&req, plan)?;
            Ok(Inspected::Invite {
                from: f.from,
                to: f.to,
                visible_headers: f.headers.len(),
                sdp_len: f.sdp_offer.len(),
            })
        }
        SipMessage::Request(req) => Ok(Inspected::Request { method: req.method.to_string() }),
        SipMessage::Response(resp) => Ok(Inspected::Response { status: resp.status_code.code() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:74951234567@golos.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
From: <sip:79161234567@10.0.0.1>;tag=abc\r\n\
To: <sip:74951234567@golos.example>\r\n\
Call-ID: 1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
X-Campaign: spring\r\n\
Contact: <sip:79161234567@10.0.0.1:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn an_exolve_style_invite_yields_numbers_headers_and_the_offer() {
        let Ok(Inspected::Invite { from, to, visible_headers, sdp_len }) =
            inspect(INVITE.as_bytes(), NumberPlan::default())
        else {
            panic!("an INVITE");
        };
        assert_eq!(from.map(|n| n.expose_e164()).as_deref(), Some("+79161234567"));
        assert_eq!(to.map(|n| n.expose_e164()).as_deref(), Some("+74951234567"));
        assert_eq!((visible_headers, sdp_len), (1, 4));
    }

    #[test]
    fn an_invite_without_a_from_tag_is_refused() {
        let untagged = INVITE.replace(";tag=abc", "");
        assert!(matches!(inspect(untagged.as_bytes(), NumberPlan::default()), Err(SipError::Parse(_))));
    }

    #[test]
    fn an_invite_whose_cseq_names_another_method_is_refused() {
        let wrong = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        assert!(matches!(inspect(wrong.as_bytes(), NumberPlan::default()), Err(SipError::Parse(_))));
    }

    #[test]
    fn an_invite_without_contact_is_refused() {
        let wrong = INVITE.replace("Contact: <sip:79161234567@10.0.0.1:5060>\r\n", "");
        assert!(matches!(inspect(wrong.as_bytes(), NumberPlan::default()), Err(SipError::Parse(_))));
    }

    #[test]
    fn an_invite_whose_to_is_not_a_uri_is_refused() {
        for to in ["To: <>", "To: <sip:@>"] {
            let wrong = INVITE.replace("To: <sip:74951234567@golos.example>", to);
            assert!(matches!(inspect(wrong.as_bytes(), NumberPlan::default()), Err(SipError::Parse(_))), "{to}");
        }
    }

    #[test]
    fn an_invite_whose_content_length_is_not_a_number_or_past_its_body_is_refused() {
        for length in ["abc", "-1", "5", "99999"] {
            let wrong = INVITE.replace("Content-Length: 4", &format!("Content-Length: {length}"));
            assert!(matches!(inspect(wrong.as_bytes(), NumberPlan::default()), Err(SipError::Parse(_))), "{length}");
        }
        let exact = INVITE.replace("Content-Length: 4", "Content-Length:  4 ");
        assert!(matches!(inspect(exact.as_bytes(), NumberPlan::default()), Ok(Inspected::Invite { .. })));
    }

    #[test]
    fn long_header_values_are_cut_at_a_char_boundary() {
        let s = "я".repeat(200);
        let cut = truncate(&s, MAX_VISIBLE_HEADER_LEN);
        assert!(cut.len() <= MAX_VISIBLE_HEADER_LEN && s.starts_with(cut));
    }
}
