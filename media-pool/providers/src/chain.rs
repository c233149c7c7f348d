//! Fallback chains (DESIGN.md §4). A turn goes to the first tier whose breaker lets it
//! through; the chain switches to the next tier on any error before the first output (429
//! and 5xx at once, no retry) and when no first output arrives by the first-output deadline.
//! Once the first output is handed to the caller the turn belongs to that tier: a later
//! failure surfaces as the stream's error, since the caller may already have played it.
//! When every tier fails the chain says so with every attempt, for the caller's apology.

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use crate::llm::{LlmEvent, LlmProvider, LlmRequest};
use crate::stt::{SttConfig, SttProvider, SttSession};
use crate::tts::{AudioChunk, TtsProvider, TtsRequest};
use crate::ProviderError;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    /// No first token (LLM), first audio (TTS) or open session (STT) by then: next tier.
    pub first_output_deadline: Duration,
    /// The whole turn, first output to last, across tiers.
    pub total_timeout: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self { first_output_deadline: Duration::from_millis(1_500), total_timeout: Duration::from_secs(30) }
    }
}

/// The breakers of a process, one per provider key, shared by every chain that uses the
/// provider so that one call's failures protect the others.
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    config: BreakerConfig,
    by_key: Arc<Mutex<HashMap<String, SharedBreaker>>>,
}

pub type SharedBreaker = Arc<Mutex<CircuitBreaker>>;

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, by_key: Arc::default() }
    }

    pub fn get(&self, key: &str) -> SharedBreaker {
        let mut map = self.by_key.lock().expect("breaker map");
        map.entry(key.to_owned()).or_insert_with(|| Arc::new(Mutex::new(CircuitBreaker::new(self.config)))).clone()
    }
}

struct Tier<P: ?Sized> {
    provider: Arc<P>,
    breaker: SharedBreaker,
}

impl<P: ?Sized + fmt::Debug> fmt::Debug for Tier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.breaker.lock().map(|b| b.state());
        f.debug_struct("Tier").field("provider", &self.provider).field("breaker", &state).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The tier's breaker is open; nothing was sent.
    BreakerOpen,
    Failed(ProviderError),
}

/// A tier that did not serve the turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider: String,
    pub outcome: AttemptOutcome,
    /// From the start of the turn to the end of this attempt.
    pub after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("every provider of the chain failed: {}", describe(attempts))]
pub struct Exhausted {
    pub attempts: Vec<Attempt>,
}

fn describe(attempts: &[Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| match &a.outcome {
            AttemptOutcome::BreakerOpen => format!("{}: circuit open", a.provider),
            AttemptOutcome::Failed(e) => format!("{}: {e}", a.provider),
        })
        .collect();
    if parts.is_empty() {
        "the chain has no tiers".into()
    } else {
        parts.join("; ")
    }
}

/// A chain of tiers of one port: `Chain<dyn LlmProvider>`, `Chain<dyn TtsProvider>`,
/// `Chain<dyn SttProvider>`.
pub struct Chain<P: ?Sized> {
    tiers: Vec<Tier<P>>,
    config: ChainConfig,
}

pub type LlmChain = Chain<dyn LlmProvider>;
pub type TtsChain = Chain<dyn TtsProvider>;
pub type SttChain = Chain<dyn SttProvider>;

impl<P: ?Sized + fmt::Debug> fmt::Debug for Chain<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain").field("tiers", &self.tiers).field("config", &self.config).finish()
    }
}

impl<P: ?Sized> Chain<P> {
    pub fn new(config: ChainConfig) -> Self {
        Self { tiers: Vec::new(), config }
    }

    /// Adds a tier behind the existing ones, guarded by `breaker`.
    pub fn push(&mut self, provider: Arc<P>, breaker: SharedBreaker) {
        self.tiers.push(Tier { provider, breaker });
    }

    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    pub fn config(&self) -> ChainConfig {
        self.config
    }
}

