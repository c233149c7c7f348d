//! golos's own SIP decisions, free of IO and of the stack: which status answers which
//! admission outcome, what OPTIONS says while draining, how a caller's number is normalised,
//! and which INVITE headers an agent may see. The adapter (`endpoint`) only carries them out.

use golos_domain::PhoneNumber;
use std::time::Duration;

/// The final statuses golos refuses a call with. A closed set, so the worker cannot send a
/// status the trunk would misread (a 404 retried forever, a 6xx that stops forking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectStatus {
    /// 403: the trunk or the organisation may not place this call.
    Forbidden,
    /// 480: nobody to answer right now (number not routed, agent disabled).
    TemporarilyUnavailable,
    /// 486: the agent or organisation is at its concurrent-call limit.
    BusyHere,
    /// 488: the offer has no codec golos speaks.
    NotAcceptableHere,
    /// 503: this worker cannot take calls (draining, overloaded, trunk breaker open).
    ServiceUnavailable,
}

impl RejectStatus {
    pub fn code(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            Self::TemporarilyUnavailable => 480,
            Self::BusyHere => 486,
            Self::NotAcceptableHere => 488,
            Self::ServiceUnavailable => 503,
        }
    }
}

/// Why the worker turns a call away; `rejection` picks the status the trunk sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Organisation or agent concurrency quota reached.
    OverQuota,
    /// The dialled number is not routed to an agent (or the agent is disabled).
    NotRouted,
    /// Unknown trunk, bad credentials, or an organisation that may not take calls.
    Forbidden,
    /// The worker is draining after SIGTERM.
    Draining,
    /// The worker has no room for another call.
    Overloaded,
    /// The trunk's circuit breaker is open.
    BreakerOpen,
    /// No common codec in the SDP offer.
    NoCommonCodec,
}

/// A status and an optional `Retry-After`, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: RejectStatus,
    pub retry_after: Option<Duration>,
}

/// How long a trunk should wait before retrying this worker. Draining and breaker-open last
/// about one breaker window (30 s, the reviews' default); overload clears as calls end.
pub const RETRY_AFTER_DRAINING: Duration = Duration::from_secs(30);
pub const RETRY_AFTER_BREAKER_OPEN: Duration = Duration::from_secs(30);
pub const RETRY_AFTER_OVERLOADED: Duration = Duration::from_secs(5);

impl RejectReason {
    pub fn rejection(self) -> Rejection {
        let (status, retry_after) = match self {
            Self::OverQuota => (RejectStatus::BusyHere, None),
            Self::NotRouted => (RejectStatus::TemporarilyUnavailable, None),
            Self::Forbidden => (RejectStatus::Forbidden, None),
            Self::Draining => (RejectStatus::ServiceUnavailable, Some(RETRY_AFTER_DRAINING)),
            Self::Overloaded => (RejectStatus::ServiceUnavailable, Some(RETRY_AFTER_OVERLOADED)),
            Self::BreakerOpen => (RejectStatus::ServiceUnavailable, Some(RETRY_AFTER_BREAKER_OPEN)),
            Self::NoCommonCodec => (RejectStatus::NotAcceptableHere, None),
        };
        Rejection { status, retry_after }
    }
}

/// `Retry-After` is whole seconds (RFC 3261 §20.33); a fraction rounds up so the trunk never
/// comes back early.
pub fn retry_after_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What a new INVITE gets before the worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteGate {
    /// Hand it to the worker as an `IncomingCall`.
    Offer,
    /// Answer it here.
    Reject(Rejection),
}

/// A draining worker takes no new calls; nothing else is decided before the worker looks.
pub fn gate_invite(draining: bool) -> InviteGate {
    if draining {
        InviteGate::Reject(RejectReason::Draining.rejection())
    } else {
        InviteGate::Offer
    }
}

/// OPTIONS is the trunk's health check: 200 while we take its calls, 503 (with Retry-After)
/// while draining, or while the asking trunk's circuit breaker is open, so the trunk stops
/// sending INVITEs here before we would refuse them.
pub fn options_answer(draining: bool, trunk_breaker_open: bool) -> (u16, Option<Duration>) {
    if draining {
        (503, Some(RETRY_AFTER_DRAINING))
    } else if trunk_breaker_open {
        (503, Some(RETRY_AFTER_BREAKER_OPEN))
    } else {
        (200, None)
    }
}

