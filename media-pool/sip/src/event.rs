use crate::digest::DigestAnswer;
use golos_domain::PhoneNumber;
use std::fmt;
use std::net::SocketAddr;

/// A call's handle across golos-sip's boundary. Opaque on purpose: the stack's dialog ids
/// (Call-ID, tags) stay inside the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub(crate) u64);

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sip-{}", self.0)
    }
}

/// The transport an INVITE arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// What became of a transfer ([`crate::SipEndpoint::transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferOutcome {
    /// The trunk reached the target (a 2xx in its NOTIFY): hang up, the caller is with them.
    Completed,
    /// The trunk refused the REFER with this status.
    Refused(u16),
    /// The trunk accepted, but its call to the target failed with this status (busy, no
    /// answer, declined).
    Failed(u16),
    /// No final answer in time, or the call ended meanwhile.
    NoAnswer,
}

/// What the endpoint reports. Everything the worker must act on comes through here.
#[derive(Debug)]
#[non_exhaustive]
pub enum SipEvent {
    /// A new INVITE, already answered `100 Trying` by the stack. Answer it with `ring`,
    /// `early_media`, `answer` or `reject`.
    IncomingCall(IncomingCall),
    /// The caller sent CANCEL before we answered; the stack answered `200` to the CANCEL and
    /// `487` to the INVITE. The call is gone.
    CallCancelled { call: CallRef },
    /// The caller's ACK arrived for our `200 OK`: media may flow both ways.
    CallEstablished { call: CallRef },
    /// The caller sent BYE (answered `200`). The call is gone.
    RemoteHangup { call: CallRef },
    /// The call ended without either side hanging up: no ACK for our `200 OK` within 64*T1,
    /// or the transport failed.
    CallFailed { call: CallRef },
    /// The trunk's re-INVITE changed which way media flows (RFC 3264 hold): `sending` false
    /// while the caller is on hold (golos must not send), `receiving` false while the trunk
    /// will not send either. Both true again when the hold ends.
    MediaDirection { call: CallRef, sending: bool, receiving: bool },
    /// The caller pressed a key, sent as a SIP INFO (already answered `200`); RFC 4733 keys
    /// come with the media instead.
    Digit { call: CallRef, digit: char },
    /// An out-of-dialog OPTIONS (a trunk's health check), already answered with `status`.
    Options { source: SocketAddr, status: u16 },
}

/// A new inbound call. `Debug` shows header names only: values are peer input and may hold
/// phone numbers, which golos never logs raw.
pub struct IncomingCall {
    pub call: CallRef,
    /// The caller, when the From user is a phone number under the trunk's number plan.
    pub from: Option<PhoneNumber>,
    /// The dialled number (To, else the Request-URI user), when it is one.
    pub to: Option<PhoneNumber>,
    /// Where the INVITE came from (the trunk's signalling address).
    pub source: SocketAddr,
    pub transport: SipTransport,
    /// Headers the agent may see (`policy::header_visible_to_agent`), capped in number and length.
    pub headers: Vec<(String, String)>,
    /// The SDP offer as received; empty for an offerless INVITE (the offer then comes in the
    /// ACK, which golos-sip does not support yet).
    pub sdp_offer: Vec<u8>,
    /// The trunk's answer to a digest challenge, when the INVITE carries one.
    pub digest: Option<Box<DigestAnswer>>,
}

impl fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingCall")
            .field("call", &self.call)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("source", &self.source)
            .field("transport", &self.transport)
            .field("headers", &self.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>())
            .field("sdp_offer_len", &self.sdp_offer.len())
            .field("digest", &self.digest)
            .finish()
    }
}
