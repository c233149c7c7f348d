//! Starting an admitted call: its provider chains, `call.started`, the engine on a shard,
//! and the STT and heartbeat tasks.

use super::admission::Pending;
use super::finish::Finisher;
use super::sink::{SinkParts, WorkerSink};
use super::stt::run_stt;
use super::webhooks::{CallIdentity, CallWebhooks};
use super::{CallLink, CallReport, LiveCalls, STT_QUEUE};
use golos_call::CallConfig;
use golos_domain::agent::AgentConfig;
use golos_domain::events::{CallEvent, CallStarted};
use golos_domain::CallDirection;
use golos_domain::{OrgId, PhoneNumber};
use golos_providers::{build_chains, AgentChains};
use golos_shard::CallHandle;
use std::sync::Arc;
use tokio::sync::mpsc;

impl LiveCalls {
    /// The org's key for signing its function-tool requests (docs/api.md, "Function tools").
    pub(super) async fn tool_signer(&self, org: &OrgId) -> Option<golos_control::tool_signing::OrgSigningKey> {
        let platform = self
            .tool_signing
            .get_or_init(|| async {
                match self.state.secrets.get(golos_control::tool_signing::TOOL_SIGNING_SECRET).await {
                    Ok(secret) => Some(secret),
                    Err(error) => {
                        tracing::warn!(%error, "no tool-signing-key secret: function-tool requests go unsigned");
                        None
                    }
                }
            })
            .await;
        platform.as_ref().map(|secret| golos_control::tool_signing::OrgSigningKey::derive(secret, org))
    }

    /// The agent's chains with its org's credentials and, for tiers at a provider's default
    /// endpoint without one, the platform's keys. Agent settings never name a platform
    /// secret: credentials come only from the org's own store.
    pub(super) async fn chains_for(&self, org: &OrgId, agent: &AgentConfig) -> AgentChains {
        let mut ctx = self.providers.clone();
        ctx.credentials = golos_control::credentials::resolve(&self.state, org, &agent.credential_names()).await;
        for provider in golos_providers::platform_keys_needed(agent) {
            match self.state.secrets.get(&golos_providers::platform_key_secret(provider)).await {
                Ok(value) => {
                    ctx.platform_keys.insert(provider, value);
                }
                // No platform key: the tier is left out and reported by `build_chains`.
                Err(golos_ports::PortError::NotFound { .. }) => {}
                Err(error) => tracing::warn!(provider, %error, "a platform provider key could not be read"),
            }
        }
        build_chains(agent, &ctx).await
    }

    /// Starts an admitted call: chains, `call.started`, the engine on a shard, STT and
    /// heartbeat tasks. The call ends through its link.
    pub(super) async fn begin(self, pending: Pending, link: Arc<CallLink>, direction: CallDirection) {
        if link.reason().is_some() {
            // Hung up while we were admitting: free the slot we just took.
            self.leave(&pending.org_id, &link.call_id).await;
            return;
        }
        let chains = Arc::new(self.chains_for(&pending.org_id, &pending.agent).await);
        let tool_signer = self.tool_signer(&pending.org_id).await;
        let started_at = self.state.clock.now();
        let started = CallStarted {
            call_id: link.call_id.clone(),
            org_id: pending.org_id.clone(),
            agent_id: pending.agent_id.clone(),
            direction,
            from: pending.from.as_ref().map(PhoneNumber::expose_e164),
            to: pending.to.as_ref().map(PhoneNumber::expose_e164),
            started_at,
        };
        // In the background: the caller must not wait on the store, and the start is not what
        // bills the call (its end is; a late start never reopens an ended record).
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(error) = golos_control::call_events::publish(&state, &CallEvent::Started(started)).await {
                tracing::error!(%error, "call.started could not be serialised");
            }
        });

        let (stt_audio, stt_frames) = mpsc::channel(STT_QUEUE);
        let mut config = CallConfig::from_agent(&pending.agent);
        config.fill_variables(&call_variables(&pending));
        let config = Arc::new(config);
        let Pending { org_id, agent_id, agent, resume, metadata, from, to, registration } = pending;
        let webhooks = CallWebhooks::new(
            self.state.clone(),
            self.runtime.clone(),
            CallIdentity {
                call_id: link.call_id.clone(),
                org_id: org_id.clone(),
                agent_id: agent_id.clone(),
                direction,
                from: from.as_ref().map(PhoneNumber::expose_e164),
                to: to.as_ref().map(PhoneNumber::expose_e164),
            },
        );
        let resumed_from = resume.as_ref().map(|(previous, _)| previous.to_string());
        if let Some((previous, _)) = &resume {
            // One snapshot resumes one call: a second reconnect with the same id must not fork it.
            if let Err(error) = self.state.stores.contexts.delete(previous).await {
                tracing::warn!(%error, "could not delete a resumed call's snapshot");
            }
        }
        let finisher = Finisher {
            calls: self.clone(),
            org_id: org_id.clone(),
            agent_id: agent_id.clone(),
            direction,
            started_at,
            resumed_from,
            metadata,
            from,
            to,
            registration,
            link: Arc::clone(&link),
        };
        let on_closed: Box<dyn FnOnce(CallReport) + Send> = Box::new(move |report| {
            let runtime = finisher.calls.runtime.clone();
            runtime.spawn(finisher.finish(report));
        });
        let on_snapshot = self.snapshot_writer(&link.call_id, &org_id, &agent_id);
        let parts = |handle: CallHandle| SinkParts {
            handle,
            runtime: self.runtime.clone(),
            agent: Arc::clone(&agent),
            chains: Arc::clone(&chains),
            outputs: link.outputs.clone(),
            stt_audio,
            link: Arc::clone(&link),
            metrics: Arc::clone(&self.worker.call_metrics),
            http: self.providers.http.clone(),
            tool_signer,
            on_closed,
            on_snapshot,
            webhooks,
        };
        let handle = self.pool.add_call_with(config, resume.map(|(_, s)| s), |handle| {
            Box::new(WorkerSink::new(parts(handle))) as Box<dyn golos_shard::CallSink>
        });
        let _ = link.handle.set(handle.clone());
        link.started.send_replace(true);
        // A hangup that raced the start found no handle to tell.
        if link.reason().is_some() {
            handle.hangup();
        }
        tokio::spawn(run_stt(Arc::clone(&chains), Arc::clone(&agent), stt_frames, handle, link.outputs.clone()));
        tokio::spawn(self.heartbeat(org_id, Arc::clone(&link)));
    }
}

/// What an agent's prompt and greeting may name as `{{variable}}` (api.md, "Call variables"):
/// the client's `start.metadata` values (a phone call's are the INVITE's visible headers,
/// `sip_<header>`), and a phone call's numbers in E.164.
fn call_variables(pending: &Pending) -> std::collections::BTreeMap<String, String> {
    let mut variables: std::collections::BTreeMap<String, String> = pending
        .metadata
        .iter()
        .flatten()
        .filter_map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect();
    if let Some(from) = &pending.from {
        variables.insert("caller_number".to_owned(), from.expose_e164());
    }
    if let Some(to) = &pending.to {
        variables.insert("called_number".to_owned(), to.expose_e164());
    }
    variables
}
