//! The policy enforced where connections are made. The check that matters is on the address
//! a socket is about to connect to, after DNS: a name that resolved to a public address when
//! an agent was saved may resolve to 169.254.169.254 at call time (DNS rebinding), so names
//! are resolved here and only allowed addresses are handed to the connector.

use crate::allow::EgressAllowlist;
use crate::classify::classify;
use crate::target::{check_parsed, check_url, Protocol};
use crate::EgressError;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Host;

/// How long one TCP connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `host` and keeps the addresses the policy allows; `port` goes into the result.
/// A name the operator lists may resolve anywhere; otherwise a forbidden address is dropped,
/// and if none is left the error names the class of the first refused one.
pub async fn resolve_allowed(allow: &EgressAllowlist, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
    let resolve_error = |reason: String| EgressError::Resolve { host: host.to_owned(), reason };
    let found: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| resolve_error(e.to_string()))?.collect();
    if allow.names_host(host) {
        return Ok(found);
    }
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| match classify(addr.ip()) {
            Some(class) if !allow.allows_ip(addr.ip()) => {
                refused.get_or_insert(class);
                false
            }
            _ => true,
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (false, _) => Ok(allowed),
        (true, Some(class)) => Err(EgressError::ForbiddenResolution { host: host.to_owned(), class }),
        (true, None) => Err(resolve_error("no addresses".into())),
    }
}

