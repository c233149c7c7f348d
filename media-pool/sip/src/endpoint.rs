//! The adapter: rsipstack's endpoint, transactions and dialogs driven into golos's typed
//! events and answers. Decisions are `policy`'s; this file only moves messages.

use crate::event::{CallRef, IncomingCall, SipEvent, SipTransport, TransferOutcome};
use crate::parse::invite_fields;
use crate::policy::{self, InviteGate, NumberPlan, RejectStatus};
use crate::SipError;
use golos_domain::trunks::SourceNetwork;
use golos_domain::PhoneNumber;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, DialogStateSender, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HeadersExt, Method, StatusCode, Transport};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::transaction::{Transaction, TransactionEvent, TransactionEventSender};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod probe;
pub use probe::MAX_PROBE_TIMEOUT;

/// Where and how the endpoint listens.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP address; port 0 picks one (tests).
    pub listen: SocketAddr,
    /// Also accept TCP on the same address and the port UDP got.
    pub tcp: bool,
    pub user_agent: String,
    /// How the trunk writes numbers without `+`.
    pub number_plan: NumberPlan,
    /// Events the worker has not taken yet, at most. A new INVITE beyond that is refused
    /// `503` at once rather than queued behind a worker that is not keeping up.
    pub event_capacity: usize,
}

impl SipConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tcp: true,
            user_agent: concat!("golos/", env!("CARGO_PKG_VERSION")).to_owned(),
            number_plan: NumberPlan::default(),
            event_capacity: 1024,
        }
    }
}

/// The worker's side of the event stream.
#[derive(Debug)]
pub struct SipEvents {
    rx: mpsc::Receiver<SipEvent>,
}

impl SipEvents {
    /// The next event; `None` once the endpoint has shut down.
    pub async fn recv(&mut self) -> Option<SipEvent> {
        self.rx.recv().await
    }
}

/// A listening SIP endpoint. Cheap to clone; every clone answers the same calls. Dropping
/// the clones does not stop it: call `shutdown`.
#[derive(Clone)]
pub struct SipEndpoint {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SipEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipEndpoint")
            .field("udp", &self.shared.local_udp)
            .field("tcp", &self.shared.local_tcp)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

struct Shared {
    plan: NumberPlan,
    endpoint: EndpointInnerRef,
    dialogs: DialogLayer,
    state_tx: DialogStateSender,
    calls: Mutex<Calls>,
    draining: AtomicBool,
    /// Networks of trunks whose circuit breaker is open: their OPTIONS are answered 503.
    unavailable_trunks: Mutex<Vec<SourceNetwork>>,
    next_ref: AtomicU64,
    events: mpsc::Sender<SipEvent>,
    cancel: CancellationToken,
    local_udp: SocketAddr,
    local_tcp: Option<SocketAddr>,
}

#[derive(Default)]
struct Calls {
    by_ref: HashMap<CallRef, Call>,
    by_dialog: HashMap<String, CallRef>,
}

struct Call {
    dialog: InviteDialog,
    dialog_key: String,
    /// The INVITE transaction's channel: final responses the dialog API cannot shape (a
    /// `Retry-After`) are sent on it directly.
    tu: TransactionEventSender,
    phase: Phase,
    /// Our last SDP, re-sent when the caller refreshes the session with a re-INVITE.
    answer_sdp: Option<Vec<u8>>,
    /// While a transfer is under way: the statuses the trunk's NOTIFYs report (RFC 3515).
    refer_progress: Option<mpsc::Sender<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offered,
    Early,
    /// `200 OK` sent (and retransmitted by the stack) until the ACK.
    Answered,
    Established,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Early => "early",
            Self::Answered => "answered",
            Self::Established => "established",
        }
    }
}

impl SipEndpoint {
    /// Binds UDP (and TCP when configured) and starts serving.
    pub async fn bind(config: SipConfig) -> Result<(Self, SipEvents), SipError> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let (udp, local_udp, local_tcp) = bind_sockets(&config, &cancel).await?;
        transport.add_transport(udp.into());
        if let Some(tcp) = local_tcp {
            transport.add_transport(TcpListenerConnection::new(tcp, None).await?.into());
        }

