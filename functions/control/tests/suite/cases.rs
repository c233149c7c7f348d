//! The API cases. Each takes a fresh app.

use super::{agent_body, TestApp, OPERATOR_TOKEN, T0};
use golos_control::calls::transcript_context;
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::rbac::{can, Action, Role};
use golos_domain::{AgentId, CallId, Kopecks, OrgId, PhoneNumber};
use golos_ports::{CallDirection, CallRecord, CallStatus, Clock as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub async fn walkthrough_org_key_agent(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = app.get(&format!("/v1/orgs/{org_id}"), &admin).await;
    assert_eq!(org.status, StatusCode::OK);
    assert_eq!(org.body["quotas"]["max_agents"], 50);
    let created = app.create_agent(&admin, "Café").await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.body["id"].as_str().unwrap();
    let fetched = app.get(&format!("/v1/agents/{id}"), &admin).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["config"]["name"], "Café");
    assert_eq!(fetched.body["version"], 1);
    let listed = app.get("/v1/agents?limit=10", &admin).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(listed.header("x-request-id").is_some() && listed.header("x-trace-id").is_some());
}

pub async fn etag_and_if_match(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let id = app.create_agent(&admin, "v1").await.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/agents/{id}");
    let no_precondition = app.call(Method::PUT, &path, Some(&admin), Some(&agent_body("v2")), &[]).await;
    assert_eq!(
        (no_precondition.status, no_precondition.code()),
        (StatusCode::PRECONDITION_REQUIRED, "if_match_required")
    );
    let updated = app.call(Method::PUT, &path, Some(&admin), Some(&agent_body("v2")), &[("If-Match", "\"1\"")]).await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.header("etag"), Some("\"2\""));
    let stale = app.call(Method::PUT, &path, Some(&admin), Some(&agent_body("v3")), &[("If-Match", "\"1\"")]).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    assert_eq!(stale.header("content-type"), Some("application/problem+json"));
    let deleted = app.call(Method::DELETE, &path, Some(&admin), None, &[("If-Match", "\"2\"")]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &admin).await.status, StatusCode::NOT_FOUND);
}

pub async fn validation_and_agent_quotas(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let mut bad = agent_body("x");
    bad["language"] = json!("Russian");
    bad["limits"] = json!({"max_concurrent_calls": 50});
    let refused = app.post("/v1/agents", &admin, &bad).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let fields: Vec<&str> =
        refused.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"language") && fields.contains(&"limits.max_concurrent_calls"), "{fields:?}");

    let mut many_tools = agent_body("tools");
    many_tools["tools"] = Value::Array((0..21).map(|i| json!({"type": "function", "name": format!("t{i}"), "description": "d", "parameters": {"type": "object"}, "url": "https://x.example/"})).collect());
    let refused = app.post("/v1/agents", &admin, &many_tools).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body["errors"].as_array().unwrap().iter().any(|e| e["code"] == "too_many_tools"));

    let malformed =
        app.call(Method::POST, "/v1/agents", Some(&admin), None, &[("content-type", "application/json")]).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.header("content-type"), Some("application/problem+json"));

    let patched = app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN), Some(&json!({"quotas": {"max_agents": 2, "max_concurrent_calls": 100, "max_concurrent_calls_per_agent": 10}})), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(app.create_agent(&admin, "a").await.status, StatusCode::CREATED);
    assert_eq!(app.create_agent(&admin, "b").await.status, StatusCode::CREATED);
    let third = app.create_agent(&admin, "c").await;
    assert_eq!((third.status, third.code()), (StatusCode::FORBIDDEN, "max_agents_reached"));
}

pub async fn authentication(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let missing = app.call(Method::GET, "/v1/agents", None, None, &[]).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let wrong = app.get("/v1/agents", &format!("{}x", &admin[..admin.len() - 1])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let garbage = app.get("/v1/agents", "hello").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.metrics.auth_failures_total.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "failed authentications are counted"
    );
    let in_url = app.call(Method::GET, &format!("/v1/agents?api_key={admin}"), None, None, &[]).await;
    assert_eq!((in_url.status, in_url.code()), (StatusCode::BAD_REQUEST, "api_key_in_url"));
    let in_url_with_header = app.call(Method::GET, &format!("/v1/agents?x={admin}"), Some(&admin), None, &[]).await;
    assert_eq!(in_url_with_header.code(), "api_key_in_url", "a key anywhere in the URL is refused");
    // The operator is not a member of any org.
    let operator = app.get("/v1/agents", OPERATOR_TOKEN).await;
    assert_eq!((operator.status, operator.code()), (StatusCode::FORBIDDEN, "operator_not_member"));
    let member_creating_org = app.post("/v1/orgs", &admin, &json!({"name": "x"})).await;
    assert_eq!((member_creating_org.status, member_creating_org.code()), (StatusCode::FORBIDDEN, "operator_only"));
}

pub async fn key_lifecycle(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let created =
        app.post("/v1/api-keys", &admin, &json!({"name": "ci", "role": "viewer", "expires_in_days": 1})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let viewer = created.body["token"].as_str().unwrap().to_owned();
    let viewer_id = created.body["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/agents", &viewer).await.status, StatusCode::OK);
    let listed = app.get("/v1/api-keys", &admin).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    assert!(!listed.body.to_string().contains(&viewer[20..]), "secrets are never listed");

    // Rotation: both work during the overlap, only the new one after it.
    let rotated = app.post(&format!("/v1/api-keys/{viewer_id}/rotate"), &admin, &json!({"overlap_secs": 60})).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let new_viewer = rotated.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/agents", &viewer).await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/agents", &new_viewer).await.status, StatusCode::OK);
    app.clock.advance_millis(61_000);
    assert_eq!(app.get("/v1/agents", &viewer).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/v1/agents", &new_viewer).await.status, StatusCode::OK);

    // Revocation is immediate; expiry too.
    let new_id = rotated.body["key"]["id"].as_str().unwrap();
    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/api-keys/{new_id}"), Some(&admin), None, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/v1/agents", &new_viewer).await.status, StatusCode::UNAUTHORIZED);
    let short = app
        .post(
            &format!("/v1/orgs/{org_id}/api-keys"),
            OPERATOR_TOKEN,
            &json!({"name": "short", "role": "viewer", "expires_in_days": 1}),
        )
        .await;
    let short = short.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/agents", &short).await.status, StatusCode::OK);
    app.clock.advance_millis(86_400_000);
    assert_eq!(app.get("/v1/agents", &short).await.status, StatusCode::UNAUTHORIZED);
    // Keys of another org are invisible.
    let (_, other_admin) = app.org_with_admin().await;
    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/api-keys/{viewer_id}"), Some(&other_admin), None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Every route × every role: allowed exactly when the domain's matrix says so.
pub async fn every_route_enforces_the_rbac_matrix(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let agent = app.create_agent(&admin, "target").await.body["id"].as_str().unwrap().to_owned();
    let routes: Vec<(Method, String, Option<Value>, Action)> = vec![
        (Method::GET, "/v1/agents".into(), None, Action::ReadAgents),
        (Method::POST, "/v1/agents".into(), Some(agent_body("new")), Action::WriteAgents),
        (Method::GET, format!("/v1/agents/{agent}"), None, Action::ReadAgents),
        (Method::PUT, format!("/v1/agents/{agent}"), Some(agent_body("upd")), Action::WriteAgents),
        (Method::DELETE, "/v1/agents/agt_missing".into(), None, Action::DeleteAgents),
        (Method::GET, "/v1/api-keys".into(), None, Action::ReadApiKeys),
        (Method::POST, "/v1/api-keys".into(), Some(json!({"name": "n", "role": "viewer"})), Action::ManageApiKeys),
        (Method::DELETE, "/v1/api-keys/key_missing".into(), None, Action::ManageApiKeys),
        (Method::POST, "/v1/api-keys/key_missing/rotate".into(), None, Action::ManageApiKeys),
        (Method::GET, "/v1/numbers".into(), None, Action::ReadNumbers),
        (Method::PUT, "/v1/numbers/+74951234567".into(), Some(json!({"agent_id": agent})), Action::ManageNumbers),
        (Method::DELETE, "/v1/numbers/+74950000000".into(), None, Action::ManageNumbers),
        (Method::GET, "/v1/calls".into(), None, Action::ReadCalls),
        (Method::GET, "/v1/calls/call_missing".into(), None, Action::ReadCalls),
        (Method::GET, "/v1/balance".into(), None, Action::ReadBilling),
        (Method::GET, "/v1/ledger".into(), None, Action::ReadBilling),
        (Method::GET, "/v1/usage".into(), None, Action::ReadUsage),
        (Method::GET, "/v1/audit-log".into(), None, Action::ReadAuditLog),
        (Method::GET, "/v1/sip-trunks".into(), None, Action::ReadSipTrunks),
        (Method::GET, "/v1/webhook-endpoints".into(), None, Action::ReadWebhooks),
        (Method::GET, "/v1/webhook-endpoints/whe_missing".into(), None, Action::ReadWebhooks),
        (
            Method::POST,
            "/v1/webhook-endpoints".into(),
            Some(json!({"url": "https://crm.example.ru/", "event_types": ["call.ended"]})),
            Action::ManageWebhooks,
        ),
        (
            Method::PATCH,
            "/v1/webhook-endpoints/whe_missing".into(),
            Some(json!({"enabled": false})),
            Action::ManageWebhooks,
        ),
        (Method::DELETE, "/v1/webhook-endpoints/whe_missing".into(), None, Action::ManageWebhooks),
        (Method::POST, "/v1/webhook-endpoints/whe_missing/rotate-secret".into(), None, Action::ManageWebhooks),
        (Method::GET, "/v1/webhook-endpoints/whe_missing/deliveries".into(), None, Action::ReadWebhooks),
        (Method::POST, "/v1/webhook-endpoints/whe_missing/test".into(), None, Action::ManageWebhooks),
        (Method::GET, "/v1/dead-letters".into(), None, Action::ReadWebhooks),
        (Method::POST, "/v1/dead-letters/redrive".into(), Some(json!({"ids": ["none"]})), Action::RedriveDeadLetters),
        (Method::GET, "/v1/provider-credentials".into(), None, Action::ReadProviderCredentials),
        (
            Method::PUT,
            "/v1/provider-credentials/rbac-probe".into(),
            Some(json!({"value": "sk-probe"})),
            Action::ManageProviderCredentials,
        ),
        (Method::DELETE, "/v1/provider-credentials/missing".into(), None, Action::ManageProviderCredentials),
        (Method::DELETE, "/v1/calls/call_missing".into(), None, Action::EraseData),
        (Method::POST, "/v1/erasures".into(), Some(json!({"phone_number": "+79990000000"})), Action::EraseData),
    ];
    for role in Role::ALL {
        let key = if role == Role::Admin { admin.clone() } else { app.key_with_role(&admin, role.as_str()).await };
        for (method, path, body, action) in &routes {
            let headers: &[(&str, &str)] = if *method == Method::PUT && path.starts_with("/v1/agents/") {
                &[("If-Match", "\"999\"")]
            } else {
                &[]
            };
            let reply = app.call(method.clone(), path, Some(&key), body.as_ref(), headers).await;
            let allowed = can(role, *action);
            if allowed {
                assert_ne!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{role:?} must be allowed {method} {path}: {:?}",
                    reply.body
                );
                assert!(!reply.status.is_server_error(), "{method} {path}: {:?}", reply.body);
            } else {
                assert_eq!(
                    (reply.status, reply.code()),
                    (StatusCode::FORBIDDEN, "insufficient_role"),
                    "{role:?} must be refused {method} {path}"
                );
            }
        }
    }
}

