//! Phone calls from SIP trunks: golos-sip's events joined to the same admission, engine and
//! call records as the WebSocket transports, with [`super::rtp_media`] as the transport.
//!
//! An INVITE, from first datagram to `call.ended`:
//! 1. its trunk is the enabled trunk whose `source_networks` hold the INVITE's source address
//!    (digest authentication of trunks is not done yet): none → `403`;
//! 2. the dialled number must be one the trunk carries, routed to an agent of the trunk's org:
//!    else `480` (`policy::RejectReason::NotRouted`);
//! 3. the SDP offer is answered by golos-rtp on a socket from the RTP range: no common codec →
//!    `488`, no port free → `503`;
//! 4. the call registers and asks admission as every call does ([`LiveCalls::open`]):
//!    draining → `503`; refused → the policy's status; admitted → `200` with our SDP; held →
//!    `183` with the same SDP (the hold prompt is early media), then `200` once it starts;
//! 5. BYE from the trunk ends the call `caller_hangup`; the agent's hangup sends BYE; CANCEL
//!    before the answer ends everything the call took.

pub use super::rtp_media::DEFAULT_MEDIA_TIMEOUT;
use super::rtp_media::{bind_rtp, random_u64, MediaEnd, RtpMedia};
use super::session::{CallRequest, OpenRefusal, OpenedCall};
use super::sink::PIPELINE_RATE;
use super::{Admit, CallLink, LiveCalls, PhoneLine};
use crate::lifecycle::EndReason;
use golos_domain::trunks::SourceNetwork;
use golos_domain::CallDirection;
use golos_domain::PhoneNumber;
use golos_ports::AgentRecord;
use golos_ports::SipTrunk;
use golos_rtp::sdp::{self, AnswerParams};
use golos_shard::OwnedInput;
use golos_sip::digest::{NonceCheck, NonceIssuer};
use golos_sip::policy::RejectReason;
use golos_sip::{CallRef, IncomingCall, SipConfig, SipEndpoint, SipEvent, SipEvents, TransferOutcome};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;

/// Where the SIP edge listens and what it tells trunks.
#[derive(Debug, Clone)]
pub struct SipEdgeConfig {
    pub listen: SocketAddr,
    pub rtp_ports: RangeInclusive<u16>,
    /// The address in our SDP: where the trunk sends RTP.
    pub media_address: IpAddr,
    /// The trunks' circuit breakers: how often they are health-checked, when they open and close.
    pub breaker: golos_sip::breaker::BreakerConfig,
    /// No RTP from the trunk for this long ends an answered call (`DEFAULT_MEDIA_TIMEOUT`).
    pub media_timeout: std::time::Duration,
}

/// The running SIP edge.
#[derive(Clone)]
pub struct SipEdge {
    endpoint: Arc<SipEndpoint>,
}

impl std::fmt::Debug for SipEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipEdge").field("udp", &self.endpoint.local_udp_addr()).finish_non_exhaustive()
    }
}

impl SipEdge {
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_udp_addr()
    }

    /// New INVITEs get `503` with Retry-After and OPTIONS says the same, so trunks move on
    /// before the registry would refuse them.
    pub fn set_draining(&self, draining: bool) {
        self.endpoint.set_draining(draining);
    }

    pub fn shutdown(&self) {
        self.endpoint.shutdown();
    }
}

/// How a call's dialog ended from the trunk's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    Cancelled,
    Bye,
    Failed,
}

/// What the trunk's side tells a call's task: that the dialog ended, and whether the call is
/// on hold (a re-INVITE with `sendonly`/`inactive`).
struct Leg {
    gone: watch::Sender<Option<Gone>>,
    held: watch::Sender<bool>,
    /// Keys the trunk sent as SIP INFO.
    keys: mpsc::Sender<char>,
}

/// What a call's task hears from the trunk's side.
struct LegEvents {
    gone: watch::Receiver<Option<Gone>>,
    held: watch::Receiver<bool>,
    keys: mpsc::Receiver<char>,
}

type Legs = Arc<Mutex<HashMap<CallRef, Leg>>>;

impl LiveCalls {
    /// Binds the SIP endpoint and serves its calls until the process ends.
    pub async fn start_sip(&self, config: SipEdgeConfig) -> anyhow::Result<SipEdge> {
        let (endpoint, events) = SipEndpoint::bind(SipConfig::new(config.listen)).await?;
        let endpoint = Arc::new(endpoint);
        self.worker.trunk_health.configure(config.breaker);
        tokio::spawn(self.clone().probe_trunks(Arc::clone(&endpoint)));
        tokio::spawn(self.clone().sip_events(Arc::clone(&endpoint), events, config));
        Ok(SipEdge { endpoint })
    }