        let endpoint = EndpointBuilder::new()
            .with_user_agent(&config.user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let inner = endpoint.inner.clone();
        let dialogs = DialogLayer::new(inner.clone());
        let (state_tx, state_rx) = dialogs.new_dialog_state_channel();
        let (events, rx) = mpsc::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            plan: config.number_plan,
            endpoint: inner,
            dialogs,
            state_tx,
            calls: Mutex::default(),
            draining: AtomicBool::new(false),
            unavailable_trunks: Mutex::default(),
            next_ref: AtomicU64::new(1),
            events,
            cancel,
            local_udp,
            local_tcp,
        });
        tokio::spawn(async move { endpoint.serve().await });
        tokio::spawn(serve_requests(shared.clone(), incoming));
        tokio::spawn(serve_dialog_states(shared.clone(), state_rx));
        info!(udp = %local_udp, tcp = ?local_tcp, "SIP endpoint listening");
        Ok((Self { shared }, SipEvents { rx }))
    }

    pub fn local_udp_addr(&self) -> SocketAddr {
        self.shared.local_udp
    }

    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        self.shared.local_tcp
    }

    /// While set, OPTIONS answers `503` and new INVITEs are refused `503` with Retry-After;
    /// calls in progress go on.
    pub fn set_draining(&self, draining: bool) {
        self.shared.draining.store(draining, Ordering::Relaxed);
    }

    /// The source networks of trunks golos will not take calls from now (their circuit
    /// breaker is open): their health checks get 503 too. Replaces the previous list.
    pub fn set_unavailable_trunks(&self, networks: Vec<SourceNetwork>) {
        *self.shared.unavailable_trunks.lock().unwrap_or_else(PoisonError::into_inner) = networks;
    }

    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Calls offered and not yet ended.
    pub fn active_calls(&self) -> usize {
        self.shared.lock().by_ref.len()
    }

    /// `180 Ringing`.
    pub fn ring(&self, call: CallRef) -> Result<(), SipError> {
        self.provisional(call, None)
    }

    /// `183 Session Progress` with our SDP: the caller hears `sdp`'s media before the answer
    /// (the hold prompt).
    pub fn early_media(&self, call: CallRef, sdp: Vec<u8>) -> Result<(), SipError> {
        self.provisional(call, Some(sdp))
    }

    fn provisional(&self, call: CallRef, sdp: Option<Vec<u8>>) -> Result<(), SipError> {
        let mut calls = self.shared.lock();
        let entry = calls.by_ref.get_mut(&call).ok_or(SipError::UnknownCall(call))?;
        if !matches!(entry.phase, Phase::Offered | Phase::Early) {
            return Err(SipError::InvalidState { call, action: "ring", state: entry.phase.name() });
        }
        let headers = sdp.as_ref().map(|_| vec![sdp_content_type()]);
        entry.dialog.ringing(headers, sdp)?;
        entry.phase = Phase::Early;
        Ok(())
    }

    /// `200 OK` with our SDP answer. The stack retransmits it until the caller's ACK
    /// (`SipEvent::CallEstablished`), or gives up after 64*T1 (`SipEvent::CallFailed`).
    pub fn answer(&self, call: CallRef, sdp: Vec<u8>) -> Result<(), SipError> {
        let mut calls = self.shared.lock();
        let entry = calls.by_ref.get_mut(&call).ok_or(SipError::UnknownCall(call))?;
        if !matches!(entry.phase, Phase::Offered | Phase::Early) {
            return Err(SipError::InvalidState { call, action: "answer", state: entry.phase.name() });
        }
        entry.dialog.accept(Some(vec![sdp_content_type()]), Some(sdp.clone()))?;
        entry.answer_sdp = Some(sdp);
        entry.phase = Phase::Answered;
        Ok(())
    }

    /// Refuses an unanswered call with `status` and, when given, `Retry-After` (whole
    /// seconds, rounded up). `policy::RejectReason::rejection` says which for an admission
    /// outcome.
    pub fn reject(&self, call: CallRef, status: RejectStatus, retry_after: Option<Duration>) -> Result<(), SipError> {
        let headers = retry_after.map(retry_after_header).into_iter().collect();
        self.final_refusal(call, StatusCode::from(status.code()), headers)
    }

    /// Answers an unanswered call `401` with a digest challenge (`digest::challenge_header`);
    /// the trunk retries the INVITE with its credentials, which arrives as a new call.
    pub fn challenge(&self, call: CallRef, nonce: &str, stale: bool) -> Result<(), SipError> {
        let header = Header::WwwAuthenticate(crate::digest::challenge_header(nonce, stale).into());
        self.final_refusal(call, StatusCode::Unauthorized, vec![header])
    }

    fn final_refusal(&self, call: CallRef, status: StatusCode, headers: Vec<Header>) -> Result<(), SipError> {
        let entry = {
            let mut calls = self.shared.lock();
            let phase = calls.by_ref.get(&call).ok_or(SipError::UnknownCall(call))?.phase;
            if !matches!(phase, Phase::Offered | Phase::Early) {
                return Err(SipError::InvalidState { call, action: "reject", state: phase.name() });
            }
            calls.remove(call).ok_or(SipError::UnknownCall(call))?
        };
        let invite = entry.dialog.initial_request();
        let code = u16::from(status.clone());
        let mut resp = self.shared.endpoint.make_response(&invite, status, None);
        // The To tag of our provisional responses, so the final response is in the same
        // (early) dialog (RFC 3261 §8.2.6.2).
        let tag = entry.dialog.id().local_tag;
        for h in resp.headers.iter_mut() {
            if let Header::To(to) = h {
                if matches!(to.tag(), Ok(None)) {
                    *to = to.clone().with_tag(tag.clone().into());
                }
            }
        }
        resp.headers.extend(headers);
        entry.tu.send(TransactionEvent::Respond(resp)).map_err(|_| SipError::Closed)?;
        self.shared.dialogs.remove_dialog(&entry.dialog.id());
        info!(%call, status = code, "call rejected");
        Ok(())
    }

    /// Ends a call: BYE once answered; an unanswered call is refused `480` instead (a UAS
    /// cannot send BYE before its 2xx).
    pub async fn hangup(&self, call: CallRef) -> Result<(), SipError> {
        let phase = self.shared.lock().by_ref.get(&call).ok_or(SipError::UnknownCall(call))?.phase;
        if matches!(phase, Phase::Offered | Phase::Early) {
            return self.reject(call, RejectStatus::TemporarilyUnavailable, None);
        }
        let entry = self.shared.lock().remove(call).ok_or(SipError::UnknownCall(call))?;
        let result = entry.dialog.bye().await;
        self.shared.dialogs.remove_dialog(&entry.dialog.id());
        info!(%call, "call hung up");
        result.map_err(SipError::from)
    }

    /// Transfers an established call to `target` (blind transfer, RFC 3515 / RFC 5589): a
    /// REFER towards the trunk, then its NOTIFYs until the final status of the trunk's call to
    /// the target. Waits at most `wait` in all. The caller stays in this dialog whatever the
    /// outcome: after `Completed` the transferor hangs up (`hangup`), after anything else the
    /// call goes on.
    pub async fn transfer(
        &self,
        call: CallRef,
        target: &PhoneNumber,
        wait: Duration,
    ) -> Result<TransferOutcome, SipError> {
        let deadline = tokio::time::Instant::now() + wait;
        let (dialog, refer_to, mut progress) = {
            let mut calls = self.shared.lock();
            let entry = calls.by_ref.get_mut(&call).ok_or(SipError::UnknownCall(call))?;
            if entry.phase != Phase::Established {
                return Err(SipError::InvalidState { call, action: "transfer", state: entry.phase.name() });
            }
            let host = remote_host(&entry.dialog.initial_request())?;
            let (tx, rx) = mpsc::channel(8);
            entry.refer_progress = Some(tx);
            let user = policy::dialable_user(target, self.shared.plan);
            (entry.dialog.clone(), format!("<sip:{user}@{host}>"), rx)
        };
        info!(%call, "transfer: REFER sent");
        let outcome = match tokio::time::timeout_at(deadline, dialog.refer(refer_to, None, None)).await {
            Err(_) | Ok(Ok(None)) => TransferOutcome::NoAnswer,
            Ok(Err(e)) => {
                debug!(%call, error = %e, "REFER not sent");
                TransferOutcome::NoAnswer
            }
            Ok(Ok(Some(response))) if u16::from(response.status_code.clone()) >= 300 => {
                TransferOutcome::Refused(u16::from(response.status_code))
            }
            Ok(Ok(Some(_))) => loop {
                match tokio::time::timeout_at(deadline, progress.recv()).await {
                    Ok(Some(status)) if status < 200 => {}
                    Ok(Some(status)) if status < 300 => break TransferOutcome::Completed,
                    Ok(Some(status)) => break TransferOutcome::Failed(status),
                    // The call ended meanwhile, or no final status in time.
                    Ok(None) | Err(_) => break TransferOutcome::NoAnswer,
                }
            },
        };
        if let Some(entry) = self.shared.lock().by_ref.get_mut(&call) {
            entry.refer_progress = None;
        }
        info!(%call, ?outcome, "transfer finished");
        Ok(outcome)
    }

    /// Stops listening and drops every call without signalling (the worker hangs up first).
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