/// How a trunk writes numbers without a leading `+`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberPlan {
    /// Digits without `+` are E.164 already (MTS Exolve sends `7XXXXXXXXXX`).
    #[default]
    BareDigitsAreE164,
    /// Only `+`-prefixed numbers are understood; anything else stays unparsed.
    PlusOnly,
}

/// The user part of a SIP or tel URI as a phone number, when it is one. Visual separators and
/// URI parameters (`;npdi`, `;rn=`) are ignored; an alphanumeric user ("anonymous") is `None`.
pub fn phone_from_user(user: &str, plan: NumberPlan) -> Option<PhoneNumber> {
    let user = user.split(';').next().unwrap_or_default().trim();
    if user.starts_with('+') {
        return PhoneNumber::parse(user).ok();
    }
    let digits_only = !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit() || b"-.() ".contains(&b));
    match plan {
        NumberPlan::BareDigitsAreE164 if digits_only => PhoneNumber::parse(&format!("+{user}")).ok(),
        _ => None,
    }
}

/// The key an in-dialog INFO carries (the SIP INFO fallback for DTMF, used by trunks that do
/// not send RFC 4733): `application/dtmf-relay` (`Signal=5` / `Duration=160` lines) or
/// `application/dtmf` (the key alone). `None` for any other INFO.
pub fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let content_type = content_type.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(body.get(..body.len().min(256))?).ok()?;
    let signal = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim().eq_ignore_ascii_case("signal").then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = signal.chars();
    let key = chars.next()?.to_ascii_uppercase();
    let is_key = key.is_ascii_digit() || matches!(key, '*' | '#' | 'A'..='D');
    // `Signal=10`/`11` are how some PBXs write * and #.
    match (is_key, chars.as_str()) {
        (true, "") => Some(key),
        (_, _) if signal == "10" => Some('*'),
        (_, _) if signal == "11" => Some('#'),
        _ => None,
    }
}

/// A number as the trunk dials it, the inverse of [`phone_from_user`]: bare digits for a trunk
/// that writes E.164 without `+` (MTS Exolve's `7XXXXXXXXXX`), else `+` and the digits.
pub fn dialable_user(number: &PhoneNumber, plan: NumberPlan) -> String {
    let e164 = number.expose_e164();
    match plan {
        NumberPlan::BareDigitsAreE164 => e164.trim_start_matches('+').to_owned(),
        NumberPlan::PlusOnly => e164,
    }
}

/// The user part of a name-addr or addr-spec (`"Bob" <sip:+7916@host;x>;tag=1`,
/// `tel:+7916...`), when there is one. Parsed by hand because the stack's URI parser does not
/// take `tel:` and because this runs on peer input: it never panics and allocates only its
/// answer.
pub fn uri_user(header_value: &str) -> Option<&str> {
    let addr = match (header_value.find('<'), header_value.rfind('>')) {
        (Some(start), Some(end)) if start < end => &header_value[start + 1..end],
        _ => header_value.split(';').next().unwrap_or_default(),
    };
    let addr = addr.trim();
    let rest = ["sips:", "sip:", "tel:"].iter().find_map(|scheme| {
        addr.get(..scheme.len()).filter(|p| p.eq_ignore_ascii_case(scheme)).map(|_| &addr[scheme.len()..])
    })?;
    let user = match rest.find('@') {
        Some(at) => &rest[..at],
        // tel: URIs have no host; a sip: URI without `@` has no user.
        None if addr.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tel:")) => rest,
        None => return None,
    };
    let user = user.split(':').next().unwrap_or_default(); // drop a password
    (!user.is_empty()).then_some(user)
}

/// Most headers an agent may see, and the longest value kept: INVITE headers are peer input
/// and end up in the LLM's context.
pub const MAX_VISIBLE_HEADERS: usize = 32;
pub const MAX_VISIBLE_HEADER_LEN: usize = 256;