    async fn sip_events(self, endpoint: Arc<SipEndpoint>, mut events: SipEvents, config: SipEdgeConfig) {
        let legs: Legs = Arc::default();
        let nonces = match NonceIssuer::random() {
            Ok(nonces) => nonces,
            Err(error) => {
                tracing::error!(%error, "no random source for digest nonces; the SIP edge does not start");
                return;
            }
        };
        let config = Arc::new((config, nonces));
        while let Some(event) = events.recv().await {
            let (call, gone) = match event {
                SipEvent::IncomingCall(incoming) => {
                    let (gone, gone_rx) = watch::channel(None);
                    let (held, held_rx) = watch::channel(false);
                    let (keys, keys_rx) = mpsc::channel(16);
                    legs.lock().unwrap_or_else(PoisonError::into_inner).insert(incoming.call, Leg { gone, held, keys });
                    let (calls, endpoint, legs, config) =
                        (self.clone(), Arc::clone(&endpoint), Arc::clone(&legs), Arc::clone(&config));
                    tokio::spawn(async move {
                        let call = incoming.call;
                        let leg = LegEvents { gone: gone_rx, held: held_rx, keys: keys_rx };
                        calls.serve_invite(&endpoint, incoming, leg, &config.0, &config.1).await;
                        legs.lock().unwrap_or_else(PoisonError::into_inner).remove(&call);
                    });
                    continue;
                }
                SipEvent::CallCancelled { call } => (call, Gone::Cancelled),
                SipEvent::RemoteHangup { call } => (call, Gone::Bye),
                SipEvent::CallFailed { call } => (call, Gone::Failed),
                SipEvent::CallEstablished { call } => {
                    tracing::debug!(%call, "call established");
                    continue;
                }
                SipEvent::Digit { call, digit } => {
                    if let Some(leg) = legs.lock().unwrap_or_else(PoisonError::into_inner).get(&call) {
                        // A full queue means keys faster than anyone types: dropped.
                        let _ = leg.keys.try_send(digit);
                    }
                    continue;
                }
                SipEvent::MediaDirection { call, sending, receiving } => {
                    let on_hold = !(sending && receiving);
                    tracing::info!(%call, on_hold, "the trunk changed the call's media direction");
                    if let Some(leg) = legs.lock().unwrap_or_else(PoisonError::into_inner).get(&call) {
                        leg.held.send_replace(on_hold);
                    }
                    continue;
                }
                other => {
                    tracing::debug!(?other, "SIP event");
                    continue;
                }
            };
            if let Some(leg) = legs.lock().unwrap_or_else(PoisonError::into_inner).get(&call) {
                leg.gone.send_replace(Some(gone));
            }
        }
    }