/// reqwest's DNS resolver under the policy: every name reqwest connects to goes through
/// [`resolve_allowed`]. (reqwest does not call a resolver for IP-literal hosts; those are
/// checked by [`EgressClient`] before the request is built.)
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    allow: Arc<EgressAllowlist>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = resolve_allowed(&allow, &host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client that only reaches what the policy allows: URLs are checked before a request
/// is built (scheme, userinfo, IP literals), names through [`PolicyResolver`] at connect time.
/// Redirects are not followed (a 3xx is an answer like any other) and proxies from the
/// environment are not used, since either would connect somewhere the checks never saw.
#[derive(Debug, Clone)]
pub struct EgressClient {
    http: reqwest::Client,
    allow: Arc<EgressAllowlist>,
}

impl EgressClient {
    pub fn new(allow: EgressAllowlist) -> Result<Self, EgressError> {
        Self::with_builder(allow, reqwest::Client::builder())
    }

    /// From a builder with other settings (timeouts, pool sizes); the policy's settings win.
    pub fn with_builder(allow: EgressAllowlist, builder: reqwest::ClientBuilder) -> Result<Self, EgressError> {
        let allow = Arc::new(allow);
        let http = builder
            .dns_resolver(Arc::new(PolicyResolver { allow: Arc::clone(&allow) }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| EgressError::Connect(format!("building the HTTP client: {e}")))?;
        Ok(Self { http, allow })
    }

    /// The operator's exceptions this client connects under (for WebSocket connectors).
    pub fn allowlist(&self) -> &Arc<EgressAllowlist> {
        &self.allow
    }

    /// A request to `url` if the policy allows it so far (names are checked when resolved).
    pub fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder, EgressError> {
        let url = check_url(url, Protocol::Http, &self.allow)?;
        Ok(self.http.request(method, url))
    }

    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, EgressError> {
        self.request(reqwest::Method::POST, url)
    }

    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, EgressError> {
        self.request(reqwest::Method::GET, url)
    }
}

/// A TCP connection to a `ws://` / `wss://` URL's host under the policy, for WebSocket clients
/// that do their own handshake (and TLS) over it: the URL is checked, the name resolved to
/// allowed addresses only, and those are tried in order.
pub async fn connect_websocket_tcp(
    allow: &EgressAllowlist,
    url: &url::Url,
) -> Result<tokio::net::TcpStream, EgressError> {
    check_parsed(url, Protocol::WebSocket, allow)?;
    let port = url.port_or_known_default().ok_or_else(|| EgressError::InvalidUrl("no port".into()))?;
    let addrs = match url.host().ok_or_else(|| EgressError::InvalidUrl("no host".into()))? {
        Host::Ipv4(ip) => vec![SocketAddr::new(ip.into(), port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(ip.into(), port)],
        Host::Domain(name) => resolve_allowed(allow, name, port).await?,
    };
    let mut last = EgressError::Connect("no address to connect to".into());
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = EgressError::Connect(format!("{addr}: {e}")),
            Err(_) => last = EgressError::Timeout(format!("connecting to {addr}")),
        }
    }
    Err(last)
}

/// The policy's error inside a reqwest error (the resolver's refusal is wrapped by the
/// connector), to tell a refused destination from a network failure.
pub fn egress_error_of<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<EgressError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn transport_error(err: &reqwest::Error) -> EgressError {
    if let Some(policy) = egress_error_of(err) {
        return policy.clone();
    }
    if err.is_timeout() {
        return EgressError::Timeout("reading the answer".into());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    EgressError::Connect(text)
}

/// The body as it arrives, ending with [`EgressError::TooLarge`] once more than `limit` bytes
/// came: nothing beyond the cap is buffered, and dropping the stream closes the connection.
pub fn capped_stream(
    response: reqwest::Response,
    limit: usize,
) -> impl Stream<Item = Result<Bytes, EgressError>> + Send + 'static {
    let declared_too_large = response.content_length().is_some_and(|n| n > limit as u64);
    let body = response.bytes_stream();
    futures::stream::unfold(
        (body, 0usize, declared_too_large, false),
        move |(mut body, seen, declared, done)| async move {
            if done {
                return None;
            }
            if declared {
                return Some((Err(EgressError::TooLarge { limit }), (body, seen, false, true)));
            }
            match body.next().await? {
                Ok(bytes) => {
                    let seen = seen.saturating_add(bytes.len());
                    if seen > limit {
                        Some((Err(EgressError::TooLarge { limit }), (body, seen, false, true)))
                    } else {
                        Some((Ok(bytes), (body, seen, false, false)))
                    }
                }
                Err(e) => Some((Err(transport_error(&e)), (body, seen, false, true))),
            }
        },
    )
}

/// The whole body, or [`EgressError::TooLarge`] as soon as it is over `limit` bytes.
pub async fn read_capped(response: reqwest::Response, limit: usize) -> Result<Bytes, EgressError> {
    let mut body = BytesMut::new();
    let mut pieces = std::pin::pin!(capped_stream(response, limit));
    while let Some(piece) = pieces.next().await {
        body.extend_from_slice(&piece?);
    }
    Ok(body.freeze())
}

/// At most the first `limit` bytes of the body, for error messages: the rest is not read, and
/// a failure while reading leaves what came before it.
pub async fn read_prefix(response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    let mut pieces = std::pin::pin!(response.bytes_stream());
    while let Some(Ok(piece)) = pieces.next().await {
        let room = limit - body.len();
        body.extend_from_slice(&piece[..piece.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Forbidden;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A listener on 127.0.0.1 that answers every request with `body`, counting connections.
    async fn listener(body: &'static [u8]) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn loopback_by_any_spelling_is_refused_before_a_connection() {
        let (port, accepted) = listener(b"secret").await;
        let client = EgressClient::new(EgressAllowlist::none()).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("https://[::ffff:127.0.0.1]:{port}/"),
            format!("https://127.1:{port}/"),
        ] {
            let refused = client.get(&url).unwrap_err();
            assert!(matches!(refused, EgressError::Forbidden { class: Forbidden::Loopback, .. }), "{url}: {refused}");
        }
        // A name: refused by the resolver at connect time.
        let error = client.get(&format!("https://localhost:{port}/")).unwrap().send().await.unwrap_err();
        assert!(
            matches!(
                egress_error_of(&error),
                Some(EgressError::ForbiddenResolution { class: Forbidden::Loopback, .. })
            ),
            "{error:?}"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the listener");
    }

    #[tokio::test]
    async fn an_allowed_destination_is_reached_and_bodies_are_capped() {
        let (port, accepted) = listener(b"0123456789").await;
        let client = EgressClient::new(EgressAllowlist::parse("127.0.0.1/32").unwrap()).unwrap();
        let response = client.get(&format!("http://127.0.0.1:{port}/")).unwrap().send().await.unwrap();
        assert_eq!(read_capped(response, 10).await.unwrap(), Bytes::from_static(b"0123456789"));
        let response = client.get(&format!("http://127.0.0.1:{port}/")).unwrap().send().await.unwrap();
        assert_eq!(read_capped(response, 9).await, Err(EgressError::TooLarge { limit: 9 }));
        let response = client.get(&format!("http://127.0.0.1:{port}/")).unwrap().send().await.unwrap();
        assert_eq!(read_prefix(response, 4).await, Bytes::from_static(b"0123"));
        // Allowed by name on its port: resolves to loopback all the same.
        let by_name = EgressClient::new(EgressAllowlist::parse(&format!("localhost:{port}")).unwrap()).unwrap();
        let response = by_name.get(&format!("http://localhost:{port}/")).unwrap().send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn websocket_connections_are_checked_too() {
        let (port, accepted) = listener(b"").await;
        let none = EgressAllowlist::none();
        for url in [
            format!("ws://127.0.0.1:{port}/"),
            format!("wss://[::ffff:127.0.0.1]:{port}/"),
            format!("wss://localhost:{port}/"),
        ] {
            let url = url::Url::parse(&url).unwrap();
            let refused = connect_websocket_tcp(&none, &url).await.unwrap_err();
            assert!(refused.is_refusal(), "{url}: {refused}");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
        let allow = EgressAllowlist::parse("localhost").unwrap();
        let url = url::Url::parse(&format!("ws://localhost:{port}/")).unwrap();
        assert!(connect_websocket_tcp(&allow, &url).await.is_ok());
    }
}
