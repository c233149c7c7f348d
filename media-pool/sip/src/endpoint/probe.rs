//! Out-of-dialog OPTIONS to a trunk: the health check whose outcomes drive the trunk's
//! circuit breaker (`crate::breaker`). A child of `endpoint` so it sends through the same
//! stack and socket as the calls (the trunk sees golos's SIP address, which its own access
//! lists allow), without widening what the endpoint exposes.

use super::SipEndpoint;
use crate::breaker::TrunkOutcome;
use crate::SipError;
use rsipstack::sip::{typed, Method, SipMessage, StatusCodeKind, Transport, Uri};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::make_tag;
use rsipstack::transaction::transaction::{Transaction, TransactionEvent};
use rsipstack::transport::SipAddr;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::debug;

/// The longest a probe waits. The stack's own non-INVITE timeout (Timer F, 64*T1 = 32 s)
/// answers a local `408`, which would read as the trunk's answer: golos gives up before it.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

impl SipEndpoint {
    /// Whether `shutdown` was called: probes then fail at once, and a loop sending them
    /// should stop rather than count those failures against the trunks.
    pub fn is_stopped(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Sends `OPTIONS sip:<target>` over UDP from the endpoint's address and waits up to
    /// `timeout` (at most [`MAX_PROBE_TIMEOUT`]) for a final response. `target` is
    /// `host:port` (`golos_domain::trunks::SipAddress`); a DNS name is resolved first, and
    /// a name that does not resolve is a transport error, as is a stopped endpoint.
    pub async fn probe(&self, target: &str, timeout: Duration) -> TrunkOutcome {
        if self.shared.cancel.is_cancelled() {
            return TrunkOutcome::TransportError;
        }
        let timeout = timeout.min(MAX_PROBE_TIMEOUT);
        let Some(destination) = resolve(target, timeout).await else {
            debug!(%target, "the trunk's SIP address does not resolve");
            return TrunkOutcome::TransportError;
        };
        let mut tx = match self.options_transaction(target, destination) {
            Ok(tx) => tx,
            Err(error) => {
                debug!(%target, %error, "OPTIONS not built");
                return TrunkOutcome::TransportError;
            }
        };
        if let Err(error) = tx.send().await {
            debug!(%target, %error, "OPTIONS not sent");
            return TrunkOutcome::TransportError;
        }
        // The stack's docs ask that `receive` run in a task of its own and be ended through
        // the transaction (Terminate), never by dropping it mid-way inside a timeout.
        let (tu, key) = (tx.tu_sender.clone(), tx.key.clone());
        let mut waiting = tokio::spawn(async move {
            while let Some(message) = tx.receive().await {
                if let SipMessage::Response(response) = message {
                    if response.status_code.kind() != StatusCodeKind::Provisional {
                        return Some(response.status_code.code());
                    }
                }
            }
            None
        });
        match tokio::time::timeout(timeout, &mut waiting).await {
            Ok(Ok(Some(status))) => TrunkOutcome::Answered(status),
            Ok(_) => TrunkOutcome::TransportError,
            Err(_) => {
                let _ = tu.send(TransactionEvent::Terminate(key));
                let _ = waiting.await;
                TrunkOutcome::Timeout
            }
        }
    }

    fn options_transaction(&self, target: &str, destination: SocketAddr) -> Result<Transaction, SipError> {
        let endpoint = &self.shared.endpoint;
        let uri = Uri::try_from(format!("sip:{target}").as_str()).map_err(|e| SipError::Parse(e.to_string()))?;
        let via = endpoint.get_via(None, None)?;
        let ours = Uri::try_from(format!("sip:golos@{}", via.uri.host_with_port).as_str())
            .map_err(|e| SipError::Parse(e.to_string()))?;
        let from = typed::From { display_name: None, uri: ours, params: vec![] }.with_tag(make_tag());
        let to = typed::To { display_name: None, uri: uri.clone(), params: vec![] };
        let request = endpoint.make_request(Method::Options, uri, via, from, to, 1, None);
        let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, request, endpoint.clone(), None);
        let mut destination = SipAddr::from(destination);
        destination.r#type = Some(Transport::Udp);
        tx.destination = Some(destination);
        Ok(tx)
    }
}