    /// One INVITE, from routing to the end of its call.
    async fn serve_invite(
        &self,
        endpoint: &SipEndpoint,
        incoming: IncomingCall,
        leg: LegEvents,
        config: &SipEdgeConfig,
        nonces: &NonceIssuer,
    ) {
        let call = incoming.call;
        let LegEvents { mut gone, held, mut keys } = leg;
        let reject = |reason: RejectReason| {
            let rejection = reason.rejection();
            if let Err(error) = endpoint.reject(call, rejection.status, rejection.retry_after) {
                tracing::debug!(%call, %error, "could not refuse the call (already gone?)");
            }
        };
        let agent = match self.route_invite(&incoming, nonces).await {
            Ok(agent) => agent,
            Err(Unrouted::Refused(reason)) => return reject(reason),
            Err(Unrouted::Challenge { stale }) => {
                let nonce = nonces.issue(unix_now(), incoming.source.ip());
                if let Err(error) = endpoint.challenge(call, &nonce, stale) {
                    tracing::debug!(%call, %error, "could not challenge the call (already gone?)");
                }
                return;
            }
        };
        let Ok(offer) = sdp::parse(&incoming.sdp_offer) else {
            tracing::info!(%call, "the INVITE's SDP offer does not parse");
            return reject(RejectReason::NoCommonCodec);
        };
        let sockets = match bind_rtp(config.listen.ip(), &config.rtp_ports).await {
            Ok(sockets) => sockets,
            Err(error) => {
                tracing::warn!(%call, %error, "no RTP port free; refusing the call");
                return reject(RejectReason::Overloaded);
            }
        };
        let Ok(local) = sockets.rtp.local_addr() else { return reject(RejectReason::Overloaded) };
        let ours = AnswerParams {
            address: config.media_address,
            port: local.port(),
            session_id: random_u64() >> 1,
            session_version: 1,
        };
        let negotiated = match sdp::answer(&offer, &ours) {
            Ok(negotiated) => negotiated,
            Err(error) => {
                tracing::info!(%call, %error, "no common codec with the offer");
                return reject(RejectReason::NoCommonCodec);
            }
        };
        // The SDP names where golos sends audio. A UDP source address can be forged, so an
        // INVITE that passed the trunk check could still aim the media stream at a host inside
        // our network: the egress policy that holds for tool URLs holds for it too.
        if let Some(remote) = negotiated.remote {
            let ip = remote.ip().to_canonical();
            if let Some(forbidden) = golos_egress::classify(ip) {
                if !self.state.config.egress.allows_ip(ip) {
                    tracing::warn!(%call, %remote, ?forbidden, "the SDP's media address is not allowed by the egress policy");
                    return reject(RejectReason::NoCommonCodec);
                }
            }
        }
        let request = CallRequest {
            org_id: agent.org_id.clone(),
            agent,
            resume: None,
            metadata: Some(sip_metadata(&incoming.headers)),
            from: incoming.from.clone(),
            to: incoming.to.clone(),
        };
        let OpenedCall { link, outputs, admit } = match Box::pin(self.open(request, CallDirection::Inbound)).await {
            Ok(opened) => opened,
            Err(refused) => {
                tracing::info!(%call, ?refused, "call refused");
                return reject(sip_reason(&refused));
            }
        };
        tracing::info!(
            %call, call_id = %link.call_id, from = ?incoming.from, to = ?incoming.to,
            codec = negotiated.codec.encoding_name(), ?admit, "phone call admitted"
        );
        let answer = negotiated.sdp.clone().into_bytes();
        let (transfer_tx, mut transfers) = mpsc::channel(1);
        let (digits_tx, digits) = mpsc::channel(4);
        link.set_line(PhoneLine { transfers: transfer_tx, digits: digits_tx });
        let media =
            RtpMedia::new(sockets, &negotiated, self.state.config.egress.clone(), PIPELINE_RATE, config.media_timeout);
        let mut media = tokio::spawn(media.on_hold_when(held).run(Arc::clone(&link), outputs, digits));
        if admit == Admit::Held {
            if let Err(error) = endpoint.early_media(call, answer.clone()) {
                tracing::debug!(%call, %error, "could not start early media");
            }
        }
        let mut ended = None;
        let answered = tokio::select! {
            () = link.wait_started() => true,
            _ = gone.wait_for(Option::is_some) => false,
            result = &mut media => {
                ended = Some(result.unwrap_or(MediaEnd::Ended("failed".into())));
                false
            }
        };
        if answered && gone.borrow().is_none() {
            if let Err(error) = endpoint.answer(call, answer) {
                tracing::info!(%call, %error, "could not answer the call");
                link.request_end(EndReason::Failed);
            }
        }
        // Until the media loop ends, the trunk's side may end the call (also before the
        // answer: a CANCEL while held leaves the line).
        let ended = match ended {
            Some(ended) => ended,
            None => loop {
                let trunk_ended = *gone.borrow_and_update();
                if let Some(how) = trunk_ended {
                    link.request_end(if how == Gone::Failed { EndReason::Failed } else { EndReason::CallerHangup });
                    break media.await.unwrap_or(MediaEnd::Ended("failed".into()));
                }
                tokio::select! {
                    result = &mut media => break result.unwrap_or(MediaEnd::Ended("failed".into())),
                    Some(target) = transfers.recv() => {
                        tokio::spawn(transfer(endpoint.clone(), call, Arc::clone(&link), target));
                    }
                    Some(digit) = keys.recv() => {
                        if let Some(handle) = link.handle.get() {
                            handle.input(OwnedInput::Dtmf { digit });
                        }
                    }
                    changed = gone.changed() => {
                        if changed.is_err() {
                            break media.await.unwrap_or(MediaEnd::Ended("failed".into()));
                        }
                    }
                }
            },
        };
        tracing::info!(%call, call_id = %link.call_id, ?ended, "phone call's media ended");
        if gone.borrow().is_none() {
            // Ours to end: BYE once answered, a final refusal before.
            if let Err(error) = endpoint.hangup(call).await {
                tracing::debug!(%call, %error, "could not hang up");
            }
        }
    }

