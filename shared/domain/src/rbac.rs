//! Roles and what they may do, as data: one table, one lookup. The API checks every route
//! against it, and tests walk the whole table.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Editor,
    Viewer,
}

impl Role {
    pub const ALL: [Self; 3] = [Self::Admin, Self::Editor, Self::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
        }
    }
}

impl FromStr for Role {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| DomainError::Unknown { kind: "role", value: s.to_owned() })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ReadOrg,
    UpdateOrgSettings,
    ManageApiKeys,
    ReadApiKeys,
    ReadAgents,
    WriteAgents,
    DeleteAgents,
    ConfigureTools,
    ReadNumbers,
    ManageNumbers,
    ReadCalls,
    PlaceCalls,
    ReadUsage,
    ReadBilling,
    ReadAuditLog,
    ManageWebhooks,
    ReadWebhooks,
    RedriveDeadLetters,
    EraseData,
    ManageProviderCredentials,
    ReadProviderCredentials,
    ReadSipTrunks,
}

impl Action {
    pub const ALL: [Self; 22] = [
        Self::ReadOrg,
        Self::UpdateOrgSettings,
        Self::ManageApiKeys,
        Self::ReadApiKeys,
        Self::ReadAgents,
        Self::WriteAgents,
        Self::DeleteAgents,
        Self::ConfigureTools,
        Self::ReadNumbers,
        Self::ManageNumbers,
        Self::ReadCalls,
        Self::PlaceCalls,
        Self::ReadUsage,
        Self::ReadBilling,
        Self::ReadAuditLog,
        Self::ManageWebhooks,
        Self::ReadWebhooks,
        Self::RedriveDeadLetters,
        Self::EraseData,
        Self::ManageProviderCredentials,
        Self::ReadProviderCredentials,
        Self::ReadSipTrunks,
    ];
}

/// The permission matrix of the reviews: admin does everything (keys, users, billing, audit);
/// editor builds agents and their tools and runs calls; viewer reads the dashboard.
pub const MATRIX: &[(Action, [bool; 3])] = &[
    //                                  admin  editor viewer
    (Action::ReadOrg, [true, true, true]),
    (Action::UpdateOrgSettings, [true, false, false]),
    (Action::ManageApiKeys, [true, false, false]),
    (Action::ReadApiKeys, [true, false, false]),
    (Action::ReadAgents, [true, true, true]),
    (Action::WriteAgents, [true, true, false]),
    (Action::DeleteAgents, [true, true, false]),
    (Action::ConfigureTools, [true, true, false]),
    (Action::ReadNumbers, [true, true, true]),
    (Action::ManageNumbers, [true, false, false]),
    (Action::ReadCalls, [true, true, true]),
    (Action::PlaceCalls, [true, true, false]),
    (Action::ReadUsage, [true, true, true]),
    (Action::ReadBilling, [true, false, false]),
    (Action::ReadAuditLog, [true, false, false]),
    (Action::ManageWebhooks, [true, false, false]),
    (Action::ReadWebhooks, [true, true, false]),
    (Action::RedriveDeadLetters, [true, false, false]),
    (Action::EraseData, [true, false, false]),
    // Editors build agents, so they set the provider keys those agents use; the values are
    // write-only, so this shows nobody a secret.
    (Action::ManageProviderCredentials, [true, true, false]),
    (Action::ReadProviderCredentials, [true, true, false]),
    // Trunks are the operator's to write; an org's admins see which trunks bring its calls.
    (Action::ReadSipTrunks, [true, false, false]),
];

/// Whether `role` may perform `action`. Anything missing from the matrix is denied.
pub fn can(role: Role, action: Action) -> bool {
    let column = match role {
        Role::Admin => 0,
        Role::Editor => 1,
        Role::Viewer => 2,
    };
    MATRIX.iter().find(|(a, _)| *a == action).is_some_and(|(_, allowed)| allowed[column])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_covers_every_action_once() {
        for action in Action::ALL {
            assert_eq!(MATRIX.iter().filter(|(a, _)| *a == action).count(), 1, "{action:?}");
        }
        assert_eq!(MATRIX.len(), Action::ALL.len());
    }

    #[test]
    fn roles_are_nested() {
        // Whatever a viewer may do an editor may, and whatever an editor may an admin may.
        for action in Action::ALL {
            assert!(!can(Role::Viewer, action) || can(Role::Editor, action), "{action:?}");
            assert!(!can(Role::Editor, action) || can(Role::Admin, action), "{action:?}");
            assert!(can(Role::Admin, action));
        }
        assert!(!can(Role::Editor, Action::ReadBilling));
        assert!(!can(Role::Viewer, Action::WriteAgents));
        assert!(can(Role::Editor, Action::ConfigureTools));
    }
}