/// UDP, and the same port free for TCP when TCP is on. With port 0 the OS picks a UDP port
/// that may be taken for TCP; a few tries find one free for both.
async fn bind_sockets(
    config: &SipConfig,
    cancel: &CancellationToken,
) -> Result<(UdpConnection, SocketAddr, Option<SocketAddr>), SipError> {
    let attempts = if config.listen.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpConnection::create_connection(config.listen, None, Some(cancel.child_token()))
            .await
            .map_err(|e| SipError::Bind { addr: config.listen, reason: e.to_string() })?;
        // The stack reports an interface address for 0.0.0.0; keep the configured one.
        let port = udp.get_addr().get_socketaddr()?.port();
        let local = SocketAddr::new(config.listen.ip(), port);
        if !config.tcp {
            return Ok((udp, local, None));
        }
        // The stack binds its TCP listener inside `serve` and only logs a failure: try the
        // port here so a taken one is an error the caller sees.
        match std::net::TcpListener::bind(local) {
            Ok(_probe) => return Ok((udp, local, Some(local))),
            Err(e) => last_error = Some(SipError::Bind { addr: local, reason: e.to_string() }),
        }
    }
    Err(last_error.unwrap_or(SipError::Closed))
}

/// Where in-dialog requests about the caller go: the host (and port) of the INVITE's Contact,
/// the trunk's signalling address.
fn remote_host(invite: &rsipstack::sip::Request) -> Result<String, SipError> {
    // Fixed error texts: the stack's would quote the Contact, a phone number among it.
    let contact = invite.contact_header().map_err(|_| SipError::Parse("no Contact".into()))?;
    let contact = rsipstack::sip::typed::Contact::parse(contact.value())
        .map_err(|_| SipError::Parse("Contact is not a URI".into()))?;
    Ok(contact.uri.host_with_port.to_string())
}

