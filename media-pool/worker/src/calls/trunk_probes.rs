//! The SIP edge's health checks: every `probe_every`, an OPTIONS to each enabled trunk that
//! has a `sip_address`, all at once, each outcome fed to the trunk's breaker in
//! [`crate::trunk_health::TrunkHealth`] (which the INVITE path asks before routing a call).
//! The trunks are read from the store each round, so a trunk added, changed or disabled
//! through the API is probed (or forgotten) from the next round on, without a restart.

use super::LiveCalls;
use crate::trunk_health::BreakerChange;
use golos_domain::trunks::SourceNetwork;
use golos_domain::TrunkId;
use golos_sip::{SipEndpoint, MAX_PROBE_TIMEOUT};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

impl LiveCalls {
    /// Runs until the endpoint is shut down.
    pub(super) async fn probe_trunks(self, endpoint: Arc<SipEndpoint>) {
        let health = Arc::clone(&self.worker.trunk_health);
        let every = health.config().probe_every;
        // A check unanswered by the next one is a timeout (and never later than the stack's
        // own transaction timeout).
        let timeout = every.min(MAX_PROBE_TIMEOUT);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if endpoint.is_stopped() {
                return;
            }
            let trunks = match self.state.stores.trunks.all().await {
                Ok(trunks) => trunks,
                Err(error) => {
                    // The breakers keep their state: a store outage says nothing of the trunks.
                    tracing::warn!(%error, "the trunks could not be read for their health checks");
                    continue;
                }
            };
            let networks: Vec<(TrunkId, Vec<String>)> =
                trunks.iter().map(|t| (t.id.clone(), t.source_networks.clone())).collect();
            let probed: Vec<(TrunkId, String)> =
                trunks.into_iter().filter(|t| t.enabled).filter_map(|t| Some((t.id, t.sip_address?))).collect();
            health.retain(&probed.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>());
            let mut checks = JoinSet::new();
            for (trunk, address) in probed {
                let endpoint = Arc::clone(&endpoint);
                checks.spawn(async move {
                    let outcome = endpoint.probe(&address, timeout).await;
                    (trunk, outcome, Instant::now())
                });
            }
            while let Some(done) = checks.join_next().await {
                let Ok((trunk, outcome, at)) = done else { continue };
                if endpoint.is_stopped() {
                    return;
                }
                tracing::debug!(%trunk, ?outcome, "trunk health check");
                match health.record_probe(&trunk, outcome, at) {
                    Some(BreakerChange::Opened) => tracing::warn!(
                        %trunk, ?outcome, alert = "sip_trunk_breaker_open",
                        "the trunk keeps failing its health checks: its circuit breaker opened and its new calls are refused 503"
                    ),
                    Some(BreakerChange::Closed) => {
                        tracing::info!(%trunk, "the trunk passes its health checks again: its circuit breaker closed");
                    }
                    None => {}
                }
            }
            // A trunk we refuse calls from hears so in its own health checks too.
            let now = Instant::now();
            let unavailable = networks
                .iter()
                .filter(|(trunk, _)| !health.admits(trunk, now))
                .flat_map(|(_, networks)| networks.iter().filter_map(|n| SourceNetwork::parse(n).ok()))
                .collect();
            endpoint.set_unavailable_trunks(unavailable);
        }
    }
}