pub async fn rate_limits_per_key_and_org(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let patched = app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN),
        Some(&json!({"quotas": {"api_requests_per_minute_per_key": 5, "api_requests_per_minute_per_org": 8, "max_concurrent_calls": 100, "max_concurrent_calls_per_agent": 10}})), &[]).await;
    assert_eq!(patched.status, StatusCode::OK);
    let second = app.key_with_role(&admin, "viewer").await; // 1 request by admin
    for _ in 0..4 {
        assert_eq!(app.get("/v1/agents", &admin).await.status, StatusCode::OK);
    }
    let limited = app.get("/v1/agents", &admin).await;
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Another key has its own per-key budget but shares the org's: the org has counted 5
    // requests (the refused one stopped at the per-key limit), so 3 more fit.
    for _ in 0..3 {
        assert_eq!(app.get("/v1/agents", &second).await.status, StatusCode::OK);
    }
    let org_limited = app.get("/v1/agents", &second).await;
    assert_eq!(org_limited.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", org_limited.body);
    assert!(org_limited.body["detail"].as_str().unwrap().contains("organisation"));
    // The next window starts afresh.
    app.clock.advance_millis(60_000);
    assert_eq!(app.get("/v1/agents", &admin).await.status, StatusCode::OK);
}

pub async fn idempotent_posts(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let body = agent_body("once");
    let first =
        app.call(Method::POST, "/v1/agents", Some(&admin), Some(&body), &[("Idempotency-Key", "create-1")]).await;
    let again =
        app.call(Method::POST, "/v1/agents", Some(&admin), Some(&body), &[("Idempotency-Key", "create-1")]).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(first.body["id"], again.body["id"], "the retry returns the first response");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.get("/v1/agents", &admin).await.body["items"].as_array().unwrap().len(), 1, "one agent, not two");
    let reused = app
        .call(Method::POST, "/v1/agents", Some(&admin), Some(&agent_body("other")), &[("Idempotency-Key", "create-1")])
        .await;
    assert_eq!((reused.status, reused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
}

/// A replay goes only to the API key that made the request, after authentication; a
/// response holding a secret is never stored, so its replay names what was created instead.
pub async fn idempotency_cannot_leak(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let viewer = app.key_with_role(&admin, "viewer").await;
    let body = json!({"name": "deploy", "role": "admin"});
    let created =
        app.call(Method::POST, "/v1/api-keys", Some(&admin), Some(&body), &[("Idempotency-Key", "key-1")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let key_id = created.body["key"]["id"].as_str().unwrap().to_owned();

    // The viewer repeats the admin's request, Idempotency-Key and all: its own request runs
    // (and is refused by role); nothing of the admin's response comes back.
    let stolen =
        app.call(Method::POST, "/v1/api-keys", Some(&viewer), Some(&body), &[("Idempotency-Key", "key-1")]).await;
    assert_eq!((stolen.status, stolen.code()), (StatusCode::FORBIDDEN, "insufficient_role"), "{:?}", stolen.body);
    assert!(!stolen.body.to_string().contains(&token));
    assert_eq!(stolen.header("idempotent-replayed"), None);

    // The admin's own retry learns which key was made, never the token again.
    let replay =
        app.call(Method::POST, "/v1/api-keys", Some(&admin), Some(&body), &[("Idempotency-Key", "key-1")]).await;
    assert_eq!((replay.status, replay.code()), (StatusCode::CONFLICT, "replay_of_secret"), "{:?}", replay.body);
    assert_eq!(replay.body["resource_id"], key_id.as_str());
    assert!(!replay.body.to_string().contains(&token));
    let keys = app.get("/v1/api-keys", &admin).await.body["items"].as_array().unwrap().len();
    assert_eq!(keys, 3, "owner, viewer and deploy: the replay created nothing");
    // Rotation is marked the same way.
    let rotate_path = format!("/v1/api-keys/{key_id}/rotate");
    let rotated = app.call(Method::POST, &rotate_path, Some(&admin), None, &[("Idempotency-Key", "rot-1")]).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let rotated_again = app.call(Method::POST, &rotate_path, Some(&admin), None, &[("Idempotency-Key", "rot-1")]).await;
    assert_eq!(rotated_again.code(), "replay_of_secret");
    assert!(!rotated_again.body.to_string().contains(rotated.body["token"].as_str().unwrap()));

    // A claim left behind by a request that never finished (its process died mid-request)
    // keeps that key's retries out for seconds, not for the day a response is kept.
    let (admin_key_id, _) = golos_control::keys::parse(&admin).unwrap();
    let org_id = app.state.stores.api_keys.get(&admin_key_id).await.unwrap().unwrap().org_id;
    let claim_ttl = app.state.config.idempotency_claim_ttl_ms;
    assert!(claim_ttl <= 60_000, "claims lapse in seconds");
    let scope = format!("{org_id}/{admin_key_id}");
    let begun = app
        .state
        .stores
        .idempotency
        .begin(&scope, "crash-1", "a-crashed-request", claim_ttl, app.state.clock.now())
        .await;
    assert_eq!(begun.unwrap(), golos_ports::IdempotencyBegin::Started);
    let agent = agent_body("crashed");
    let blocked =
        app.call(Method::POST, "/v1/agents", Some(&admin), Some(&agent), &[("Idempotency-Key", "crash-1")]).await;
    assert_eq!(blocked.code(), "idempotency_key_reused", "{:?}", blocked.body);
    app.clock.advance_millis(claim_ttl);
    let retried =
        app.call(Method::POST, "/v1/agents", Some(&admin), Some(&agent), &[("Idempotency-Key", "crash-1")]).await;
    assert_eq!(retried.status, StatusCode::CREATED, "the lapsed claim no longer blocks: {:?}", retried.body);
}

/// `PATCH /v1/orgs/{id}` never loses an edit: an operator's disable racing an admin's renames
/// stays disabled, the name is stored on both backends, and a stale `If-Match` is refused.
pub async fn org_updates_do_not_undo_each_other(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let path = format!("/v1/orgs/{org_id}");
    let read = app.get(&path, &admin).await;
    assert_eq!(read.header("etag"), Some("\"1\""));
    let renamed = app
        .call(Method::PATCH, &path, Some(&admin), Some(&json!({"name": "Кафе «Лютик»"})), &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(renamed.header("etag"), Some("\"2\""));
    assert_eq!(app.get(&path, &admin).await.body["name"], "Кафе «Лютик»", "the name is stored");
    let stale =
        app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"name": "stale"})), &[("If-Match", "\"1\"")]).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));

    // Renames race the operator's disable; whatever the interleaving, it stays disabled.
    let renames = (0..6).map(|i| {
        let body = json!({"settings": {"theme": i}});
        let (path, admin) = (path.clone(), admin.clone());
        async move { app.call(Method::PATCH, &path, Some(&admin), Some(&body), &[]).await }
    });
    let disable_body = json!({"disabled": true});
    let disable = app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&disable_body), &[]);
    let (replies, disabled) = tokio::join!(futures::future::join_all(renames), disable);
    assert_eq!(disabled.status, StatusCode::OK, "{:?}", disabled.body);
    for reply in &replies {
        assert!(
            reply.status == StatusCode::OK || ["org_disabled", "concurrent_update"].contains(&reply.code()),
            "a rename landed, came after the disable, or gave up on a busy record: {:?}",
            reply.body
        );
    }
    let after = app.get(&path, OPERATOR_TOKEN).await;
    assert_eq!(after.body["disabled"], true, "the disable was not undone: {:?}", after.body);
    assert_eq!(after.body["name"], "Кафе «Лютик»");
}