/// The first address `target` resolves to, within `timeout`.
async fn resolve(target: &str, timeout: Duration) -> Option<SocketAddr> {
    let lookup = tokio::net::lookup_host(target);
    tokio::time::timeout(timeout, lookup).await.ok()?.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SipConfig;
    use tokio::net::UdpSocket;

    /// The trunk: answers the first OPTIONS it gets with `status` (`None`: stays silent) and
    /// hands back the request as it saw it.
    async fn trunk_answering(status: Option<&'static str>) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = trunk.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (len, from) = trunk.recv_from(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..len]).into_owned();
            if let Some(status) = status {
                let response = response_to(&request, status);
                trunk.send_to(response.as_bytes(), from).await.unwrap();
            }
            request
        });
        (addr, handle)
    }

    /// A response as RFC 3261 §8.2.6 builds one: the request's Via, From, To (with a tag),
    /// Call-ID and CSeq.
    fn response_to(request: &str, status: &str) -> String {
        let mut response = format!("SIP/2.0 {status}\r\n");
        for line in request.lines() {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "call-id:", "cseq:"].iter().any(|h| lower.starts_with(h)) {
                response.push_str(line);
                response.push_str("\r\n");
            } else if lower.starts_with("to:") {
                response.push_str(line);
                response.push_str(";tag=trunk\r\n");
            }
        }
        response + "Content-Length: 0\r\n\r\n"
    }

    async fn endpoint() -> SipEndpoint {
        let mut config = SipConfig::new("127.0.0.1:0".parse().unwrap());
        config.tcp = false;
        SipEndpoint::bind(config).await.unwrap().0
    }

    #[tokio::test]
    async fn a_probe_reports_the_trunks_final_answer() {
        let endpoint = endpoint().await;
        for (status, code) in [("200 OK", 200), ("503 Service Unavailable", 503), ("404 Not Found", 404)] {
            let (trunk, seen) = trunk_answering(Some(status)).await;
            let outcome = endpoint.probe(&trunk.to_string(), Duration::from_secs(5)).await;
            assert_eq!(outcome, TrunkOutcome::Answered(code));
            let request = seen.await.unwrap();
            assert!(request.starts_with(&format!("OPTIONS sip:{trunk} SIP/2.0\r\n")), "{request}");
            let from = request.lines().find(|l| l.starts_with("From:")).unwrap_or_default();
            assert!(from.contains(&endpoint.local_udp_addr().to_string()) && from.contains("tag="), "{request}");
        }
        endpoint.shutdown();
    }

    #[tokio::test]
    async fn silence_is_a_timeout_and_an_unreachable_name_a_transport_error() {
        let endpoint = endpoint().await;
        let (trunk, seen) = trunk_answering(None).await;
        let started = std::time::Instant::now();
        let outcome = endpoint.probe(&trunk.to_string(), Duration::from_millis(300)).await;
        assert_eq!(outcome, TrunkOutcome::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2), "the probe's own timeout, not the stack's 32 s");
        assert!(seen.await.unwrap().starts_with("OPTIONS "));
        // `.invalid` never resolves (RFC 6761).
        let outcome = endpoint.probe("trunk.golos.invalid:5060", Duration::from_secs(2)).await;
        assert_eq!(outcome, TrunkOutcome::TransportError);
        endpoint.shutdown();
        let (trunk, _) = trunk_answering(Some("200 OK")).await;
        assert_eq!(endpoint.probe(&trunk.to_string(), Duration::from_secs(1)).await, TrunkOutcome::TransportError);
    }
}
