//! Agents: created, replaced and deleted with optimistic concurrency (versions), validated
//! against the domain's rules, the org's quotas and the operator's egress policy.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::agent::AgentConfig;
use golos_domain::AgentId;
use golos_ports::{AgentRecord, Org, Page, PageRequest, PortError};

/// The org's quotas, the operator's egress exceptions for the agent's URLs, and the
/// credentials it names.
async fn check(state: &ControlState, org: &Org, config: &AgentConfig) -> ControlResult<()> {
    config.validate_for(&org.quotas, &state.config.egress).map_err(ControlError::Validation)?;
    crate::credentials::check_agent_credentials(state, &org.id, config).await
}

pub async fn create(
    state: &ControlState,
    actor: &Actor,
    org: &Org,
    config: &AgentConfig,
) -> ControlResult<AgentRecord> {
    check(state, org, config).await?;
    let id = AgentId::with_suffix(&state.ids.new_suffix()).map_err(ControlError::internal)?;
    let agent =
        state.stores.agents.create(&org.id, &id, config, org.quotas.max_agents, state.clock.now()).await.map_err(
            |e| match e {
                PortError::QuotaExceeded { limit, .. } => ControlError::forbidden(
                    "max_agents_reached",
                    format!("the organisation already has its maximum of {limit} agents"),
                ),
                other => other.into(),
            },
        )?;
    audit::record(state, actor, &org.id, "agent.create", id.as_str()).await;
    Ok(agent)
}

pub async fn list(state: &ControlState, org: &Org, page: &PageRequest) -> ControlResult<Page<AgentRecord>> {
    Ok(state.stores.agents.list(&org.id, page).await?)
}

pub async fn get(state: &ControlState, org: &Org, id: &AgentId) -> ControlResult<AgentRecord> {
    state.stores.agents.get(&org.id, id).await?.ok_or_else(|| ControlError::not_found(format!("agent {id}")))
}

/// Replaces the configuration of version `expected` (`Conflict` if it moved on).
pub async fn update(
    state: &ControlState,
    actor: &Actor,
    org: &Org,
    id: &AgentId,
    config: &AgentConfig,
    expected: u64,
) -> ControlResult<AgentRecord> {
    check(state, org, config).await?;
    let agent = state.stores.agents.update(&org.id, id, config, expected, state.clock.now()).await?;
    audit::record(state, actor, &org.id, "agent.update", id.as_str()).await;
    Ok(agent)
}

pub async fn delete(
    state: &ControlState,
    actor: &Actor,
    org: &Org,
    id: &AgentId,
    expected: Option<u64>,
) -> ControlResult<()> {
    state.stores.agents.delete(&org.id, id, expected).await?;
    audit::record(state, actor, &org.id, "agent.delete", id.as_str()).await;
    Ok(())
}