/// Guessing keys from one address stops at the failure limit: its next requests, even with
/// a good key, wait for the window to end.
pub async fn failed_authentication_is_throttled_per_address(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let limit = app.state.config.auth_failures_per_ip_per_minute;
    for i in 0..limit {
        let guess = format!("gk_{:032x}_guessedsecret0000{i}", u128::from(i));
        assert_eq!(app.get("/v1/agents", &guess).await.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = app.get("/v1/agents", &admin).await;
    assert_eq!((throttled.status, throttled.code()), (StatusCode::TOO_MANY_REQUESTS, "auth_throttled"));
    assert!(throttled.header("retry-after").is_some());
    // Another address (behind the trusted proxy of this deployment) is not held back.
    let other = app.call(Method::GET, "/v1/agents", Some(&admin), None, &[("X-Forwarded-For", "203.0.113.9")]).await;
    if app.state.config.trust_forwarded_for {
        assert_eq!(other.status, StatusCode::OK);
    }
    app.clock.advance_millis(60_000);
    assert_eq!(app.get("/v1/agents", &admin).await.status, StatusCode::OK, "the next minute starts afresh");
}

/// Provider credentials: write-only, per org, and the only thing an agent tier can name.
pub async fn provider_credentials(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let editor = app.key_with_role(&admin, "editor").await;
    let value = "sk-tenant-0123456789abcdef";
    let put = |key: String, name: &'static str, body: Value| async move {
        app.call(Method::PUT, &format!("/v1/provider-credentials/{name}"), Some(&key), Some(&body), &[]).await
    };
    let created = put(editor.clone(), "openai", json!({"value": value})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["name"], "openai");
    let fingerprint = created.body["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 16);
    assert!(!created.body.to_string().contains(value), "the value never comes back");
    let replaced = put(admin.clone(), "openai", json!({"value": "sk-other"})).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_ne!(replaced.body["fingerprint"], fingerprint.as_str());
    let listed = app.get("/v1/provider-credentials", &editor).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(!listed.body.to_string().contains("sk-other"));
    for (name, body, code) in [
        ("bad%20name", json!({"value": "x"}), "invalid_credential_name"),
        ("ok", json!({"value": "  "}), "invalid_credential_value"),
        ("ok", json!({"value": "x", "extra": 1}), "invalid_json"),
    ] {
        let reply =
            app.call(Method::PUT, &format!("/v1/provider-credentials/{name}"), Some(&admin), Some(&body), &[]).await;
        assert_eq!(reply.code(), code, "{name} {body}: {:?}", reply.body);
    }
    // Stored as an envelope only.
    let org_id = app.get("/v1/api-keys", &admin).await.body["items"][0]["org_id"].as_str().unwrap().to_owned();
    let org_id = golos_domain::OrgId::parse(&org_id).unwrap();
    let stored = app.state.stores.credentials.get(&org_id, "openai").await.unwrap().unwrap();
    assert!(!stored.envelope.windows(8).any(|w| b"sk-other".windows(8).any(|v| v == w)));
    let opened = golos_control::credentials::resolve(&app.state, &org_id, &["openai", "absent"]).await;
    assert_eq!(opened.get("openai").map(golos_ports::SecretString::expose), Some("sk-other"));
    assert_eq!(opened.len(), 1);

    // An agent tier names one of the org's credentials or none: a platform secret's name is
    // just an unknown credential.
    let mut agent = agent_body("keys");
    for secret in ["operator-api-key", "api-key-pepper", "payments-hmac-test"] {
        agent["providers"] = json!({
            "llm": [{"kind": "openai", "endpoint": "https://tenant.example/v1", "credentials_secret": secret}, {"kind": "canned"}],
            "tts": [{"kind": "espeak_ng"}], "stt": [{"kind": "pocketsphinx"}]});
        let refused = app.post("/v1/agents", &editor, &agent).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", refused.body);
        assert_eq!(refused.body["errors"][0]["code"], "unknown_credential");
        assert_eq!(refused.body["errors"][0]["field"], "providers.llm[0].credentials_secret");
    }
    agent["providers"]["llm"][0]["credentials_secret"] = json!("openai");
    assert_eq!(app.post("/v1/agents", &editor, &agent).await.status, StatusCode::CREATED);

    // Another org cannot see or use it.
    let (_, other_admin) = app.org_with_admin().await;
    assert_eq!(app.get("/v1/provider-credentials", &other_admin).await.body["items"], json!([]));
    assert_eq!(app.post("/v1/agents", &other_admin, &agent).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let deleted = app.call(Method::DELETE, "/v1/provider-credentials/openai", Some(&other_admin), None, &[]).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);

    let deleted = app.call(Method::DELETE, "/v1/provider-credentials/openai", Some(&admin), None, &[]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let audit = app.get("/v1/audit-log", &admin).await.body.to_string();
    assert!(audit.contains("provider_credential.put") && audit.contains("provider_credential.delete"), "{audit}");
    // A cursor the store never handed out is the client's mistake, in words of the API's.
    let garbage = app.get("/v1/audit-log?cursor=not-a-cursor", &admin).await;
    assert_eq!((garbage.status, garbage.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"), "{:?}", garbage.body);
    assert!(!audit.contains("sk-other"));
}

pub async fn numbers_and_routing(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let agent = app.create_agent(&admin, "reception").await.body["id"].as_str().unwrap().to_owned();
    let route = |key: &str, number: &str, agent: &str| {
        let (key, path, body) = (key.to_owned(), format!("/v1/numbers/{number}"), json!({"agent_id": agent}));
        async move { app.call(Method::PUT, &path, Some(&key), Some(&body), &[]).await }
    };
    // Not granted yet: the admin cannot route it.
    let ungranted = route(&admin, "+74951234567", &agent).await;
    assert_eq!((ungranted.status, ungranted.code()), (StatusCode::NOT_FOUND, "number_not_granted"));
    // Only the operator grants; idempotently for the same org.
    let grant_path = format!("/v1/orgs/{org_id}/numbers");
    let by_admin = app.post(&grant_path, &admin, &json!({"number": "+74951234567"})).await;
    assert_eq!((by_admin.status, by_admin.code()), (StatusCode::FORBIDDEN, "operator_only"));
    for _ in 0..2 {
        let granted = app.post(&grant_path, OPERATOR_TOKEN, &json!({"number": "+74951234567"})).await;
        assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
        assert_eq!((granted.body["org_id"].as_str(), &granted.body["agent_id"]), (Some(org_id.as_str()), &Value::Null));
    }
    assert_eq!(app.get("/v1/routing/+74951234567", OPERATOR_TOKEN).await.status, StatusCode::NOT_FOUND, "not routed");
    let listed = app.get("/v1/numbers", &admin).await;
    assert_eq!(
        (&listed.body["items"][0]["number"], &listed.body["items"][0]["agent_id"]),
        (&json!("+74951234567"), &Value::Null)
    );
    // The admin routes it; inbound routing finds it.
    let assigned = route(&admin, "+74951234567", &agent).await;
    assert_eq!(assigned.status, StatusCode::OK, "{:?}", assigned.body);
    let routed = app.get("/v1/routing/+74951234567", OPERATOR_TOKEN).await;
    assert_eq!(
        (routed.body["org_id"].as_str(), routed.body["agent_id"].as_str()),
        (Some(org_id.as_str()), Some(agent.as_str()))
    );
    assert_eq!(app.get("/v1/numbers", &admin).await.body["items"][0]["agent_id"], agent.as_str());
    // Another org can neither take the grant nor route the number, and is not told who holds it.
    let (other_org, other) = app.org_with_admin().await;
    let other_agent = app.create_agent(&other, "x").await.body["id"].as_str().unwrap().to_owned();
    let taken =
        app.post(&format!("/v1/orgs/{other_org}/numbers"), OPERATOR_TOKEN, &json!({"number": "+74951234567"})).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "number_taken"));
    let squat = route(&other, "+74951234567", &other_agent).await;
    assert_eq!((squat.status, squat.code()), (StatusCode::NOT_FOUND, "number_not_granted"));
    let never_granted = route(&other, "+74959999999", &other_agent).await;
    assert_eq!(
        (never_granted.status, &never_granted.body["code"], &never_granted.body["detail"]),
        (squat.status, &squat.body["code"], &squat.body["detail"]),
        "a number held by another org looks like a free one"
    );
    let unroute_other = app.call(Method::DELETE, "/v1/numbers/+74951234567", Some(&other), None, &[]).await;
    assert_eq!((unroute_other.status, unroute_other.code()), (StatusCode::NOT_FOUND, "number_not_granted"));
    let bad = route(&admin, "84951234567", &agent).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_phone_number"));
    // Un-routing keeps the grant; revoking removes it and frees the number.
    assert_eq!(
        app.call(Method::DELETE, "/v1/numbers/+74951234567", Some(&admin), None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/v1/routing/+74951234567", OPERATOR_TOKEN).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/numbers", &admin).await.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(route(&admin, "+74951234567", &agent).await.status, StatusCode::OK);
    let revoke_path = format!("/v1/orgs/{org_id}/numbers/+74951234567");
    assert_eq!(
        app.call(Method::DELETE, &revoke_path, Some(&admin), None, &[]).await.status,
        StatusCode::FORBIDDEN,
        "only the operator revokes"
    );
    assert_eq!(
        app.call(Method::DELETE, &revoke_path, Some(OPERATOR_TOKEN), None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/v1/routing/+74951234567", OPERATOR_TOKEN).await.status, StatusCode::NOT_FOUND);
    assert!(app.get("/v1/numbers", &admin).await.body["items"].as_array().unwrap().is_empty());
    let again = app.call(Method::DELETE, &revoke_path, Some(OPERATOR_TOKEN), None, &[]).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "number_not_granted"));
    let regranted =
        app.post(&format!("/v1/orgs/{other_org}/numbers"), OPERATOR_TOKEN, &json!({"number": "+74951234567"})).await;
    assert_eq!(regranted.status, StatusCode::CREATED);
    // Every step is in the audit log, the number masked.
    let audit = app.get("/v1/audit-log", &admin).await.body.to_string();
    for action in ["number.grant", "number.route", "number.unroute", "number.revoke"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
    assert!(audit.contains("+7*****4567") && !audit.contains("+74951234567"), "{audit}");
}

pub async fn calls_billing_usage_and_audit(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "agent").await.body["id"].as_str().unwrap().to_owned();
    let ledger = &app.state.stores.ledger;
    ledger
        .apply(
            &org,
            &LedgerEventKind::PaymentCredit {
                provider: PaymentProvider::Yookassa,
                payment_id: "p1".into(),
                amount: Kopecks::new(100_000),
            },
            T0,
        )
        .await
        .unwrap();
    let call_id = CallId::parse("call_demo1").unwrap();
    ledger
        .apply(&org, &LedgerEventKind::call_debit(call_id.clone(), 90, Kopecks::new(600)).unwrap(), T0)
        .await
        .unwrap();
    let balance = app.get("/v1/balance", &admin).await;
    assert_eq!(
        (balance.body["balance_kopecks"].as_i64(), balance.body["display"].as_str()),
        (Some(98_800), Some("988.00 RUB"))
    );
    let history = app.get("/v1/ledger", &admin).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 2);
    let usage = app.get("/v1/usage", &admin).await;
    assert_eq!((usage.body["minutes_used"].as_u64(), usage.body["minutes_included"].as_u64()), (Some(2), Some(1_000)));

    let transcript =
        json!([{"role": "caller", "text": "Когда вы открыты?"}, {"role": "agent", "text": "С девяти до девяти."}]);
    let sealed = app.state.crypto.encrypt(transcript.to_string().as_bytes(), &transcript_context(&org)).await.unwrap();
    app.state
        .calls
        .record_end(&CallRecord {
            id: call_id,
            org_id: org.clone(),
            agent_id: AgentId::parse(&agent).unwrap(),
            direction: CallDirection::Inbound,
            from: Some(PhoneNumber::parse("+79161234567").unwrap()),
            to: Some(PhoneNumber::parse("+74951234567").unwrap()),
            status: CallStatus::Ended,
            started_at: T0,
            ended_at: Some(T0.plus_secs(90)),
            duration_secs: Some(90),
            end_reason: Some(golos_domain::EndReason::CallerHangup),
            cost: Some(Kopecks::new(1_200)),
            transcript: Some(sealed.to_bytes()),
            metrics: json!({"turns": [{"ttft_ms": 310}]}),
            expires_at: None,
            erased: None,
        })
        .await
        .unwrap();
    let call = app.get("/v1/calls/call_demo1", &admin).await;
    assert_eq!(call.status, StatusCode::OK, "{:?}", call.body);
    assert_eq!(call.body["transcript"], transcript);
    assert_eq!(call.body["from"], "+7*****4567", "callers' numbers are masked");
    let list = app.get("/v1/calls", &admin).await;
    assert_eq!(list.body["items"][0]["id"], "call_demo1");
    assert!(list.body["items"][0].get("transcript").is_none());

    let audit = app.get("/v1/audit-log", &admin).await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"agent.create") && actions.contains(&"api_key.create") && actions.contains(&"org.create"),
        "{actions:?}"
    );
    let entry = &audit.body["items"][0];
    assert_eq!(entry["ip"], "127.0.0.1");
    assert!(entry["actor"].as_str().unwrap().starts_with("key:"));
}

pub async fn health_and_openapi(app: &TestApp) {
    let health = app.call(Method::GET, "/health", None, None, &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    let spec = app.call(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/agents",
        "/v1/agents/{agent_id}",
        "/v1/api-keys/{key_id}/rotate",
        "/v1/balance",
        "/health",
        "/v1/erasures",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "/v1/webhook-endpoints/{endpoint_id}/test",
        "/v1/dead-letters",
        "/v1/dead-letters/redrive",
    ] {
        assert!(spec.body["paths"].get(path).is_some(), "{path} is documented");
    }
    // What a webhook endpoint receives: the envelope and each event's data.
    let schemas = &spec.body["components"]["schemas"];
    for schema in [
        "DeliveredEvent",
        "CallStartedData",
        "CallEndedData",
        "BalanceLowData",
        "QuotaExceededData",
        "EscalationTriggeredData",
        "CallTransferData",
        "ShutdownInitiatedData",
        "EndpointDisabledData",
        "TestData",
    ] {
        assert!(schemas.get(schema).is_some(), "the {schema} schema is documented");
    }
    assert!(schemas["CallEndedData"]["properties"].get("cost_kopecks").is_some());
    assert!(spec.body["paths"]["/v1/calls/{call_id}"].get("delete").is_some(), "DELETE /v1/calls/{{id}} is documented");
    assert_eq!(spec.body["components"]["securitySchemes"]["api_key"]["name"], "X-API-Key");
    let unknown = app.get("/v1/nothing-here", OPERATOR_TOKEN).await;
    assert_eq!(
        (unknown.status, unknown.header("content-type")),
        (StatusCode::NOT_FOUND, Some("application/problem+json"))
    );
}

/// Everything queued on `queue` so far, acknowledged, as JSON.
async fn drain(queue: &std::sync::Arc<dyn golos_ports::Queue>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let batch = queue.receive(10, std::time::Duration::from_secs(60)).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        for message in batch {
            queue.delete(&message.receipt).await.unwrap();
            out.push(serde_json::from_str(&message.body).unwrap());
        }
    }
}

fn ended_event(org: &str, agent: &str, call: &str, duration_secs: u64) -> Value {
    json!({"type": "call.ended", "call_id": call, "org_id": org, "agent_id": agent, "direction": "inbound",
        "from": "+79161234567", "started_at": T0.as_millis(), "ended_at": T0.as_millis() + 1000 * duration_secs as i64,
        "duration_secs": duration_secs, "end_reason": "caller_hangup",
        "transcript": [{"role": "user", "text": "Когда вы открыты?", "at_ms": 900},
                       {"role": "assistant", "text": "С девяти до девяти.", "at_ms": 1500}],
        "metrics": {"turns": [{"ttft_ms": 310}]}})
}

async fn credit(app: &TestApp, org: &OrgId, id: &str, kopecks: i64) {
    let event = LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Signed("test".into()),
        payment_id: id.into(),
        amount: Kopecks::new(kopecks),
    };
    app.state.stores.ledger.apply(org, &event, T0).await.unwrap();
}