    /// The trunk an INVITE comes from (`identify_trunk`), the number among the trunk's, the
    /// number's route within the trunk's org, its agent.
    async fn route_invite(&self, incoming: &IncomingCall, nonces: &NonceIssuer) -> Result<AgentRecord, Unrouted> {
        let call = incoming.call;
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%call, %error, "the store could not be read to route a call");
            RejectReason::Overloaded
        };
        let trunks = self.state.stores.trunks.all().await.map_err(|e| unavailable(&e))?;
        let trunk = self.identify_trunk(incoming, trunks, nonces).await?;
        Ok(self.route_number(incoming, &trunk).await?)
    }

    /// The agent the dialled number reaches: a number the trunk carries, routed to an enabled
    /// agent of the trunk's (enabled) org.
    async fn route_number(&self, incoming: &IncomingCall, trunk: &SipTrunk) -> Result<AgentRecord, RejectReason> {
        let call = incoming.call;
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%call, %error, "the store could not be read to route a call");
            RejectReason::Overloaded
        };
        if !self.worker.trunk_health.admits(&trunk.id, std::time::Instant::now()) {
            tracing::info!(%call, trunk = %trunk.id, "the trunk's circuit breaker is open: call refused");
            return Err(RejectReason::BreakerOpen);
        }
        let Some(to) = incoming.to.as_ref().filter(|to| trunk.numbers.contains(to)) else {
            tracing::info!(%call, trunk = %trunk.id, to = ?incoming.to, "the dialled number is not one of the trunk's");
            return Err(RejectReason::NotRouted);
        };
        let route = match golos_control::numbers::route(&self.state, to).await {
            Ok(route) => route,
            Err(golos_control::ControlError::NotFound { .. }) => return Err(RejectReason::NotRouted),
            Err(error) => return Err(unavailable(&error)),
        };
        let (true, Some(agent_id)) = (route.org_id == trunk.org_id, route.agent_id) else {
            tracing::info!(%call, trunk = %trunk.id, %to, "the dialled number is not routed to an agent of the trunk's org");
            return Err(RejectReason::NotRouted);
        };
        let org = self.state.stores.orgs.get(&trunk.org_id).await.map_err(|e| unavailable(&e))?;
        if org.is_none_or(|org| org.disabled) {
            return Err(RejectReason::Forbidden);
        }
        match self.state.stores.agents.get(&trunk.org_id, &agent_id).await {
            Ok(Some(agent)) => Ok(agent),
            Ok(None) => Err(RejectReason::NotRouted),
            Err(error) => Err(unavailable(&error)),
        }
    }
}

/// Why an INVITE reaches no agent.
#[derive(Debug)]
enum Unrouted {
    Refused(RejectReason),
    /// The INVITE may come from a trunk that authenticates with digest credentials: answer
    /// `401` with a fresh nonce (`stale`: the trunk's nonce was ours but too old).
    Challenge {
        stale: bool,
    },
}