/// A committed stream: the first output came from `provider`; the rest follows from it, cut
/// by the turn's total timeout.
pub struct Chained<T> {
    pub provider: String,
    /// Index of the serving tier in the chain.
    pub tier: usize,
    /// The tiers tried before, with why they did not serve.
    pub attempts: Vec<Attempt>,
    inner: BoxStream<'static, Result<T, ProviderError>>,
}

impl<T> fmt::Debug for Chained<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chained")
            .field("provider", &self.provider)
            .field("tier", &self.tier)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<T> Stream for Chained<T> {
    type Item = Result<T, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

pub type ChainedLlm = Chained<LlmEvent>;
pub type ChainedAudio = Chained<AudioChunk>;

type Started<'a, T> = BoxFuture<'a, Result<BoxStream<'static, Result<T, ProviderError>>, ProviderError>>;

impl<P: ?Sized + Named + Send + Sync> Chain<P> {
    async fn run<'a, T: Send + 'static>(
        &'a self,
        what: &'static str,
        start: impl Fn(Arc<P>) -> Started<'a, T>,
    ) -> Result<Chained<T>, Exhausted> {
        let started = Instant::now();
        let total_deadline = started + self.config.total_timeout;
        let mut attempts = Vec::new();
        for (index, tier) in self.tiers.iter().enumerate() {
            let provider = tier.provider.provider_name().to_owned();
            if !tier.breaker.lock().expect("breaker").try_acquire(Instant::now().into_std()) {
                attempts.push(Attempt { provider, outcome: AttemptOutcome::BreakerOpen, after: started.elapsed() });
                continue;
            }
            let deadline = (Instant::now() + self.config.first_output_deadline).min(total_deadline);
            let first = tokio::time::timeout_at(deadline, async {
                let mut stream = start(tier.provider.clone()).await?;
                match stream.next().await {
                    Some(Ok(item)) => Ok((item, stream)),
                    Some(Err(e)) => Err(e),
                    None => Err(ProviderError::BadResponse(format!("the stream ended before the first {what}"))),
                }
            })
            .await
            .unwrap_or_else(|_| {
                let ms = self.config.first_output_deadline.as_millis();
                Err(ProviderError::Timeout(format!("no first {what} within {ms} ms")))
            });
            match first {
                Ok((item, rest)) => {
                    tier.breaker.lock().expect("breaker").on_success(Instant::now().into_std());
                    let inner = committed(item, rest, total_deadline, tier.breaker.clone());
                    return Ok(Chained { provider, tier: index, attempts, inner });
                }
                Err(error) => {
                    record_failure(&tier.breaker, &error);
                    tracing::warn!(provider = %provider, %error, "provider failed before its first {what}; trying the next tier");
                    attempts.push(Attempt {
                        provider,
                        outcome: AttemptOutcome::Failed(error),
                        after: started.elapsed(),
                    });
                }
            }
        }
        Err(Exhausted { attempts })
    }
}

impl<P: ?Sized + Named + Send + Sync> Chain<P> {
    /// Probes every tier whose breaker is not closed and lets a probe through now, one
    /// request each, up to its first output. Returns what each probe found.
    async fn probe_with<'a, T: Send + 'static>(
        &'a self,
        start: impl Fn(Arc<P>) -> Started<'a, T>,
    ) -> Vec<(String, Result<(), ProviderError>)> {
        let mut found = Vec::new();
        for tier in &self.tiers {
            let permitted = {
                let mut breaker = tier.breaker.lock().expect("breaker");
                !matches!(breaker.state(), BreakerState::Closed { .. })
                    && breaker.try_acquire(Instant::now().into_std())
            };
            if !permitted {
                continue;
            }
            let deadline = Instant::now() + self.config.first_output_deadline;
            let outcome = tokio::time::timeout_at(deadline, async {
                match start(tier.provider.clone()).await?.next().await {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e),
                    None => Err(ProviderError::BadResponse("the probe's stream ended empty".into())),
                }
            })
            .await
            .unwrap_or_else(|_| Err(ProviderError::Timeout("the probe had no first output in time".into())));
            match &outcome {
                Ok(()) => tier.breaker.lock().expect("breaker").on_success(Instant::now().into_std()),
                Err(error) => record_failure(&tier.breaker, error),
            }
            found.push((tier.provider.provider_name().to_owned(), outcome));
        }
        found
    }
}