pub async fn call_events_debit_once_and_emit_webhooks(app: &TestApp) {
    use golos_control::call_events::{is_permanent, process, Processed};
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "agent").await.body["id"].as_str().unwrap().to_owned();
    // Start plan: 600 kopecks a minute, balance.low below 10 minutes = 6 000 kopecks.
    credit(app, &org, "p1", 7_000).await;
    let lease = golos_ports::LeaseRequest {
        org_id: org.clone(),
        agent_id: AgentId::parse(&agent).unwrap(),
        call_id: CallId::parse("call_a").unwrap(),
        org_limit: 100,
        agent_limit: 10,
        ttl_ms: 30_000,
    };
    app.state.stores.leases.acquire(&lease, T0).await.unwrap();

    let started = json!({"type": "call.started", "call_id": "call_a", "org_id": org_id, "agent_id": agent,
        "direction": "inbound", "from": "+79161234567", "started_at": T0.as_millis()});
    assert_eq!(process(&app.state, &started.to_string()).await.unwrap(), Processed::Started);
    let live = app.get("/v1/calls/call_a", &admin).await;
    assert_eq!((live.status, live.body["status"].as_str()), (StatusCode::OK, Some("in_progress")));

    // 121 s is three started minutes: 1 800 kopecks, crossing the 6 000 threshold.
    let ended = ended_event(&org_id, &agent, "call_a", 121).to_string();
    assert_eq!(process(&app.state, &ended).await.unwrap(), Processed::Debited);
    assert_eq!(process(&app.state, &ended).await.unwrap(), Processed::AlreadyDebited, "redelivery");
    assert_eq!(process(&app.state, &started.to_string()).await.unwrap(), Processed::Started, "late start");
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(5_200));
    assert_eq!(app.state.stores.ledger.usage_minutes(&org, T0.year_month()).await.unwrap(), 3);
    assert_eq!(app.state.stores.leases.active(&org, None).await.unwrap(), 0, "the lease is released");
    let call = app.get("/v1/calls/call_a", &admin).await;
    assert_eq!(
        (call.body["status"].as_str(), call.body["cost_kopecks"].as_i64(), call.body["duration_secs"].as_u64()),
        (Some("ended"), Some(1_800), Some(121)),
        "a late or repeated start does not reopen an ended call"
    );
    assert_eq!(call.body["transcript"][1]["text"], "С девяти до девяти.");
    assert_eq!(call.body["from"], "+7*****4567");

    let webhooks = drain(&app.state.queues.webhooks).await;
    let ids: std::collections::BTreeSet<&str> = webhooks.iter().map(|w| w["id"].as_str().unwrap()).collect();
    let day = T0.to_string()[..10].replace('-', "");
    let low_id = format!("evt_balance_low_{org_id}_{day}");
    assert_eq!(
        ids,
        [low_id.as_str(), "evt_call_ended_call_a", "evt_call_started_call_a"].into_iter().collect(),
        "repeats reuse their event ids"
    );
    let low = webhooks.iter().find(|w| w["type"] == "balance.low").unwrap();
    assert_eq!(
        (low["data"]["balance_kopecks"].as_i64(), low["data"]["threshold_kopecks"].as_i64()),
        (Some(5_200), Some(6_000))
    );
    let ended_hook = webhooks.iter().find(|w| w["type"] == "call.ended").unwrap();
    assert_eq!(
        (ended_hook["data"]["cost_kopecks"].as_i64(), ended_hook["data"]["billed_minutes"].as_u64()),
        (Some(1_800), Some(3))
    );

    // Still low: balance.low again under the same id (one per day for receivers). Over the
    // month's minutes: quota.exceeded, one id for the month.
    let settings = app
        .call(
            Method::PATCH,
            &format!("/v1/orgs/{org_id}"),
            Some(OPERATOR_TOKEN),
            Some(&json!({"quotas": {"monthly_minutes": 5}})),
            &[],
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{:?}", settings.body);
    process(&app.state, &ended_event(&org_id, &agent, "call_b", 60).to_string()).await.unwrap();
    process(&app.state, &ended_event(&org_id, &agent, "call_c", 120).to_string()).await.unwrap();
    process(&app.state, &ended_event(&org_id, &agent, "call_d", 10).to_string()).await.unwrap();
    let hooks = drain(&app.state.queues.webhooks).await;
    let ids_of = |kind: &str| -> std::collections::BTreeSet<String> {
        hooks.iter().filter(|w| w["type"] == kind).map(|w| w["id"].as_str().unwrap().to_owned()).collect()
    };
    let month = T0.year_month();
    assert_eq!(ids_of("quota.exceeded"), [format!("evt_quota_exceeded_{org_id}_monthly_minutes_{month}_5")].into());
    assert_eq!(ids_of("balance.low"), [low_id.clone()].into());
    assert_eq!(hooks.iter().filter(|w| w["type"] == "quota.exceeded").count(), 2, "call_c and call_d ended over quota");
    assert_eq!(app.state.stores.ledger.usage_minutes(&org, T0.year_month()).await.unwrap(), 7);

    let malformed = process(&app.state, "{\"type\":\"call.ended\"}").await.unwrap_err();
    assert!(is_permanent(&malformed), "{malformed}");
    let stranger = ended_event("org_nobody", &agent, "call_x", 60).to_string();
    assert!(is_permanent(&process(&app.state, &stranger).await.unwrap_err()));
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(5_200 - 600 - 1_200 - 600));

    // Over HTTP the operator queues an event; members may not (they could under-report a call).
    let queued = app.post("/v1/call-events", OPERATOR_TOKEN, &ended_event(&org_id, &agent, "call_e", 30)).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
    let refused = app.post("/v1/call-events", &admin, &ended_event(&org_id, &agent, "call_f", 30)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "operator_only"));
    let bad = app.post("/v1/call-events", OPERATOR_TOKEN, &json!({"type": "call.exploded"})).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_call_event"));
    let batch = app.state.queues.call_events.receive(10, std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(batch.len(), 1);
    let failed = golos_control::call_events::process_batch(&app.state, &batch).await;
    assert!(failed.is_empty());
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(2_800 - 600));
}