/// Headers a trunk or an upstream PBX uses to pass context to the callee: custom `X-`
/// headers, User-to-User (RFC 7433), the redirecting number (Diversion) and the network's
/// asserted caller (P-Asserted-Identity). Routing and transport headers stay ours.
pub fn header_visible_to_agent(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-") || matches!(lower.as_str(), "user-to-user" | "diversion" | "p-asserted-identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_dtmf_bodies_give_their_key() {
        assert_eq!(info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info_digit("Application/DTMF-Relay", b"Signal= #\nDuration=100"), Some('#'));
        assert_eq!(info_digit("application/dtmf-relay", b"Signal=10\r\nDuration=160"), Some('*'));
        assert_eq!(info_digit("application/dtmf", b"b"), Some('B'));
        assert_eq!(info_digit("application/dtmf-relay", b"Signal=55\r\n"), None);
        assert_eq!(info_digit("application/dtmf-relay", b"Duration=160"), None);
        assert_eq!(info_digit("application/media_control+xml", b"<x/>"), None);
        assert_eq!(info_digit("application/dtmf", &[0xFF, 0xFE]), None);
    }

    #[test]
    fn each_reason_has_the_status_the_issue_asks_for() {
        let code = |r: RejectReason| r.rejection().status.code();
        assert_eq!(code(RejectReason::OverQuota), 486);
        assert_eq!(code(RejectReason::NotRouted), 480);
        assert_eq!(code(RejectReason::Forbidden), 403);
        assert_eq!(code(RejectReason::NoCommonCodec), 488);
        for r in [RejectReason::Draining, RejectReason::Overloaded, RejectReason::BreakerOpen] {
            assert_eq!(code(r), 503);
            assert!(r.rejection().retry_after.is_some(), "{r:?}: 503 always says when to retry");
        }
        assert_eq!(RejectReason::OverQuota.rejection().retry_after, None);
    }

    #[test]
    fn draining_refuses_invites_and_fails_health_checks() {
        assert_eq!(gate_invite(false), InviteGate::Offer);
        assert_eq!(gate_invite(true), InviteGate::Reject(RejectReason::Draining.rejection()));
        assert_eq!(options_answer(false, false), (200, None));
        assert_eq!(options_answer(true, false).0, 503);
        assert_eq!(options_answer(false, true), (503, Some(RETRY_AFTER_BREAKER_OPEN)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_secs(30)), 30);
        assert_eq!(retry_after_seconds(Duration::from_millis(4001)), 5);
        assert_eq!(retry_after_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn users_are_taken_from_name_addrs_addr_specs_and_tel_uris() {
        assert_eq!(uri_user("\"Bob\" <sip:+79161234567@trunk.example;user=phone>;tag=a"), Some("+79161234567"));
        assert_eq!(uri_user("<sip:79161234567@10.0.0.1:5060>;tag=x"), Some("79161234567"));
        assert_eq!(uri_user("sip:alice:secret@host;tag=1"), Some("alice"));
        assert_eq!(uri_user("<tel:+79161234567;npdi>"), Some("+79161234567;npdi"));
        assert_eq!(uri_user("<sip:trunk.example>"), None);
        assert_eq!(uri_user("garbage"), None);
        assert_eq!(uri_user("<>"), None);
    }

    #[test]
    fn numbers_follow_the_trunks_plan() {
        let plus = phone_from_user("+79161234567", NumberPlan::PlusOnly).expect("E.164");
        assert_eq!(plus.expose_e164(), "+79161234567");
        let bare = phone_from_user("79161234567", NumberPlan::BareDigitsAreE164).expect("Exolve form");
        assert_eq!(bare, plus);
        assert_eq!(phone_from_user("79161234567", NumberPlan::PlusOnly), None);
        assert_eq!(phone_from_user("+79161234567;npdi", NumberPlan::PlusOnly), Some(plus));
        assert_eq!(phone_from_user("anonymous", NumberPlan::BareDigitsAreE164), None);
        assert_eq!(phone_from_user("", NumberPlan::BareDigitsAreE164), None);
    }

    #[test]
    fn agents_see_context_headers_not_routing_ones() {
        for h in ["X-Campaign", "x-crm-id", "User-to-User", "Diversion", "P-Asserted-Identity"] {
            assert!(header_visible_to_agent(h), "{h}");
        }
        for h in ["Via", "Route", "Record-Route", "Contact", "Authorization", "Call-ID"] {
            assert!(!header_visible_to_agent(h), "{h}");
        }
    }
}