/// The status line a NOTIFY of the `refer` event package carries in its `message/sipfrag`
/// body (`SIP/2.0 180 Ringing`), if it is one.
fn refer_notify_status(req: &rsipstack::sip::Request) -> Option<u16> {
    let is_refer_event = req
        .headers
        .iter()
        .any(|h| h.name().eq_ignore_ascii_case("Event") && h.value().trim().to_ascii_lowercase().starts_with("refer"));
    if !is_refer_event {
        return None;
    }
    let body = std::str::from_utf8(req.body.get(..req.body.len().min(256))?).ok()?;
    let status = body.trim_start().strip_prefix("SIP/2.0 ")?.get(..3)?;
    status.parse().ok().filter(|s| (100..700).contains(s))
}

fn sdp_content_type() -> Header {
    Header::ContentType("application/sdp".into())
}

fn retry_after_header(after: Duration) -> Header {
    Header::RetryAfter(policy::retry_after_seconds(after).to_string().into())
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough
        // to serve the other calls.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn emit(&self, event: SipEvent) {
        if self.events.send(event).await.is_err() {
            debug!("SIP event dropped: nobody is listening");
        }
    }
}

impl Calls {
    fn remove(&mut self, call: CallRef) -> Option<Call> {
        let entry = self.by_ref.remove(&call)?;
        self.by_dialog.remove(&entry.dialog_key);
        Some(entry)
    }
}

async fn serve_requests(shared: Arc<Shared>, mut incoming: TransactionReceiver) {
    loop {
        let tx = tokio::select! {
            () = shared.cancel.cancelled() => return,
            tx = incoming.recv() => match tx { Some(tx) => tx, None => return },
        };
        let in_dialog = tx.original.to_header().ok().and_then(|to| to.tag().ok().flatten()).is_some();
        if in_dialog {
            serve_in_dialog(&shared, tx);
            continue;
        }
        match tx.original.method {
            Method::Invite => on_invite(&shared, tx).await,
            Method::Options => on_options(&shared, tx).await,
            Method::Ack => {}
            // BYE, INFO, … outside any dialog we know.
            Method::Bye | Method::Info | Method::Update | Method::Refer | Method::Notify | Method::PRack => {
                reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
            }
            _ => reply(tx, StatusCode::MethodNotAllowed, vec![allow_header()]),
        }
    }
}

fn allow_header() -> Header {
    Header::Allow("INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY".into())
}

fn reply(mut tx: Transaction, status: StatusCode, headers: Vec<Header>) {
    tokio::spawn(async move {
        if let Err(e) = tx.reply_with(status, headers, None).await {
            debug!(error = %e, "SIP reply not sent");
        }
    });
}