async fn admit(app: &TestApp, org: &str, agent: &str, call: &str, priority: u8) -> Value {
    let reply = app
        .post(
            "/v1/admissions",
            OPERATOR_TOKEN,
            &json!({"org_id": org, "agent_id": agent, "call_id": call, "priority": priority}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

pub async fn admission_leases_hold_queue_and_sweeper(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let a = app.create_agent(&admin, "a").await.body["id"].as_str().unwrap().to_owned();
    let b = app.create_agent(&admin, "b").await.body["id"].as_str().unwrap().to_owned();

    let broke = admit(app, &org_id, &a, "call_0", 5).await;
    assert_eq!((broke["decision"].as_str(), broke["reason"].as_str()), (Some("rejected"), Some("no_balance")));
    credit(app, &org, "p1", 100_000).await;
    let quotas = json!({"quotas": {"max_concurrent_calls": 3, "max_concurrent_calls_per_agent": 2}});
    let patched =
        app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN), Some(&quotas), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);

    let first = admit(app, &org_id, &a, "call_1", 5).await;
    assert_eq!(first["decision"], "admitted", "{first:?}");
    assert_eq!(first["lease_expires_at"].as_str().unwrap(), T0.plus_millis(30_000).to_string());
    assert_eq!(admit(app, &org_id, &a, "call_1", 5).await["decision"], "admitted", "asking again is idempotent");
    assert_eq!(admit(app, &org_id, &a, "call_2", 5).await["decision"], "admitted");
    let agent_full = admit(app, &org_id, &a, "call_3", 5).await;
    assert_eq!(
        (
            agent_full["decision"].as_str(),
            agent_full["reason"].as_str(),
            agent_full["position"].as_u64(),
            agent_full["limit"].as_u64()
        ),
        (Some("wait"), Some("agent_limit"), Some(1), Some(2))
    );
    let behind = admit(app, &org_id, &a, "call_3b", 5).await;
    assert_eq!(
        (behind["decision"].as_str(), behind["reason"].as_str(), behind["position"].as_u64()),
        (Some("wait"), Some("agent_limit"), Some(2)),
        "queued behind the agent's line, still for the agent's limit"
    );
    // The agent's line does not hold up another agent.
    assert_eq!(admit(app, &org_id, &b, "call_4", 5).await["decision"], "admitted");
    let org_full = admit(app, &org_id, &b, "call_5", 5).await;
    assert_eq!((org_full["decision"].as_str(), org_full["reason"].as_str()), (Some("wait"), Some("org_limit")));
    let urgent = admit(app, &org_id, &b, "call_6", 9).await;
    assert_eq!(
        (urgent["decision"].as_str(), urgent["position"].as_u64()),
        (Some("wait"), Some(1)),
        "priority goes first"
    );
    assert_eq!(admit(app, &org_id, &b, "call_5", 5).await["position"], 2, "a held call keeps its place behind it");

    // A slot frees up: the head of the line gets it, a newcomer does not jump the queue.
    let released = app.post("/v1/admissions/call_4/release", OPERATOR_TOKEN, &json!({"org_id": org_id})).await;
    assert_eq!(released.body["released"], true);
    let again = app.post("/v1/admissions/call_4/release", OPERATOR_TOKEN, &json!({"org_id": org_id})).await;
    assert_eq!(
        (again.status, again.body["released"].as_bool()),
        (StatusCode::OK, Some(false)),
        "release is idempotent"
    );
    assert_eq!(admit(app, &org_id, &b, "call_7", 5).await["decision"], "wait");
    assert_eq!(admit(app, &org_id, &b, "call_6", 9).await["decision"], "admitted");
    assert_eq!(app.state.stores.leases.active(&org, None).await.unwrap(), 3);

    // Heartbeats keep a lease; a worker that stops heartbeating loses it to the sweeper.
    app.clock.advance_millis(20_000);
    let beat = app.post("/v1/admissions/call_1/heartbeat", OPERATOR_TOKEN, &json!({"org_id": org_id})).await;
    assert_eq!(beat.body["lease_expires_at"].as_str().unwrap(), T0.plus_millis(50_000).to_string());
    app.clock.advance_millis(15_000);
    assert_eq!(golos_control::admission::sweep(&app.state).await.unwrap(), 2, "call_2 and call_6 stopped heartbeating");
    let gone = app.post("/v1/admissions/call_2/heartbeat", OPERATOR_TOKEN, &json!({"org_id": org_id})).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(app.state.stores.leases.active(&org, None).await.unwrap(), 1);
    // call_5 and call_7 stopped asking 15 s ago: their places lapsed, so call_3 is first.
    assert_eq!(admit(app, &org_id, &a, "call_3", 5).await["decision"], "admitted");

    // Refusals: minutes exhausted, agent disabled; members cannot admit.
    let mut disabled = agent_body("b");
    disabled["enabled"] = json!(false);
    disabled["limits"] = json!({"max_concurrent_calls": 2});
    let etag = app.get(&format!("/v1/agents/{b}"), &admin).await.header("etag").unwrap().to_owned();
    let put =
        app.call(Method::PUT, &format!("/v1/agents/{b}"), Some(&admin), Some(&disabled), &[("If-Match", &etag)]).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_eq!(admit(app, &org_id, &b, "call_8", 5).await["reason"], "agent_disabled");
    app.state
        .stores
        .ledger
        .apply(
            &org,
            &LedgerEventKind::call_debit(CallId::parse("call_long").unwrap(), 1_000 * 60, Kopecks::new(1)).unwrap(),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(admit(app, &org_id, &a, "call_9", 5).await["reason"], "minutes_exhausted");
    let member = app.post("/v1/admissions", &admin, &json!({"org_id": org_id, "agent_id": a})).await;
    assert_eq!((member.status, member.code()), (StatusCode::FORBIDDEN, "operator_only"));
}

/// The hold queue is bounded per org: once `hold_max_waiters_per_org` callers wait, a newcomer
/// is refused `hold_queue_full`, while those in line keep their places.
pub async fn admission_hold_queue_is_bounded(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "a").await.body["id"].as_str().unwrap().to_owned();
    credit(app, &org, "p1", 100_000).await;
    let quotas = json!({"quotas": {"max_concurrent_calls": 1, "max_concurrent_calls_per_agent": 1}});
    let patched =
        app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN), Some(&quotas), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(admit(app, &org_id, &agent, "call_in", 5).await["decision"], "admitted");
    let cap = app.state.config.hold_max_waiters_per_org;
    for i in 1..=cap {
        let held = admit(app, &org_id, &agent, &format!("call_w{i}"), 5).await;
        assert_eq!((held["decision"].as_str(), held["position"].as_u64()), (Some("wait"), Some(u64::from(i))));
    }
    let refused = admit(app, &org_id, &agent, "call_late", 9).await;
    assert_eq!(
        (refused["decision"].as_str(), refused["reason"].as_str()),
        (Some("rejected"), Some("hold_queue_full")),
        "{refused:?}"
    );
    assert_eq!(admit(app, &org_id, &agent, "call_w1", 5).await["position"], 1, "a waiter keeps its place");
    // A caller leaving makes room.
    let left = app.post("/v1/admissions/call_w2/release", OPERATOR_TOKEN, &json!({"org_id": org_id})).await;
    assert_eq!(left.status, StatusCode::OK);
    let late = admit(app, &org_id, &agent, "call_late", 9).await;
    assert_eq!((late["decision"].as_str(), late["position"].as_u64()), (Some("wait"), Some(1)), "{late:?}");
}

// ---- issue #15: call records as a state machine, sealed transcripts, erasure, retention ----

