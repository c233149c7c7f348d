//! Customer webhook endpoints as an org's admin writes them: where golos delivers the org's
//! events and which events it wants. The rules here are what an endpoint must satisfy before
//! it is stored; delivery holds the URL to the egress policy again at connect time.

use crate::agent::{ValidationIssue, MAX_URL_CHARS};
use crate::events::WebhookEventType;
use golos_egress::{EgressAllowlist, EgressError, Protocol};

/// Most endpoints one org holds: each event fans out to every subscribed endpoint, so the
/// limit bounds the deliveries one event costs.
pub const MAX_WEBHOOK_ENDPOINTS: u32 = 20;
/// Longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// What an org's admin sends for an endpoint, checked field by field.
#[derive(Debug, Clone, Copy)]
pub struct WebhookEndpointSpec<'a> {
    pub url: &'a str,
    /// Wire names (`call.ended`). There is no wildcard: an endpoint names what it handles, so
    /// an event kind added later never reaches a receiver that was not written for it.
    pub event_types: &'a [String],
    pub description: &'a str,
}

impl WebhookEndpointSpec<'_> {
    /// Every problem, with its field; the event kinds, in the order sent, when there is none.
    /// The URL is held to the egress policy as far as it can be known without connecting:
    /// `https` (plain `http` only to a destination `egress` allows), no credentials in it, no
    /// address literal of a private, loopback or metadata range unless `egress` allows it.
    pub fn validate(&self, egress: &EgressAllowlist) -> Result<Vec<WebhookEventType>, Vec<ValidationIssue>> {
        let mut issues = Vec::new();
        let mut issue = |field: String, code: &'static str, message: String| {
            issues.push(ValidationIssue { field, code, message });
        };
        if self.url.chars().count() > MAX_URL_CHARS {
            issue("url".into(), "too_long", format!("at most {MAX_URL_CHARS} characters"));
        } else if let Err(error) = golos_egress::check_url(self.url, Protocol::Http, egress) {
            issue("url".into(), url_issue_code(&error), error.to_string());
        }
        if self.event_types.is_empty() {
            issue("event_types".into(), "empty", "subscribe to at least one event type".into());
        }
        let mut kinds = Vec::new();
        for (i, name) in self.event_types.iter().enumerate().take(WebhookEventType::ALL.len() + 1) {
            match WebhookEventType::parse(name) {
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => issue(format!("event_types[{i}]"), "duplicate", "listed twice".into()),
                None => issue(
                    format!("event_types[{i}]"),
                    "unknown_event_type",
                    format!("one of {}", WebhookEventType::ALL.map(WebhookEventType::as_str).join(", ")),
                ),
            }
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            issue("description".into(), "too_long", format!("at most {MAX_DESCRIPTION_CHARS} characters"));
        }
        if issues.is_empty() {
            Ok(kinds)
        } else {
            Err(issues)
        }
    }
}

/// The validation code of an egress refusal: one per thing the sender must change.
const fn url_issue_code(error: &EgressError) -> &'static str {
    match error {
        EgressError::PlainText(_) => "https_required",
        EgressError::Forbidden { .. }
        | EgressError::ForbiddenResolution { .. }
        | EgressError::PortNotAllowed { .. } => "forbidden_destination",
        EgressError::Userinfo => "userinfo_not_allowed",
        _ => "invalid_url",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn codes(spec: WebhookEndpointSpec<'_>, egress: &EgressAllowlist) -> Vec<(String, &'static str)> {
        spec.validate(egress).unwrap_err().into_iter().map(|i| (i.field, i.code)).collect()
    }

    #[test]
    fn every_event_type_has_a_wire_name_that_parses_back() {
        for kind in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str(), "serde and as_str agree");
        }
        assert_eq!(WebhookEventType::parse("*"), None, "no wildcard");
        assert_eq!(WebhookEventType::parse("call.exploded"), None);
    }

    #[test]
    fn a_valid_endpoint_answers_its_event_types_in_order() {
        let names = kinds(&["call.ended", "balance.low", "endpoint.disabled"]);
        let spec = WebhookEndpointSpec { url: "https://crm.example.ru/golos", event_types: &names, description: "" };
        assert_eq!(
            spec.validate(&EgressAllowlist::none()).unwrap(),
            [WebhookEventType::CallEnded, WebhookEventType::BalanceLow, WebhookEventType::EndpointDisabled]
        );
    }

    #[test]
    fn urls_are_held_to_the_egress_policy() {
        let names = kinds(&["call.ended"]);
        let none = EgressAllowlist::none();
        let at = |url| WebhookEndpointSpec { url, event_types: &names, description: "" };
        for (url, code) in [
            ("http://crm.example.ru/hook", "https_required"),
            ("https://10.0.0.1/hook", "forbidden_destination"),
            ("https://169.254.169.254/latest/meta-data/", "forbidden_destination"),
            ("https://[::ffff:127.0.0.1]/", "forbidden_destination"),
            ("https://user:pw@crm.example.ru/", "userinfo_not_allowed"),
            ("wss://crm.example.ru/", "invalid_url"),
            ("crm.example.ru/hook", "invalid_url"),
        ] {
            assert_eq!(codes(at(url), &none), [("url".to_owned(), code)], "{url}");
        }
        let long = format!("https://x.ru/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(codes(at(&long), &none), [("url".to_owned(), "too_long")]);
        // What the operator allows may be reached over plain HTTP, and only that.
        let allow = EgressAllowlist::parse("10.0.0.1/32,receiver.internal:8080").unwrap();
        assert!(at("http://10.0.0.1/hook").validate(&allow).is_ok());
        assert!(at("http://receiver.internal:8080/hook").validate(&allow).is_ok());
        assert_eq!(codes(at("http://crm.example.ru/hook"), &allow), [("url".to_owned(), "https_required")]);
    }

    #[test]
    fn event_types_are_a_non_empty_set_of_known_names_and_descriptions_are_short() {
        let none = EgressAllowlist::none();
        let url = "https://crm.example.ru/hook";
        assert_eq!(
            codes(WebhookEndpointSpec { url, event_types: &[], description: "" }, &none),
            [("event_types".to_owned(), "empty")]
        );
        let names = kinds(&["call.ended", "*", "call.ended", "Call.Started"]);
        assert_eq!(
            codes(WebhookEndpointSpec { url, event_types: &names, description: "" }, &none),
            [
                ("event_types[1]".to_owned(), "unknown_event_type"),
                ("event_types[2]".to_owned(), "duplicate"),
                ("event_types[3]".to_owned(), "unknown_event_type"),
            ]
        );
        let names = kinds(&["call.ended"]);
        let long = "ы".repeat(MAX_DESCRIPTION_CHARS + 1);
        assert_eq!(
            codes(WebhookEndpointSpec { url, event_types: &names, description: &long }, &none),
            [("description".to_owned(), "too_long")]
        );
        let fits = "ы".repeat(MAX_DESCRIPTION_CHARS);
        assert!(WebhookEndpointSpec { url, event_types: &names, description: &fits }.validate(&none).is_ok());
    }
}