fn serve_in_dialog(shared: &Shared, mut tx: Transaction) {
    match shared.dialogs.match_dialog(&tx) {
        Some(mut dialog) => {
            tokio::spawn(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    debug!(error = %e, "in-dialog request failed");
                }
            });
        }
        None if tx.original.method == Method::Ack => {}
        None => reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]),
    }
}

async fn on_options(shared: &Shared, tx: Transaction) {
    let source = source_of(&tx);
    let breaker_open = source.is_some_and(|source| {
        let unavailable = shared.unavailable_trunks.lock().unwrap_or_else(PoisonError::into_inner);
        unavailable.iter().any(|network| network.contains(source.ip()))
    });
    let (status, retry_after) = policy::options_answer(shared.draining.load(Ordering::Relaxed), breaker_open);
    let mut headers = vec![allow_header(), Header::Accept("application/sdp".into())];
    headers.extend(retry_after.map(retry_after_header));
    reply(tx, StatusCode::from(status), headers);
    if let Some(source) = source {
        shared.emit(SipEvent::Options { source, status }).await;
    }
}

fn source_of(tx: &Transaction) -> Option<SocketAddr> {
    tx.connection.as_ref()?.get_remote_addr()?.get_socketaddr().ok()
}

async fn on_invite(shared: &Arc<Shared>, tx: Transaction) {
    let Some(source) = source_of(&tx) else {
        reply(tx, StatusCode::ServerInternalError, vec![]);
        return;
    };
    if let InviteGate::Reject(r) = policy::gate_invite(shared.draining.load(Ordering::Relaxed)) {
        info!(%source, status = r.status.code(), "INVITE refused while draining");
        let headers = r.retry_after.map(retry_after_header).into_iter().collect();
        reply(tx, StatusCode::from(r.status.code()), headers);
        return;
    }
    let fields = match invite_fields(&tx.original, shared.plan) {
        Ok(f) => f,
        Err(e) => {
            info!(%source, error = %e, "malformed INVITE answered 400");
            reply(tx, StatusCode::BadRequest, vec![]);
            return;
        }
    };
    let transport = match tx.connection.as_ref().map(rsipstack::transport::SipConnection::transport) {
        Some(Transport::Udp) | None => SipTransport::Udp,
        Some(_) => SipTransport::Tcp,
    };
    let dialog = match shared.dialogs.get_or_create_server_invite(&tx, shared.state_tx.clone(), None, None) {
        Ok(d) => d,
        Err(e) => {
            info!(%source, error = %e, "INVITE without a usable dialog answered 400");
            reply(tx, StatusCode::BadRequest, vec![]);
            return;
        }
    };
    let mut tx = tx;
    // 100 Trying before the worker can answer: otherwise a quick 180 would reach the caller
    // first and the stack would skip the 100 (RFC 3261 §17.2.1 wants it within 200 ms).
    if let Err(e) = tx.send_trying().await {
        debug!(error = %e, "100 Trying not sent");
    }
    let call = CallRef(shared.next_ref.fetch_add(1, Ordering::Relaxed));
    let dialog_key = dialog.id().to_string();
    {
        let mut calls = shared.lock();
        calls.by_dialog.insert(dialog_key.clone(), call);
        calls.by_ref.insert(
            call,
            Call {
                dialog: dialog.clone(),
                dialog_key,
                tu: tx.tu_sender.clone(),
                phase: Phase::Offered,
                answer_sdp: None,
                refer_progress: None,
            },
        );
    }
    let offer = IncomingCall {
        call,
        from: fields.from,
        to: fields.to,
        source,
        transport,
        headers: fields.headers,
        sdp_offer: fields.sdp_offer,
        digest: fields.digest,
    };
    info!(%call, %source, from = ?offer.from, to = ?offer.to, "incoming call");
    // The transaction (100 Trying, retransmission absorption, CANCEL, ACK) runs in its own
    // task for the life of the INVITE; the worker answers through the dialog meanwhile.
    let mut handler = dialog;
    tokio::spawn(async move {
        if let Err(e) = handler.handle(&mut tx).await {
            debug!(error = %e, "INVITE transaction ended with an error");
        }
    });
    if let Err(mpsc::error::TrySendError::Full(SipEvent::IncomingCall(offer))) =
        shared.events.try_send(SipEvent::IncomingCall(offer))
    {
        warn!(call = %offer.call, "worker is not keeping up with SIP events: call refused 503");
        let endpoint = SipEndpoint { shared: shared.clone() };
        let r = policy::RejectReason::Overloaded.rejection();
        endpoint.reject(offer.call, r.status, r.retry_after).ok();
    }
}