fn started_event(org: &str, agent: &str, call: &str, from: &str) -> Value {
    json!({"type": "call.started", "call_id": call, "org_id": org, "agent_id": agent, "direction": "inbound",
        "from": from, "to": "+74951234567", "started_at": T0.as_millis()})
}

fn turns(text: &str, count: usize) -> Vec<golos_domain::events::TranscriptTurn> {
    (0..count)
        .map(|i| golos_domain::events::TranscriptTurn {
            role: if i % 2 == 0 { golos_domain::TranscriptRole::User } else { golos_domain::TranscriptRole::Assistant },
            text: format!("{text} {i}"),
            at_ms: 1_000 * i as u64,
        })
        .collect()
}

/// A `call.ended` as the worker builds it: sealed before it is serialised.
async fn sealed_end(
    app: &TestApp,
    org: &str,
    agent: &str,
    call: &str,
    said: &[golos_domain::events::TranscriptTurn],
) -> String {
    let mut ended = golos_domain::events::CallEnded {
        call_id: CallId::parse(call).unwrap(),
        org_id: OrgId::parse(org).unwrap(),
        agent_id: AgentId::parse(agent).unwrap(),
        direction: golos_domain::CallDirection::Inbound,
        from: None,
        to: None,
        started_at: T0,
        ended_at: T0.plus_secs(61),
        duration_secs: 61,
        end_reason: golos_domain::EndReason::CallerHangup,
        transcript: None,
        metrics: json!({"turns": [{"ttft_ms": 310}], "metadata": {"crm_id": "c-1"}}),
    };
    golos_control::transcripts::seal_into(&app.state, &mut ended, said).await.unwrap();
    serde_json::to_string(&golos_domain::events::CallEvent::Ended(ended)).unwrap()
}

async fn funded_org(app: &TestApp) -> (String, OrgId, String, String) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "agent").await.body["id"].as_str().unwrap().to_owned();
    credit(app, &org, "p1", 100_000).await;
    (org_id, org, admin, agent)
}

pub async fn started_and_ended_race_in_both_orders(app: &TestApp) {
    use golos_control::call_events::process;
    let (org_id, org, admin, agent) = funded_org(app).await;
    // The end before the start: the late start changes nothing.
    let said = turns("Когда вы открыты?", 2);
    process(&app.state, &sealed_end(app, &org_id, &agent, "call_late", &said).await).await.unwrap();
    process(&app.state, &started_event(&org_id, &agent, "call_late", "+79161234567").to_string()).await.unwrap();
    let call = app.get("/v1/calls/call_late", &admin).await;
    assert_eq!((call.body["status"].as_str(), call.body["cost_kopecks"].as_i64()), (Some("ended"), Some(1_200)));
    assert_eq!(call.body["transcript"][0]["text"], "Когда вы открыты? 0");
    // Both at once, repeatedly: always ended, debited once.
    for i in 0..6 {
        let id = format!("call_race{i}");
        let start = started_event(&org_id, &agent, &id, "+79161234567").to_string();
        let end = sealed_end(app, &org_id, &agent, &id, &said).await;
        let (a, b, c) =
            tokio::join!(process(&app.state, &start), process(&app.state, &end), process(&app.state, &start));
        for result in [a, b, c] {
            result.unwrap();
        }
        let stored = app.state.calls.get(&org, &CallId::parse(&id).unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.status, CallStatus::Ended, "{id}");
        assert_eq!(stored.from, Some(PhoneNumber::parse("+79161234567").unwrap()), "the end keeps the start's number");
        assert!(stored.expires_at.is_some(), "retention set");
    }
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(100_000 - 7 * 1_200));
}

pub async fn transcripts_never_cross_a_queue_in_plaintext(app: &TestApp) {
    use golos_control::call_events::process;
    use golos_control::transcripts::{open_webhook_transcript, INLINE_BUDGET, QUEUE_MESSAGE_LIMIT};
    let (org_id, org, admin, agent) = funded_org(app).await;
    let secret = "Мой номер карты 4276";
    // A small transcript travels inline, sealed.
    let said = turns(secret, 4);
    let body = sealed_end(app, &org_id, &agent, "call_small", &said).await;
    assert!(!body.contains(secret) && body.contains("\"stored_in\":\"message\""), "{body}");
    process(&app.state, &body).await.unwrap();
    let call = app.get("/v1/calls/call_small", &admin).await;
    assert_eq!(call.body["transcript"][3]["text"], format!("{secret} 3"));
    let hooks = drain(&app.state.queues.webhooks).await;
    let ended = hooks.iter().find(|w| w["type"] == "call.ended").unwrap();
    assert!(!ended.to_string().contains(secret), "the webhook is sealed too: {ended}");
    let call_id = CallId::parse("call_small").unwrap();
    let opened = open_webhook_transcript(&app.state, &org, &call_id, &ended["data"]["transcript"]).await.unwrap();
    assert_eq!(opened, Some(said));

    // A long call's transcript would not fit a queue message: it goes by reference.
    // Sealed transcripts are gzipped first: random text, which does not shrink much, makes
    // a transcript that still overflows a message (a DynamoDB item holds it).
    let mut long = turns(secret, 600);
    for turn in &mut long {
        let noise: String = (0..16).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
        turn.text = format!("{} {noise}", turn.text);
    }
    let body = sealed_end(app, &org_id, &agent, "call_long", &long).await;
    assert!(body.len() < INLINE_BUDGET && body.len() < QUEUE_MESSAGE_LIMIT, "{} bytes", body.len());
    assert!(body.contains("\"stored_in\":\"blob\"") && !body.contains(secret));
    let long_id = CallId::parse("call_long").unwrap();
    let blob = app.state.calls.transcript_blob(&org, &long_id, app.clock.now()).await.unwrap().expect("blob");
    assert!(!String::from_utf8_lossy(&blob).contains(secret), "the blob is an envelope");
    app.state.queues.call_events.send(&body, std::time::Duration::ZERO).await.expect("fits a queue message");
    let batch = app.state.queues.call_events.receive(10, std::time::Duration::from_secs(30)).await.unwrap();
    assert!(golos_control::call_events::process_batch(&app.state, &batch).await.is_empty());
    let stored = app.state.calls.get(&org, &long_id).await.unwrap().unwrap();
    assert_eq!(golos_control::transcripts::open(&app.state, &org, &stored.transcript.unwrap()).await.unwrap(), long);
    assert_eq!(app.state.calls.transcript_blob(&org, &long_id, app.clock.now()).await.unwrap(), None, "consumed");
    let hooks = drain(&app.state.queues.webhooks).await;
    let ended = hooks.iter().find(|w| w["type"] == "call.ended").unwrap();
    assert_eq!(ended["data"]["transcript"], json!({"stored_in": "call_record"}));
    let opened = open_webhook_transcript(&app.state, &org, &long_id, &ended["data"]["transcript"]).await.unwrap();
    assert_eq!(opened.map(|t| t.len()), Some(600));
    // Redelivered after the blob was consumed: nothing changes, nothing fails.
    assert_eq!(process(&app.state, &body).await.unwrap(), golos_control::call_events::Processed::AlreadyDebited);

    // Over HTTP the operator may send plaintext turns (TLS); only the envelope is queued.
    let mut event = ended_event(&org_id, &agent, "call_http", 30);
    event["transcript"] = json!([{"role": "user", "text": secret, "at_ms": 5}]);
    let queued = app.post("/v1/call-events", OPERATOR_TOKEN, &event).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
    let batch = app.state.queues.call_events.receive(10, std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(!batch[0].body.contains(secret), "{}", batch[0].body);
    assert!(golos_control::call_events::process_batch(&app.state, &batch).await.is_empty());
    let call = app.get("/v1/calls/call_http", &admin).await;
    assert_eq!(call.body["transcript"][0]["text"], secret);
}

pub async fn erasure_removes_a_callers_data_from_the_store(app: &TestApp) {
    use golos_control::call_events::process;
    let (org_id, org, admin, agent) = funded_org(app).await;
    let caller = "+79161234567";
    let said = turns("Меня зовут Анна", 2);
    for (call, from) in [("call_e1", caller), ("call_e2", caller), ("call_e3", "+79997654321")] {
        process(&app.state, &started_event(&org_id, &agent, call, from).to_string()).await.unwrap();
        process(&app.state, &sealed_end(app, &org_id, &agent, call, &said).await).await.unwrap();
    }
    // A live call of the same caller, with a resume snapshot.
    process(&app.state, &started_event(&org_id, &agent, "call_e4", caller).to_string()).await.unwrap();
    let live = CallId::parse("call_e4").unwrap();
    app.state.stores.contexts.put(&live, b"snapshot", T0.plus_secs(300)).await.unwrap();
    let snapshotted = CallId::parse("call_e1").unwrap();
    app.state.stores.contexts.put(&snapshotted, b"snapshot", T0.plus_secs(300)).await.unwrap();

    // Admins only.
    let editor = app.key_with_role(&admin, "editor").await;
    let refused = app.call(Method::DELETE, "/v1/calls/call_e1", Some(&editor), None, &[]).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "insufficient_role"));
    let missing = app.call(Method::DELETE, "/v1/calls/call_nope", Some(&admin), None, &[]).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));

    // One call.
    let erased = app.call(Method::DELETE, "/v1/calls/call_e3", Some(&admin), None, &[]).await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{:?}", erased.body);
    let e3 = app.state.calls.get(&org, &CallId::parse("call_e3").unwrap()).await.unwrap().unwrap();
    assert_eq!((e3.transcript.as_ref(), e3.from.as_ref(), &e3.metrics), (None, None, &json!({})));
    assert_eq!((e3.status, e3.cost), (CallStatus::Ended, Some(Kopecks::new(1_200))), "a billing tombstone");
    let shown = app.get("/v1/calls/call_e3", &admin).await;
    assert_eq!((shown.body["from"].as_str(), shown.body["transcript"].clone()), (Some("+7*****4321"), json!([])));
    assert!(shown.body["erased_at"].is_string(), "{:?}", shown.body);
    let again = app.call(Method::DELETE, "/v1/calls/call_e3", Some(&admin), None, &[]).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);

    // Every call of a number.
    let bad = app.post("/v1/erasures", &admin, &json!({"phone_number": "89161234567"})).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_phone_number"));
    assert!(!bad.body.to_string().contains("89161234567"), "the refusal does not repeat the number");
    let done = app.post("/v1/erasures", &admin, &json!({"phone_number": "+7 916 123-45-67"})).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(
        (done.body["erased_calls"].as_u64(), done.body["phone_number"].as_str()),
        (Some(3), Some("+7*****4567"))
    );
    for id in ["call_e1", "call_e2", "call_e4"] {
        let call = CallId::parse(id).unwrap();
        let stored = app.state.calls.get(&org, &call).await.unwrap().unwrap();
        assert!(stored.erased.is_some(), "{id}");
        assert_eq!(
            (stored.transcript.as_ref(), stored.from.as_ref(), &stored.metrics),
            (None, None, &json!({})),
            "{id}"
        );
        assert_eq!(app.state.stores.contexts.get(&call, T0).await.unwrap(), None, "{id}: the snapshot is gone");
        let raw = format!("{stored:?}");
        assert!(!raw.contains("9161234567"), "{raw}");
    }
    // The live call's end arrives afterwards: billed, but its data stays erased.
    process(&app.state, &sealed_end(app, &org_id, &agent, "call_e4", &said).await).await.unwrap();
    let e4 = app.state.calls.get(&org, &live).await.unwrap().unwrap();
    assert_eq!((e4.status, e4.transcript.as_ref(), e4.cost), (CallStatus::Ended, None, Some(Kopecks::new(1_200))));
    let repeat = app.post("/v1/erasures", &admin, &json!({"phone_number": caller})).await;
    assert_eq!(repeat.body["erased_calls"].as_u64(), Some(0));

    let audit = app.get("/v1/audit-log", &admin).await;
    let entries = audit.body["items"].as_array().unwrap();
    let erasure = entries.iter().find(|e| e["action"] == "data.erase").expect("audited");
    assert_eq!(erasure["target"], "+7*****4567");
    assert!(entries.iter().any(|e| e["action"] == "call.erase" && e["target"] == "call_e3"));
    assert!(!audit.body.to_string().contains("9161234567"), "the audit log masks the number");
}

