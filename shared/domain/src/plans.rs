//! Plans and quota defaults. The numbers are the defaults of the design reviews
//! (`shared/seeds`): 50 agents, 100 concurrent calls per org and 10 per agent, 20 tools per
//! agent, 200 API requests/min per key and 1000/min per org.

use crate::{DomainError, Kopecks};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Trial,
    Start,
    Business,
    Enterprise,
}

impl Plan {
    pub const ALL: [Self; 4] = [Self::Trial, Self::Start, Self::Business, Self::Enterprise];

    /// Call minutes included per calendar month. The reviews leave the figures to the plan;
    /// these are golos's published defaults and an org can override them.
    pub const fn monthly_minutes(self) -> u64 {
        match self {
            Self::Trial => 100,
            Self::Start => 1_000,
            Self::Business => 10_000,
            Self::Enterprise => 100_000,
        }
    }

    /// Price of one started minute of a call.
    pub const fn rate_per_minute(self) -> Kopecks {
        Kopecks::new(match self {
            Self::Trial | Self::Start => 600,
            Self::Business => 450,
            Self::Enterprise => 300,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trial => "trial",
            Self::Start => "start",
            Self::Business => "business",
            Self::Enterprise => "enterprise",
        }
    }

    /// The quotas an organisation on this plan starts with.
    pub const fn default_quotas(self) -> Quotas {
        Quotas { monthly_minutes: self.monthly_minutes(), rate_per_minute: self.rate_per_minute(), ..Quotas::DEFAULT }
    }
}

impl FromStr for Plan {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| DomainError::Unknown { kind: "plan", value: s.to_owned() })
    }
}

/// Per-organisation limits. Stored with the org so an operator can raise them one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quotas {
    pub max_agents: u32,
    pub max_concurrent_calls: u32,
    pub max_concurrent_calls_per_agent: u32,
    pub max_tools_per_agent: u32,
    pub api_requests_per_minute_per_key: u32,
    pub api_requests_per_minute_per_org: u32,
    pub monthly_minutes: u64,
    pub rate_per_minute: Kopecks,
    /// How far below zero the balance may go before calls are refused and live calls end
    /// (`balance_exhausted`); 0 by default, so a prepaid org stops at zero. Set by the operator.
    pub credit_limit: Kopecks,
    /// Failed webhook deliveries within an hour after which an endpoint is disabled.
    pub webhook_failures_per_hour_before_disable: u32,
    /// Failed authentications per hour that raise an alert.
    pub failed_auth_alert_per_hour: u32,
}

impl Quotas {
    pub const DEFAULT: Self = Self {
        max_agents: 50,
        max_concurrent_calls: 100,
        max_concurrent_calls_per_agent: 10,
        max_tools_per_agent: 20,
        api_requests_per_minute_per_key: 200,
        api_requests_per_minute_per_org: 1000,
        monthly_minutes: Plan::Start.monthly_minutes(),
        rate_per_minute: Plan::Start.rate_per_minute(),
        credit_limit: Kopecks::ZERO,
        webhook_failures_per_hour_before_disable: 10,
        failed_auth_alert_per_hour: 100,
    };

    /// Limits must be usable: a zero concurrency limit would silently refuse every call.
    pub fn validate(&self) -> Result<(), DomainError> {
        let positive = [
            ("max_agents", self.max_agents),
            ("max_concurrent_calls", self.max_concurrent_calls),
            ("max_concurrent_calls_per_agent", self.max_concurrent_calls_per_agent),
            ("api_requests_per_minute_per_key", self.api_requests_per_minute_per_key),
            ("api_requests_per_minute_per_org", self.api_requests_per_minute_per_org),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(DomainError::Invalid(format!("quota {name} must be positive")));
        }
        if self.max_concurrent_calls_per_agent > self.max_concurrent_calls {
            return Err(DomainError::Invalid("per-agent concurrency exceeds the org's".into()));
        }
        if self.rate_per_minute.is_negative() {
            return Err(DomainError::Invalid("rate_per_minute must not be negative".into()));
        }
        if self.credit_limit.is_negative() {
            return Err(DomainError::Invalid("credit_limit must not be negative".into()));
        }
        Ok(())
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reviews_numbers() {
        let q = Quotas::default();
        assert_eq!((q.max_agents, q.max_concurrent_calls, q.max_concurrent_calls_per_agent), (50, 100, 10));
        assert_eq!(
            (q.max_tools_per_agent, q.api_requests_per_minute_per_key, q.api_requests_per_minute_per_org),
            (20, 200, 1000)
        );
        assert!(q.validate().is_ok());
        for plan in Plan::ALL {
            assert_eq!(plan.as_str().parse::<Plan>().unwrap(), plan);
            assert!(plan.default_quotas().validate().is_ok());
        }
        assert!(Quotas { max_concurrent_calls: 0, ..q }.validate().is_err());
    }
}