fn record_failure(breaker: &SharedBreaker, error: &ProviderError) {
    let mut breaker = breaker.lock().expect("breaker");
    if error.counts_against_provider() {
        breaker.on_failure(Instant::now().into_std());
    } else {
        breaker.on_abandoned();
    }
}

/// The first item, then the rest until the first error or the total deadline.
fn committed<T: Send + 'static>(
    first: T,
    rest: BoxStream<'static, Result<T, ProviderError>>,
    deadline: Instant,
    breaker: SharedBreaker,
) -> BoxStream<'static, Result<T, ProviderError>> {
    let tail = futures::stream::unfold(Some(rest), move |state| {
        let breaker = breaker.clone();
        async move {
            let mut rest = state?;
            match tokio::time::timeout_at(deadline, rest.next()).await {
                Ok(Some(Ok(item))) => Some((Ok(item), Some(rest))),
                Ok(None) => None,
                Ok(Some(Err(error))) => {
                    record_failure(&breaker, &error);
                    Some((Err(error), None))
                }
                Err(_) => {
                    let error = ProviderError::Timeout("the turn's total timeout passed".into());
                    record_failure(&breaker, &error);
                    Some((Err(error), None))
                }
            }
        }
    });
    futures::stream::once(async move { Ok(first) }).chain(tail).boxed()
}

/// The name of a tier's provider, whatever its port.
pub trait Named {
    fn provider_name(&self) -> &str;
}

impl Named for dyn LlmProvider {
    fn provider_name(&self) -> &str {
        self.name()
    }
}

impl Named for dyn TtsProvider {
    fn provider_name(&self) -> &str {
        self.name()
    }
}

impl Named for dyn SttProvider {
    fn provider_name(&self) -> &str {
        self.name()
    }
}

impl Chain<dyn LlmProvider> {
    /// Streams a completion from the first tier that produces a first event in time.
    pub async fn stream(&self, request: &LlmRequest) -> Result<ChainedLlm, Exhausted> {
        self.run("token", |provider| async move { provider.stream(request).await }.boxed()).await
    }

    /// The background probe of DESIGN.md §4: sends `request` (keep it tiny, `max_tokens` 1)
    /// to each tier whose breaker waits for a half-open probe, so a recovered provider is
    /// found without a caller's turn paying for the try. The worker runs it on a timer.
    pub async fn probe(&self, request: &LlmRequest) -> Vec<(String, Result<(), ProviderError>)> {
        self.probe_with(|provider| async move { provider.stream(request).await }.boxed()).await
    }
}

impl Chain<dyn TtsProvider> {
    /// Synthesizes with the first tier that produces audio in time.
    pub async fn synthesize(&self, request: &TtsRequest) -> Result<ChainedAudio, Exhausted> {
        self.run("audio", |provider| async move { provider.synthesize(request).await }.boxed()).await
    }

    /// As [`LlmChain::probe`], with a short sentence.
    pub async fn probe(&self, request: &TtsRequest) -> Vec<(String, Result<(), ProviderError>)> {
        self.probe_with(|provider| async move { provider.synthesize(request).await }.boxed()).await
    }
}

impl Chain<dyn SttProvider> {
    /// Opens a session with the first tier that accepts one within the deadline. A session
    /// that fails later is the caller's to reopen through the chain.
    pub async fn open(&self, config: &SttConfig) -> Result<(SttSession, Vec<Attempt>), Exhausted> {
        let opened = self
            .run("session", |provider| {
                async move {
                    let session = provider.open(config).await?;
                    Ok(futures::stream::once(async move { Ok(session) }).boxed())
                }
                .boxed()
            })
            .await?;
        let attempts = opened.attempts.clone();
        let mut inner = opened.inner;
        let session = inner.next().await.expect("the first item is the session").expect("the first item is Ok");
        Ok((session, attempts))
    }
}

#[cfg(test)]
mod tests {
    //! The switching rules, with a test-only provider whose timing is scripted on tokio's
    //! paused clock. End-to-end chains over real adapters are in tests/chains.rs.