pub async fn retention_is_per_org_and_swept(app: &TestApp) {
    use golos_control::call_events::process;
    let (org_id, org, admin, agent) = funded_org(app).await;
    let path = format!("/v1/orgs/{org_id}");
    for bad in [json!(0), json!(3651), json!("90"), json!(1.5)] {
        let reply = app
            .call(Method::PATCH, &path, Some(&admin), Some(&json!({"settings": {"retention_days": bad}})), &[])
            .await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_settings"), "{bad}");
    }
    // Default: 90 days from the end.
    process(&app.state, &sealed_end(app, &org_id, &agent, "call_r1", &turns("да", 1)).await).await.unwrap();
    let r1 = app.state.calls.get(&org, &CallId::parse("call_r1").unwrap()).await.unwrap().unwrap();
    assert_eq!(r1.expires_at, Some(T0.plus_secs(61 + 90 * 86_400)));
    let set =
        app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"settings": {"retention_days": 1}})), &[]).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    process(&app.state, &sealed_end(app, &org_id, &agent, "call_r2", &turns("да", 1)).await).await.unwrap();
    let r2_id = CallId::parse("call_r2").unwrap();
    let r2 = app.state.calls.get(&org, &r2_id).await.unwrap().unwrap();
    assert_eq!(r2.expires_at, Some(T0.plus_secs(61 + 86_400)));

    app.clock.advance_millis(2 * 86_400_000);
    let deleted = golos_control::retention::sweep(&app.state).await.unwrap();
    let local = app.state.health_checks.iter().all(|h| h.name() != "dynamodb");
    if local {
        assert_eq!(deleted, 1);
        assert_eq!(app.state.calls.get(&org, &r2_id).await.unwrap(), None, "swept");
    } else {
        assert_eq!(deleted, 0, "DynamoDB's TTL deletes it (the ttl attribute is checked in the adapter's tests)");
    }
    assert!(app.state.calls.get(&org, &CallId::parse("call_r1").unwrap()).await.unwrap().is_some());
}

pub async fn sip_trunks_are_the_operators_and_admins_read_their_own(app: &TestApp) {
    let (org, admin) = app.org_with_admin().await;
    let granted =
        app.post(&format!("/v1/orgs/{org}/numbers"), OPERATOR_TOKEN, &json!({"number": "+74951234567"})).await;
    assert_eq!(granted.status, StatusCode::CREATED);
    let body = json!({"org_id": org, "name": "Exolve", "source_networks": ["185.71.76.0/27"],
        "digest_username": "golos", "digest_password": "s3cret-digest", "numbers": ["+74951234567"]});
    let by_admin = app.post("/v1/sip-trunks", &admin, &body).await;
    assert_eq!((by_admin.status, by_admin.code()), (StatusCode::FORBIDDEN, "operator_only"));
    // Only numbers granted to the org, never every address.
    let mut foreign = body.clone();
    foreign["numbers"] = json!(["+74950000000"]);
    let refused = app.post("/v1/sip-trunks", OPERATOR_TOKEN, &foreign).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(refused.body["errors"][0]["code"], "number_not_granted", "{:?}", refused.body);
    let mut open = body.clone();
    open["source_networks"] = json!(["0.0.0.0/0"]);
    let refused = app.post("/v1/sip-trunks", OPERATOR_TOKEN, &open).await;
    assert_eq!(refused.body["errors"][0]["code"], "invalid_network", "{:?}", refused.body);
    // The health-check address is a host and a port, never a URI with a user in it.
    let mut with_user = body.clone();
    with_user["sip_address"] = json!("golos@sip.exolve.ru");
    let refused = app.post("/v1/sip-trunks", OPERATOR_TOKEN, &with_user).await;
    assert_eq!(
        (refused.status, &refused.body["errors"][0]["field"], &refused.body["errors"][0]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("sip_address"), &json!("invalid_sip_address")),
        "{:?}",
        refused.body
    );

    let created = app.post("/v1/sip-trunks", OPERATOR_TOKEN, &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(!created.body.to_string().contains("s3cret-digest"), "the password never comes back");
    assert_eq!(created.body["digest_password_fingerprint"].as_str().map(str::len), Some(16));
    assert_eq!(created.body["sip_address"], Value::Null, "without an address the trunk is not probed");
    assert_eq!((created.header("etag"), &created.body["numbers"]), (Some("\"1\""), &json!(["+74951234567"])));

    // The org's admins read their own; nobody else's, and viewers not at all.
    let own = app.get("/v1/sip-trunks", &admin).await;
    assert_eq!(own.body["items"].as_array().map(Vec::len), Some(1), "{:?}", own.body);
    assert_eq!(app.get(&format!("/v1/sip-trunks/{id}"), &admin).await.status, StatusCode::OK);
    let (_, other) = app.org_with_admin().await;
    assert_eq!(app.get("/v1/sip-trunks", &other).await.body["items"], json!([]));
    assert_eq!(app.get(&format!("/v1/sip-trunks/{id}"), &other).await.status, StatusCode::NOT_FOUND);
    let viewer = app.key_with_role(&admin, "viewer").await;
    assert_eq!(app.get("/v1/sip-trunks", &viewer).await.status, StatusCode::FORBIDDEN);

    // Versioned updates; removing the digest credentials removes the stored password.
    let path = format!("/v1/sip-trunks/{id}");
    let renamed = app
        .call(
            Method::PATCH,
            &path,
            Some(OPERATOR_TOKEN),
            Some(&json!({"name": "Exolve MSK"})),
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!((renamed.status, renamed.body["version"].as_u64()), (StatusCode::OK, Some(2)), "{:?}", renamed.body);
    let stale = app
        .call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"enabled": false})), &[("If-Match", "\"1\"")])
        .await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    let no_digest =
        app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"digest_username": null})), &[]).await;
    assert_eq!(no_digest.status, StatusCode::OK, "{:?}", no_digest.body);
    assert_eq!(
        (&no_digest.body["digest_username"], &no_digest.body["digest_password_fingerprint"]),
        (&Value::Null, &Value::Null)
    );
    // The probe address is stored as host:port; null stops the probes.
    let probed =
        app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"sip_address": "SIP.Exolve.ru"})), &[]).await;
    assert_eq!(probed.body["sip_address"], "sip.exolve.ru:5060", "{:?}", probed.body);
    assert_eq!(app.get(&path, OPERATOR_TOKEN).await.body["sip_address"], "sip.exolve.ru:5060");
    let renamed_only =
        app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"name": "Exolve"})), &[]).await;
    assert_eq!(renamed_only.body["sip_address"], "sip.exolve.ru:5060", "a PATCH without it keeps it");
    let unprobed = app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"sip_address": null})), &[]).await;
    assert_eq!(unprobed.body["sip_address"], Value::Null, "{:?}", unprobed.body);
    let unidentified =
        app.call(Method::PATCH, &path, Some(OPERATOR_TOKEN), Some(&json!({"source_networks": []})), &[]).await;
    assert_eq!(unidentified.body["errors"][0]["code"], "no_identification", "{:?}", unidentified.body);
    let by_admin = app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"enabled": false})), &[]).await;
    assert_eq!(by_admin.status, StatusCode::FORBIDDEN);

    assert_eq!(app.call(Method::DELETE, &path, Some(OPERATOR_TOKEN), None, &[]).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, OPERATOR_TOKEN).await.status, StatusCode::NOT_FOUND);
    let audit = app.get("/v1/audit-log", &admin).await.body.to_string();
    for action in ["sip_trunk.create", "sip_trunk.update", "sip_trunk.delete"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}