async fn serve_dialog_states(shared: Arc<Shared>, mut states: DialogStateReceiver) {
    loop {
        let state = tokio::select! {
            () = shared.cancel.cancelled() => return,
            s = states.recv() => match s { Some(s) => s, None => return },
        };
        match state {
            DialogState::Confirmed(id, _) => {
                let established = {
                    let mut calls = shared.lock();
                    let call = calls.by_dialog.get(&id.to_string()).copied();
                    call.and_then(|call| {
                        let entry = calls.by_ref.get_mut(&call)?;
                        (entry.phase == Phase::Answered).then(|| {
                            entry.phase = Phase::Established;
                            call
                        })
                    })
                };
                if let Some(call) = established {
                    shared.emit(SipEvent::CallEstablished { call }).await;
                }
            }
            DialogState::Terminated(id, reason) => {
                let ended = {
                    let mut calls = shared.lock();
                    let call = calls.by_dialog.get(&id.to_string()).copied();
                    call.filter(|&c| calls.remove(c).is_some())
                };
                shared.dialogs.remove_dialog(&id);
                let Some(call) = ended else { continue };
                info!(%call, ?reason, "call ended by the network");
                let event = match reason {
                    TerminatedReason::UacCancel => SipEvent::CallCancelled { call },
                    TerminatedReason::UacBye => SipEvent::RemoteHangup { call },
                    _ => SipEvent::CallFailed { call },
                };
                shared.emit(event).await;
            }
            // A re-INVITE or UPDATE: a session-timer refresh gets our SDP again. Hold and
            // codec changes need the media side (issue #17, RTP branch).
            DialogState::Updated(id, req, handle) => {
                // A session refresh gets our SDP again; a hold or its release gets it with the
                // mirrored direction (`reinvite`), and the worker is told.
                let answered = {
                    let mut calls = shared.lock();
                    let call = calls.by_dialog.get(&id.to_string()).copied();
                    call.and_then(|call| {
                        let entry = calls.by_ref.get_mut(&call)?;
                        let ours = entry.answer_sdp.as_ref()?;
                        let answer = crate::reinvite::reanswer(&req.body, ours);
                        entry.answer_sdp = Some(answer.sdp.clone());
                        Some((call, answer))
                    })
                };
                match answered {
                    Some((call, answer)) => {
                        let sending = answer.direction.we_send();
                        let receiving = answer.direction.we_receive();
                        handle.respond(StatusCode::OK, Some(vec![sdp_content_type()]), Some(answer.sdp)).await.ok();
                        shared.emit(SipEvent::MediaDirection { call, sending, receiving }).await;
                    }
                    None => {
                        handle.respond(StatusCode::OK, None, None).await.ok();
                    }
                }
            }
            DialogState::Notify(id, req, handle) => {
                handle.reply(StatusCode::OK).await.ok();
                let progress = refer_notify_status(&req).and_then(|status| {
                    let calls = shared.lock();
                    let call = calls.by_dialog.get(&id.to_string()).copied()?;
                    Some((calls.by_ref.get(&call)?.refer_progress.clone()?, status))
                });
                if let Some((progress, status)) = progress {
                    progress.try_send(status).ok();
                }
            }
            DialogState::Info(id, req, handle) => {
                handle.reply(StatusCode::OK).await.ok();
                let content_type = req
                    .headers
                    .iter()
                    .find(|h| h.name().eq_ignore_ascii_case("Content-Type"))
                    .map(|h| h.value().to_owned())
                    .unwrap_or_default();
                let call = shared.lock().by_dialog.get(&id.to_string()).copied();
                if let (Some(call), Some(digit)) = (call, policy::info_digit(&content_type, &req.body)) {
                    shared.emit(SipEvent::Digit { call, digit }).await;
                }
            }
            DialogState::Options(_, _, handle) => {
                handle.reply(StatusCode::OK).await.ok();
            }
            // Transfers the trunk asks of us are not supported (yet): refuse, the call goes on.
            DialogState::Refer(_, _, handle) => {
                handle.reply(StatusCode::Decline).await.ok();
            }
            DialogState::Message(_, _, handle) | DialogState::Publish(_, _, handle) => {
                handle.reply(StatusCode::MethodNotAllowed).await.ok();
            }
            _ => {}
        }
    }
}