impl From<RejectReason> for Unrouted {
    fn from(reason: RejectReason) -> Self {
        Self::Refused(reason)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `source` is inside one of the trunk's networks.
fn from_trunk_network(trunk: &SipTrunk, source: IpAddr) -> bool {
    trunk.source_networks.iter().any(|n| SourceNetwork::parse(n).is_ok_and(|network| network.contains(source)))
}

impl LiveCalls {
    /// Which enabled trunk an INVITE comes from:
    /// 1. an INVITE answering a digest challenge names its trunk by username; the trunk's
    ///    networks (if it lists any) must hold the source, the nonce must be one this process
    ///    issued to that address in the last 5 minutes, and the response must match the
    ///    trunk's password — otherwise `403` (a stale nonce is challenged again);
    /// 2. otherwise a trunk without digest credentials whose networks hold the source;
    /// 3. otherwise, if a trunk with digest credentials could have sent it (its networks hold
    ///    the source, or it lists none), a `401` challenge; else `403`.
    async fn identify_trunk(
        &self,
        incoming: &IncomingCall,
        trunks: Vec<SipTrunk>,
        nonces: &NonceIssuer,
    ) -> Result<SipTrunk, Unrouted> {
        let (call, source) = (incoming.call, incoming.source.ip());
        let may_send = |t: &SipTrunk| t.source_networks.is_empty() || from_trunk_network(t, source);
        let mut enabled = trunks.into_iter().filter(|t| t.enabled);
        if let Some(answer) = &incoming.digest {
            let named =
                enabled.clone().find(|t| t.digest_username.as_deref() == Some(answer.username()) && may_send(t));
            if let Some(trunk) = named {
                match nonces.check(answer.nonce(), unix_now(), source) {
                    NonceCheck::Stale => return Err(Unrouted::Challenge { stale: true }),
                    NonceCheck::Invalid => {
                        tracing::info!(%call, %source, trunk = %trunk.id, "digest answer with a nonce golos did not issue");
                        return Err(RejectReason::Forbidden.into());
                    }
                    NonceCheck::Valid => {}
                }
                let password = golos_control::sip_trunks::digest_password(&self.state, &trunk).await.map_err(|error| {
                    tracing::warn!(%call, trunk = %trunk.id, %error, "the trunk's digest password could not be read");
                    RejectReason::Overloaded
                })?;
                if password.is_some_and(|p| answer.verify(p.expose())) {
                    return Ok(trunk);
                }
                tracing::info!(%call, %source, trunk = %trunk.id, "wrong digest credentials");
                return Err(RejectReason::Forbidden.into());
            }
        }
        let trunks: Vec<SipTrunk> = enabled.by_ref().collect();
        if let Some(trunk) = trunks.iter().find(|t| t.digest_username.is_none() && from_trunk_network(t, source)) {
            return Ok(trunk.clone());
        }
        if trunks.iter().any(|t| t.digest_username.is_some() && may_send(t)) {
            return Err(Unrouted::Challenge { stale: false });
        }
        tracing::info!(%call, %source, "INVITE from no known trunk");
        Err(RejectReason::Forbidden.into())
    }
}

/// The INVITE's headers an agent may see (golos-sip's filter and caps), as call metadata:
/// `X-Account-Id` becomes `sip_x_account_id`; kept with the call and usable in the agent's
/// prompt as `{{sip_x_account_id}}`. A repeated header keeps its first value.
fn sip_metadata(headers: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    let mut metadata = serde_json::Map::new();
    for (name, value) in headers {
        let key = format!("sip_{}", name.to_ascii_lowercase().replace('-', "_"));
        metadata.entry(key).or_insert_with(|| serde_json::Value::String(value.clone()));
    }
    metadata
}

/// How long a transfer may take, REFER to the final NOTIFY (the target's phone rings
/// meanwhile); the engine gives up a little later on its own.
const TRANSFER_WAIT: Duration = Duration::from_secs(55);

/// Carries out the engine's transfer on the line and tells it how it went: on success the
/// engine ends the call as transferred (golos then sends BYE, RFC 5589); otherwise the agent
/// says so and the call goes on.
async fn transfer(endpoint: SipEndpoint, call: CallRef, link: Arc<CallLink>, target: String) {
    let outcome = if let Ok(number) = PhoneNumber::parse(&target) {
        endpoint.transfer(call, &number, TRANSFER_WAIT).await
    } else {
        tracing::warn!(%call, "the transfer target is not a phone number; not transferred");
        Ok(TransferOutcome::Refused(0))
    };
    let (result, report) = match outcome {
        Ok(TransferOutcome::Completed) => (Ok(()), json!({"outcome": "completed"})),
        Ok(TransferOutcome::Refused(status)) => (
            Err("the phone network refused to transfer the call".to_owned()),
            json!({"outcome": "refused", "sip_status": (status > 0).then_some(status)}),
        ),
        Ok(TransferOutcome::Failed(status)) => (
            Err(match status {
                486 | 600 => "the line is busy".to_owned(),
                603 => "the call was declined".to_owned(),
                _ => "nobody answered".to_owned(),
            }),
            json!({"outcome": "failed", "sip_status": status}),
        ),
        Ok(_) => (Err("nobody answered".to_owned()), json!({"outcome": "no_answer"})),
        Err(error) => {
            tracing::info!(%call, %error, "could not transfer");
            (Err("the call cannot be transferred now".to_owned()), json!({"outcome": "not_sent"}))
        }
    };
    link.report_line("transfer", report);
    if let Some(handle) = link.handle.get() {
        handle.input(OwnedInput::TransferResult { result });
    }
}

/// The SIP answer to a call that could not be opened (the reasons the WebSocket transports
/// tell their clients as `error` codes, `OpenRefusal::to_refusal`).
fn sip_reason(refused: &OpenRefusal) -> RejectReason {
    use golos_control::admission::RejectReason as Admission;
    match refused {
        OpenRefusal::Draining => RejectReason::Draining,
        OpenRefusal::Unavailable | OpenRefusal::Internal(_) => RejectReason::Overloaded,
        OpenRefusal::Rejected(Admission::HoldQueueFull) => RejectReason::OverQuota,
        OpenRefusal::Rejected(Admission::AgentDisabled | Admission::UnknownAgent) => RejectReason::NotRouted,
        OpenRefusal::Rejected(
            Admission::NoBalance | Admission::MinutesExhausted | Admission::OrgDisabled | Admission::UnknownOrg,
        ) => RejectReason::Forbidden,
    }
}