pub async fn webhook_endpoints_are_the_orgs_with_a_secret_shown_once(app: &TestApp) {
    use base64::Engine as _;
    let (org, admin) = app.org_with_admin().await;
    let editor = app.key_with_role(&admin, "editor").await;
    let body = json!({"url": "https://crm.example.ru/golos", "event_types": ["call.ended", "balance.low"],
        "description": "CRM"});

    // The egress policy: HTTPS to a public destination, nothing else without the operator.
    for (url, code) in [
        ("http://crm.example.ru/golos", "https_required"),
        ("https://10.0.0.1/golos", "forbidden_destination"),
        ("https://169.254.169.254/latest/meta-data/", "forbidden_destination"),
    ] {
        let mut refused_body = body.clone();
        refused_body["url"] = json!(url);
        let refused = app.post("/v1/webhook-endpoints", &admin, &refused_body).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{url}");
        assert_eq!(
            (&refused.body["errors"][0]["field"], &refused.body["errors"][0]["code"]),
            (&json!("url"), &json!(code))
        );
    }
    let unknown =
        app.post("/v1/webhook-endpoints", &admin, &json!({"url": "https://x.ru/", "event_types": ["*"]})).await;
    assert_eq!(unknown.body["errors"][0]["code"], "unknown_event_type", "{:?}", unknown.body);
    let by_editor = app.post("/v1/webhook-endpoints", &editor, &body).await;
    assert_eq!((by_editor.status, by_editor.code()), (StatusCode::FORBIDDEN, "insufficient_role"));

    // Created: the secret is in this answer and nowhere else.
    let created = app
        .call(Method::POST, "/v1/webhook-endpoints", Some(&admin), Some(&body), &[("Idempotency-Key", "whe-1")])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let raw = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    assert_eq!(raw.len(), 32);
    let endpoint = &created.body["endpoint"];
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!((endpoint["org_id"].as_str(), created.header("etag")), (Some(org.as_str()), Some("\"1\"")));
    assert_eq!(endpoint["event_types"], json!(["call.ended", "balance.low"]));
    assert_eq!((endpoint["enabled"].as_bool(), endpoint["description"].as_str()), (Some(true), Some("CRM")));
    let fingerprint = endpoint["secret_fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint, golos_control::credentials::fingerprint(&secret));
    let path = format!("/v1/webhook-endpoints/{id}");
    let read = app.get(&path, &editor).await;
    assert_eq!((read.status, read.header("etag")), (StatusCode::OK, Some("\"1\"")), "editors read");
    assert!(!read.body.to_string().contains(&secret));
    assert_eq!(read.body["secret_fingerprint"], fingerprint.as_str());
    let listed = app.get("/v1/webhook-endpoints", &editor).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1), "{:?}", listed.body);
    assert!(!listed.body.to_string().contains(&secret));
    let org_id = OrgId::parse(&org).unwrap();
    let stored = app.state.stores.webhook_endpoints.list(&org_id).await.unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains(&secret), "stored sealed, never in plaintext");
    // A retry of the creation learns which endpoint was made, not the secret.
    let replay = app
        .call(Method::POST, "/v1/webhook-endpoints", Some(&admin), Some(&body), &[("Idempotency-Key", "whe-1")])
        .await;
    assert_eq!((replay.status, replay.code()), (StatusCode::CONFLICT, "replay_of_secret"), "{:?}", replay.body);
    assert_eq!(replay.body["resource_id"], id.as_str());
    assert!(!replay.body.to_string().contains(&secret));

    // Viewers do not read; another org's admin does not find it.
    let viewer = app.key_with_role(&admin, "viewer").await;
    assert_eq!(app.get("/v1/webhook-endpoints", &viewer).await.status, StatusCode::FORBIDDEN);
    let (_, other) = app.org_with_admin().await;
    assert_eq!(app.get(&path, &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/webhook-endpoints", &other).await.body["items"], json!([]));
    for (method, reply_body) in [(Method::PATCH, Some(json!({"enabled": false}))), (Method::DELETE, None)] {
        let reply = app.call(method, &path, Some(&other), reply_body.as_ref(), &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    let rotate_path = format!("{path}/rotate-secret");
    assert_eq!(app.call(Method::POST, &rotate_path, Some(&other), None, &[]).await.status, StatusCode::NOT_FOUND);

    // Versioned updates, held to the same rules.
    let disabled = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(&json!({"enabled": false, "event_types": ["call.started"]})),
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!((disabled.status, disabled.body["version"].as_u64()), (StatusCode::OK, Some(2)), "{:?}", disabled.body);
    assert_eq!((&disabled.body["enabled"], &disabled.body["event_types"]), (&json!(false), &json!(["call.started"])));
    assert_eq!(disabled.body["url"], "https://crm.example.ru/golos", "a field not sent is kept");
    let stale =
        app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"enabled": true})), &[("If-Match", "\"1\"")]).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    let private = app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"url": "https://10.0.0.1/"})), &[]).await;
    assert_eq!(private.body["errors"][0]["code"], "forbidden_destination", "{:?}", private.body);
    let by_editor = app.call(Method::PATCH, &path, Some(&editor), Some(&json!({"enabled": true})), &[]).await;
    assert_eq!(by_editor.status, StatusCode::FORBIDDEN);
    let enabled = app.call(Method::PATCH, &path, Some(&admin), Some(&json!({"enabled": true})), &[]).await;
    assert_eq!(enabled.body["enabled"], true, "re-enabling is one PATCH");

    // Rotation: a new secret shown once; the previous one signs for the overlap, then not.
    let too_long =
        app.call(Method::POST, &rotate_path, Some(&admin), Some(&json!({"overlap_secs": 604_801})), &[]).await;
    assert_eq!((too_long.status, too_long.code()), (StatusCode::BAD_REQUEST, "invalid_overlap"));
    let rotated = app.call(Method::POST, &rotate_path, Some(&admin), None, &[("Idempotency-Key", "rot-1")]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated.body["endpoint"]["previous_secret_fingerprint"], fingerprint.as_str());
    assert!(rotated.body["endpoint"]["previous_secret_expires_at"].is_string());
    let replayed = app.call(Method::POST, &rotate_path, Some(&admin), None, &[("Idempotency-Key", "rot-1")]).await;
    assert_eq!(replayed.code(), "replay_of_secret");
    assert!(!replayed.body.to_string().contains(&new_secret));
    let stored = app
        .state
        .stores
        .webhook_endpoints
        .get(&org_id, &golos_domain::WebhookEndpointId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains(&new_secret));
    let signing = |at| golos_control::webhooks::signing_secrets(&app.state, &stored, at);
    let now = app.clock.now();
    let both: Vec<String> = signing(now).await.unwrap().iter().map(|s| s.expose().to_owned()).collect();
    assert_eq!(both, [new_secret.clone(), secret.clone()], "both sign during the overlap");
    let after: Vec<String> =
        signing(now.plus_secs(86_400)).await.unwrap().iter().map(|s| s.expose().to_owned()).collect();
    assert_eq!(after.as_slice(), std::slice::from_ref(&new_secret), "only the new one after a day");
    let by_editor = app.call(Method::POST, &rotate_path, Some(&editor), None, &[]).await;
    assert_eq!(by_editor.status, StatusCode::FORBIDDEN);

    // At most 20 per organisation; a deletion frees a place.
    for i in 1..20 {
        let more = app
            .post(
                "/v1/webhook-endpoints",
                &admin,
                &json!({"url": format!("https://crm.example.ru/{i}"), "event_types": ["call.ended"]}),
            )
            .await;
        assert_eq!(more.status, StatusCode::CREATED, "{i}: {:?}", more.body);
    }
    let over = app.post("/v1/webhook-endpoints", &admin, &body).await;
    assert_eq!((over.status, over.code()), (StatusCode::FORBIDDEN, "max_webhook_endpoints_reached"), "{:?}", over.body);
    let first_page = app.get("/v1/webhook-endpoints?limit=15", &admin).await;
    assert_eq!(first_page.body["items"].as_array().map(Vec::len), Some(15));
    let cursor = first_page.body["next_cursor"].as_str().unwrap().to_owned();
    let second_page = app.get(&format!("/v1/webhook-endpoints?limit=15&cursor={cursor}"), &admin).await;
    assert_eq!(
        (second_page.body["items"].as_array().map(Vec::len), &second_page.body["next_cursor"]),
        (Some(5), &Value::Null)
    );

    assert_eq!(app.call(Method::DELETE, &path, Some(&editor), None, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None, &[]).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.post("/v1/webhook-endpoints", &admin, &body).await.status, StatusCode::CREATED, "a place was freed");
    let audit = app.get("/v1/audit-log?limit=100", &admin).await.body.to_string();
    for action in [
        "webhook_endpoint.create",
        "webhook_endpoint.update",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.delete",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(!audit.contains(&secret) && !audit.contains(&new_secret));

    // The API document describes every route and the answer that carries the secret.
    let spec = app.call(Method::GET, "/openapi.json", None, None, &[]).await.body;
    let paths = &spec["paths"];
    for (path, methods) in [
        ("/v1/webhook-endpoints", &["get", "post"][..]),
        ("/v1/webhook-endpoints/{endpoint_id}", &["get", "patch", "delete"][..]),
        ("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", &["post"][..]),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path} in the document");
        }
    }
    let schemas = &spec["components"]["schemas"];
    assert!(schemas["EndpointWithSecretView"]["properties"]["secret"].is_object(), "{schemas}");
    assert!(schemas["EndpointView"]["properties"]["secret_fingerprint"].is_object());
    assert!(schemas["EndpointView"]["properties"].get("secret").is_none(), "a read never shows the secret");
}