    use super::*;
    use crate::llm::FinishReason;
    use async_trait::async_trait;

    #[derive(Debug, Clone)]
    enum Script {
        Fail(ProviderError),
        /// Waits, then streams the tokens, failing after them if asked.
        Answer {
            delay: Duration,
            tokens: Vec<&'static str>,
            then_fail: Option<ProviderError>,
        },
    }

    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        script: Script,
        calls: Mutex<u32>,
    }

    fn scripted(name: &'static str, script: Script) -> Arc<Scripted> {
        Arc::new(Scripted { name, script, calls: Mutex::new(0) })
    }

    #[async_trait]
    impl LlmProvider for Scripted {
        fn name(&self) -> &str {
            self.name
        }

        async fn stream(&self, _request: &LlmRequest) -> Result<crate::LlmStream, ProviderError> {
            *self.calls.lock().unwrap() += 1;
            match self.script.clone() {
                Script::Fail(e) => Err(e),
                Script::Answer { delay, tokens, then_fail } => {
                    tokio::time::sleep(delay).await;
                    let mut items: Vec<Result<LlmEvent, ProviderError>> =
                        tokens.into_iter().map(|t| Ok(LlmEvent::TextDelta(t.into()))).collect();
                    items.push(then_fail.map_or(Ok(LlmEvent::End(FinishReason::Stop)), Err));
                    Ok(futures::stream::iter(items).boxed())
                }
            }
        }
    }

    fn chain(providers: &[Arc<Scripted>], breakers: &Breakers) -> LlmChain {
        let mut chain = LlmChain::new(ChainConfig::default());
        for p in providers {
            chain.push(p.clone() as Arc<dyn LlmProvider>, breakers.get(p.name));
        }
        chain
    }

    fn request() -> LlmRequest {
        LlmRequest::new(vec![crate::Message::User("hi".into())])
    }

    async fn text_of(mut stream: ChainedLlm) -> (String, Option<ProviderError>) {
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(LlmEvent::TextDelta(t)) => text.push_str(&t),
                Ok(_) => {}
                Err(e) => return (text, Some(e)),
            }
        }
        (text, None)
    }

    fn answer(delay_ms: u64, tokens: Vec<&'static str>) -> Script {
        Script::Answer { delay: Duration::from_millis(delay_ms), tokens, then_fail: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_primary_switches_at_once() {
        let primary = scripted("primary", Script::Fail(ProviderError::RateLimited { retry_after: None }));
        let secondary = scripted("secondary", answer(0, vec!["hello"]));
        let started = Instant::now();
        let stream = chain(&[primary.clone(), secondary], &Breakers::default()).stream(&request()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!((stream.provider.as_str(), stream.tier), ("secondary", 1));
        assert_eq!(
            stream.attempts[0].outcome,
            AttemptOutcome::Failed(ProviderError::RateLimited { retry_after: None })
        );
        assert_eq!(text_of(stream).await, ("hello".into(), None));
        assert_eq!(*primary.calls.lock().unwrap(), 1, "no retry of a 429");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_primary_is_abandoned_exactly_at_the_first_token_deadline() {
        let primary = scripted("primary", answer(5_000, vec!["late"]));
        let secondary = scripted("secondary", answer(200, vec!["quick"]));
        let started = Instant::now();
        let stream = chain(&[primary, secondary], &Breakers::default()).stream(&request()).await.unwrap();
        assert_eq!(stream.attempts[0].after, Duration::from_millis(1_500));
        assert_eq!(started.elapsed(), Duration::from_millis(1_700));
        assert_eq!(text_of(stream).await.0, "quick");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_after_the_first_token_surfaces_without_a_switch() {
        let server_error = ProviderError::Server { status: 500, message: "boom".into() };
        let primary = scripted(
            "primary",
            Script::Answer { delay: Duration::ZERO, tokens: vec!["Hel"], then_fail: Some(server_error.clone()) },
        );
        let secondary = scripted("secondary", answer(0, vec!["never"]));
        let stream = chain(&[primary, secondary.clone()], &Breakers::default()).stream(&request()).await.unwrap();
        assert_eq!(text_of(stream).await, ("Hel".into(), Some(server_error)));
        assert_eq!(*secondary.calls.lock().unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_tier_failing_reports_exhaustion_with_each_reason() {
        let a = scripted("a", Script::Fail(ProviderError::Server { status: 503, message: String::new() }));
        let b = scripted("b", answer(10_000, vec![]));
        let exhausted = chain(&[a, b], &Breakers::default()).stream(&request()).await.unwrap_err();
        let names: Vec<&str> = exhausted.attempts.iter().map(|a| a.provider.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(exhausted.attempts[1].outcome, AttemptOutcome::Failed(ProviderError::Timeout(_))));
        assert_eq!(exhausted.attempts[1].after, Duration::from_millis(1_500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_skips_the_tier_until_its_half_open_probe() {
        let breakers = Breakers::default();
        let flaky = scripted("flaky", Script::Fail(ProviderError::Server { status: 500, message: String::new() }));
        let backup = scripted("backup", answer(0, vec!["ok"]));
        let chain = chain(&[flaky.clone(), backup], &breakers);
        for _ in 0..5 {
            chain.stream(&request()).await.unwrap();
        }
        assert_eq!(*flaky.calls.lock().unwrap(), 5);
        let stream = chain.stream(&request()).await.unwrap();
        assert_eq!(stream.attempts[0].outcome, AttemptOutcome::BreakerOpen);
        assert_eq!(*flaky.calls.lock().unwrap(), 5, "not called while open");
        tokio::time::advance(Duration::from_secs(30)).await;
        chain.stream(&request()).await.unwrap();
        assert_eq!(*flaky.calls.lock().unwrap(), 6, "the half-open probe");
    }

    #[tokio::test(start_paused = true)]
    async fn background_probes_close_a_recovered_breaker_without_a_callers_turn() {
        let breakers = Breakers::default();
        let failing = scripted("down", Script::Fail(ProviderError::Server { status: 500, message: String::new() }));
        let backup = scripted("backup", answer(0, vec!["ok"]));
        let down = chain(&[failing.clone(), backup.clone()], &breakers);
        for _ in 0..5 {
            down.stream(&request()).await.unwrap();
        }
        assert!(down.probe(&request()).await.is_empty(), "nothing is due before 30 s");
        tokio::time::advance(Duration::from_secs(30)).await;
        let probed = down.probe(&request()).await;
        assert_eq!(probed.len(), 1, "only the open tier");
        assert!(probed[0].1.is_err());
        assert!(matches!(breakers.get("down").lock().unwrap().state(), BreakerState::Open { .. }));

        // The same provider key, now answering: three probes close the breaker.
        let recovered = scripted("down", answer(10, vec!["back"]));
        let up = chain(&[recovered.clone(), backup], &breakers);
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..3 {
            assert!(up.probe(&request()).await[0].1.is_ok());
        }
        assert_eq!(breakers.get("down").lock().unwrap().state(), BreakerState::Closed { consecutive_failures: 0 });
        assert!(up.probe(&request()).await.is_empty());
        assert_eq!(*recovered.calls.lock().unwrap(), 3);
        assert_eq!(up.stream(&request()).await.unwrap().provider, "down");
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_timeout_cuts_a_committed_stream() {
        #[derive(Debug)]
        struct Stalls;
        #[async_trait]
        impl LlmProvider for Stalls {
            fn name(&self) -> &'static str {
                "stalls"
            }
            async fn stream(&self, _request: &LlmRequest) -> Result<crate::LlmStream, ProviderError> {
                let first = futures::stream::once(async { Ok(LlmEvent::TextDelta("a".into())) });
                Ok(first.chain(futures::stream::pending()).boxed())
            }
        }
        let mut chain = LlmChain::new(ChainConfig::default());
        chain.push(Arc::new(Stalls), Breakers::default().get("stalls"));
        let started = Instant::now();
        let (text, error) = text_of(chain.stream(&request()).await.unwrap()).await;
        assert_eq!(text, "a");
        assert!(matches!(error, Some(ProviderError::Timeout(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
