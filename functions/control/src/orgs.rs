//! Organisations: created by the operator; read by members; settings by admins.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::plans::{Plan, Quotas};
use golos_domain::OrgId;
use golos_ports::{Org, Page, PageRequest, PortError};

/// How many times an update without an expected version re-reads and re-applies its fields
/// when another edit wins the race; each round is one conditional write, so edits never
/// undo each other.
const UPDATE_ATTEMPTS: usize = 20;

/// A new organisation; what is left out comes from the plan (default `start`).
#[derive(Debug, Clone, Default)]
pub struct NewOrg {
    pub name: String,
    pub plan: Option<Plan>,
    pub quotas: Option<Quotas>,
    pub settings: Option<serde_json::Value>,
}

/// The fields an update changes; `None` leaves a field as it is. Plan, quotas and the
/// disabled flag are the operator's (the HTTP layer checks who may send them).
#[derive(Debug, Clone, Default)]
pub struct OrgChanges {
    pub name: Option<String>,
    pub plan: Option<Plan>,
    pub quotas: Option<Quotas>,
    pub disabled: Option<bool>,
    pub settings: Option<serde_json::Value>,
}

fn check_name(name: &str) -> ControlResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ControlError::invalid("invalid_name", "name must be 1-200 characters"));
    }
    Ok(())
}

fn check_quotas(quotas: &Quotas) -> ControlResult<()> {
    quotas.validate().map_err(|e| ControlError::invalid("invalid_quotas", e.to_string()))
}

fn check_settings(settings: &serde_json::Value) -> ControlResult<()> {
    if !settings.is_object() || settings.to_string().len() > 16 * 1024 {
        return Err(ControlError::invalid("invalid_settings", "settings must be a JSON object under 16 KiB"));
    }
    crate::retention::validate(settings).map_err(|reason| ControlError::invalid("invalid_settings", reason))
}

pub async fn create(state: &ControlState, actor: &Actor, new: NewOrg) -> ControlResult<Org> {
    check_name(&new.name)?;
    let plan = new.plan.unwrap_or(Plan::Start);
    let quotas = new.quotas.unwrap_or_else(|| plan.default_quotas());
    check_quotas(&quotas)?;
    let settings = new.settings.unwrap_or_else(|| serde_json::json!({}));
    check_settings(&settings)?;
    let id = OrgId::with_suffix(&state.ids.new_suffix()).map_err(ControlError::internal)?;
    let org = Org {
        id: id.clone(),
        name: new.name,
        plan,
        quotas,
        settings,
        disabled: false,
        created_at: state.clock.now(),
        version: 1,
    };
    state.stores.orgs.create(&org).await?;
    audit::record(state, actor, &id, "org.create", id.as_str()).await;
    Ok(org)
}

pub async fn list(state: &ControlState, page: &PageRequest) -> ControlResult<Page<Org>> {
    Ok(state.stores.orgs.list(page).await?)
}

pub async fn get(state: &ControlState, id: &OrgId) -> ControlResult<Org> {
    state.stores.orgs.get(id).await?.ok_or_else(|| ControlError::not_found(format!("organisation {id}")))
}

/// Applies `changes`. With `expected` (the version the client read) only over that version
/// (`Conflict` otherwise); without it, over whatever is current, atomically, so a
/// concurrent edit (an operator's disable, say) is never undone.
pub async fn update(
    state: &ControlState,
    actor: &Actor,
    id: &OrgId,
    changes: &OrgChanges,
    expected: Option<u64>,
) -> ControlResult<Org> {
    for _ in 0..UPDATE_ATTEMPTS {
        let mut org = get(state, id).await?;
        if let Some(expected) = expected {
            if expected != org.version {
                return Err(PortError::Conflict { expected, actual: org.version }.into());
            }
        }
        apply(&mut org, changes)?;
        match state.stores.orgs.update(&org).await {
            Ok(version) => {
                org.version = version;
                audit::record(state, actor, id, "org.update", id.as_str()).await;
                return Ok(org);
            }
            Err(conflict @ PortError::Conflict { .. }) if expected.is_some() => return Err(conflict.into()),
            Err(PortError::Conflict { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Err(ControlError::conflict("concurrent_update", "the organisation kept changing; retry"))
}

fn apply(org: &mut Org, changes: &OrgChanges) -> ControlResult<()> {
    if let Some(name) = &changes.name {
        check_name(name)?;
        org.name.clone_from(name);
    }
    if let Some(plan) = changes.plan {
        org.plan = plan;
        if changes.quotas.is_none() {
            org.quotas = Quotas {
                monthly_minutes: plan.monthly_minutes(),
                rate_per_minute: plan.rate_per_minute(),
                ..org.quotas
            };
        }
    }
    if let Some(quotas) = changes.quotas {
        check_quotas(&quotas)?;
        org.quotas = quotas;
    }
    if let Some(disabled) = changes.disabled {
        org.disabled = disabled;
    }
    if let Some(settings) = &changes.settings {
        check_settings(settings)?;
        org.settings.clone_from(settings);
    }
    Ok(())
}
