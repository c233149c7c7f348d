//! Phone numbers: the operator grants a number to an org, the org's admins route it to an
//! agent, and the inbound routing lookup finds numbers both granted and routed.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::{AgentId, OrgId, PhoneNumber};
use golos_ports::{NumberAssignment, Page, PageRequest, PortError};

/// Not granted to this org. The same answer whether another org holds the number or nobody
/// does: which numbers other businesses hold is not a tenant's business.
fn not_granted(err: PortError) -> ControlError {
    match err {
        PortError::NotFound { .. } => ControlError::NotFound {
            code: "number_not_granted",
            detail: "this number is not granted to the organisation".into(),
        },
        other => other.into(),
    }
}

/// Grants `number` to `org` (which must exist). Granting it again to the same org changes
/// nothing; another org's number is `Conflict` `number_taken`.
pub async fn grant(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    number: &PhoneNumber,
) -> ControlResult<NumberAssignment> {
    if state.stores.orgs.get(org).await?.is_none() {
        return Err(ControlError::not_found(format!("organisation {org}")));
    }
    let granted = state.numbers.grant(org, number, state.clock.now()).await.map_err(|e| match e {
        PortError::AlreadyExists { .. } => {
            ControlError::conflict("number_taken", "this number is granted to another organisation")
        }
        other => other.into(),
    })?;
    audit::record(state, actor, org, "number.grant", &number.masked()).await;
    Ok(granted)
}

/// Takes the number back from `org`, and its routing with it.
pub async fn revoke(state: &ControlState, actor: &Actor, org: &OrgId, number: &PhoneNumber) -> ControlResult<()> {
    state.numbers.revoke(org, number).await.map_err(not_granted)?;
    audit::record(state, actor, org, "number.revoke", &number.masked()).await;
    Ok(())
}

/// Routes a number granted to `org` to one of its agents (again: to another agent).
pub async fn assign(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    number: &PhoneNumber,
    agent_id: &str,
) -> ControlResult<NumberAssignment> {
    let unknown = || ControlError::invalid("unknown_agent", "agent_id is not an agent of this organisation");
    let agent_id = AgentId::parse(agent_id).map_err(|_| unknown())?;
    if state.stores.agents.get(org, &agent_id).await?.is_none() {
        return Err(unknown());
    }
    let routed = state.numbers.assign(org, number, Some(&agent_id)).await.map_err(not_granted)?;
    audit::record(state, actor, org, "number.route", &number.masked()).await;
    Ok(routed)
}

pub async fn list(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<NumberAssignment>> {
    Ok(state.numbers.list(org, page).await?)
}

/// Un-routes a number: calls to it are no longer answered; the grant stays.
pub async fn release(state: &ControlState, actor: &Actor, org: &OrgId, number: &PhoneNumber) -> ControlResult<()> {
    state.numbers.assign(org, number, None).await.map_err(not_granted)?;
    audit::record(state, actor, org, "number.unroute", &number.masked()).await;
    Ok(())
}

/// Which org and agent answer calls to `number`: only a number both granted and routed.
pub async fn route(state: &ControlState, number: &PhoneNumber) -> ControlResult<NumberAssignment> {
    state.numbers.route(number).await?.ok_or_else(|| ControlError::not_found(format!("number {number}")))
}
