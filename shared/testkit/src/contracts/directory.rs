//! Organisations, agents and API keys.

use crate::fixtures::{self, agent_config, T0};
use crate::Harness;
use golos_domain::rbac::Role;
use golos_ports::{ApiKeyRecord, PageRequest, PortError};
use std::collections::BTreeSet;
use std::sync::Arc;

pub async fn orgs_create_get_update_list(h: &impl Harness) {
    let orgs = h.stores().orgs;
    let id = fixtures::org_id();
    let mut org = fixtures::org(&id);
    assert_eq!(orgs.get(&id).await.unwrap(), None);
    orgs.create(&org).await.unwrap();
    assert_eq!(orgs.get(&id).await.unwrap().as_ref(), Some(&org));
    assert!(matches!(orgs.create(&org).await, Err(PortError::AlreadyExists { .. })), "a taken org id must be refused");

    org.quotas.max_agents = 7;
    org.disabled = true;
    org.name = "ООО «Ромашка и сыновья»".into();
    assert_eq!(orgs.update(&org).await.unwrap(), 2);
    org.version = 2;
    assert_eq!(orgs.get(&id).await.unwrap().as_ref(), Some(&org));
    // An edit made over version 1 lost the race: it must not undo the disable.
    let mut stale = fixtures::org(&id);
    stale.name = "stale".into();
    assert!(matches!(orgs.update(&stale).await, Err(PortError::Conflict { expected: 1, actual: 2 })));
    assert_eq!(orgs.get(&id).await.unwrap().as_ref(), Some(&org));
    let ghost = fixtures::org(&fixtures::org_id());
    assert!(matches!(orgs.update(&ghost).await, Err(PortError::NotFound { .. })));
    // Racing updates over one version: exactly one wins.
    let racers = futures::future::join_all((0..8).map(|i| {
        let mut edit = org.clone();
        edit.name = format!("racer {i}");
        let orgs = std::sync::Arc::clone(&orgs);
        async move { orgs.update(&edit).await }
    }))
    .await;
    assert_eq!(racers.iter().filter(|r| r.is_ok()).count(), 1, "{racers:?}");

    let mut created = BTreeSet::from([id.clone()]);
    for _ in 0..4 {
        let other = fixtures::org(&fixtures::org_id());
        orgs.create(&other).await.unwrap();
        created.insert(other.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = orgs.list(&page).await.unwrap();
        assert!(result.items.len() <= 2);
        seen.extend(result.items.into_iter().map(|o| o.id));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 2),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "orgs are listed by id");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>().len(), seen.len(), "no org is listed twice");
    assert!(created.iter().all(|c| seen.contains(c)), "every org is listed");
}

pub async fn agents_versioned_updates(h: &impl Harness) {
    let agents = h.stores().agents;
    let (org, id) = (fixtures::org_id(), fixtures::agent_id());
    let created = agents.create(&org, &id, &agent_config("v1"), 50, T0).await.unwrap();
    assert_eq!((created.version, created.created_at, created.updated_at), (1, T0, T0));
    assert_eq!(agents.get(&org, &id).await.unwrap().as_ref(), Some(&created));
    assert!(matches!(
        agents.create(&org, &id, &agent_config("again"), 50, T0).await,
        Err(PortError::AlreadyExists { .. })
    ));

    let later = T0.plus_secs(5);
    let v2 = agents.update(&org, &id, &agent_config("v2"), 1, later).await.unwrap();
    assert_eq!((v2.version, v2.config.name.as_str(), v2.created_at, v2.updated_at), (2, "v2", T0, later));
    // A writer holding the old version loses and learns the stored one.
    match agents.update(&org, &id, &agent_config("stale"), 1, later).await {
        Err(PortError::Conflict { expected: 1, actual: 2 }) => {}
        other => panic!("stale update must conflict with the stored version, got {other:?}"),
    }
    assert_eq!(agents.get(&org, &id).await.unwrap().unwrap().config.name, "v2");
    assert!(matches!(
        agents.update(&org, &fixtures::agent_id(), &agent_config("x"), 1, later).await,
        Err(PortError::NotFound { .. })
    ));

    // Concurrent writers of the same version: exactly one wins.
    let winners = futures::future::join_all((0..8).map(|i| {
        let (agents, org, id) = (Arc::clone(&agents), org.clone(), id.clone());
        async move { agents.update(&org, &id, &agent_config(&format!("racer {i}")), 2, later).await }
    }))
    .await;
    assert_eq!(winners.iter().filter(|r| r.is_ok()).count(), 1, "{winners:?}");
    assert!(winners.iter().all(|r| r.is_ok() || matches!(r, Err(PortError::Conflict { expected: 2, actual: 3 }))));
}

pub async fn agents_quota_is_atomic(h: &impl Harness) {
    let agents = h.stores().agents;
    let org = fixtures::org_id();
    let results = futures::future::join_all((0..12).map(|i| {
        let (agents, org) = (Arc::clone(&agents), org.clone());
        async move { agents.create(&org, &fixtures::agent_id(), &agent_config(&format!("a{i}")), 5, T0).await }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5, "exactly max_agents creations succeed");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(PortError::QuotaExceeded { quota: "max_agents", limit: 5 }))),
        "{results:?}"
    );
    assert_eq!(agents.count(&org).await.unwrap(), 5);
    // Deleting frees a slot.
    let victim = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
    agents.delete(&org, &victim.id, Some(1)).await.unwrap();
    assert_eq!(agents.count(&org).await.unwrap(), 4);
    agents.create(&org, &fixtures::agent_id(), &agent_config("refill"), 5, T0).await.unwrap();
    assert!(matches!(
        agents.create(&org, &fixtures::agent_id(), &agent_config("over"), 5, T0).await,
        Err(PortError::QuotaExceeded { .. })
    ));
    // Another org is not affected.
    agents.create(&fixtures::org_id(), &fixtures::agent_id(), &agent_config("other org"), 5, T0).await.unwrap();
}

pub async fn agents_list_and_delete(h: &impl Harness) {
    let agents = h.stores().agents;
    let org = fixtures::org_id();
    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let id = fixtures::agent_id();
        agents.create(&org, &id, &agent_config(&format!("a{i}")), 50, T0).await.unwrap();
        ids.insert(id);
    }
    agents.create(&fixtures::org_id(), &fixtures::agent_id(), &agent_config("elsewhere"), 50, T0).await.unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = agents.list(&org, &page).await.unwrap();
        seen.extend(result.items.into_iter().map(|a| a.id));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 2),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().cloned().collect::<Vec<_>>(), "an org's agents, by id, each once");

    let id = ids.first().unwrap().clone();
    assert!(matches!(agents.delete(&org, &id, Some(9)).await, Err(PortError::Conflict { expected: 9, actual: 1 })));
    agents.delete(&org, &id, None).await.unwrap();
    assert_eq!(agents.get(&org, &id).await.unwrap(), None);
    assert!(matches!(agents.delete(&org, &id, None).await, Err(PortError::NotFound { .. })));
    assert_eq!(agents.count(&org).await.unwrap(), 4);
}

pub async fn api_keys_lookup_list_revoke(h: &impl Harness) {
    let keys = h.stores().api_keys;
    let org = fixtures::org_id();
    let record = |id, role| ApiKeyRecord {
        id,
        org_id: org.clone(),
        name: "ci".into(),
        role,
        secret_hash: "ab".repeat(32),
        created_at: T0,
        expires_at: Some(T0.plus_secs(86_400)),
        revoked_at: None,
    };
    let admin = record(fixtures::key_id(), Role::Admin);
    let viewer = record(fixtures::key_id(), Role::Viewer);
    keys.create(&admin).await.unwrap();
    keys.create(&viewer).await.unwrap();
    assert!(matches!(keys.create(&admin).await, Err(PortError::AlreadyExists { .. })));
    let mut foreign = record(fixtures::key_id(), Role::Editor);
    foreign.org_id = fixtures::org_id();
    keys.create(&foreign).await.unwrap();

    assert_eq!(keys.get(&admin.id).await.unwrap().as_ref(), Some(&admin));
    assert_eq!(keys.get(&fixtures::key_id()).await.unwrap(), None);
    let listed = keys.list(&org, &PageRequest::first(10)).await.unwrap();
    let mut expected = vec![admin.id.clone(), viewer.id.clone()];
    expected.sort();
    assert_eq!(listed.items.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), expected);
    assert_eq!(listed.next_cursor, None);

    let revoked = keys.revoke(&viewer.id, T0.plus_secs(60)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(T0.plus_secs(60)));
    assert!(revoked.is_usable_at(T0.plus_secs(59)) && !revoked.is_usable_at(T0.plus_secs(60)));
    // Revoking again keeps the first time.
    assert_eq!(keys.revoke(&viewer.id, T0.plus_secs(120)).await.unwrap().revoked_at, Some(T0.plus_secs(60)));
    assert_eq!(keys.get(&viewer.id).await.unwrap().unwrap().revoked_at, Some(T0.plus_secs(60)));
    // An earlier time wins: cutting a rotation overlap short.
    assert_eq!(keys.revoke(&viewer.id, T0.plus_secs(30)).await.unwrap().revoked_at, Some(T0.plus_secs(30)));
    assert!(matches!(keys.revoke(&fixtures::key_id(), T0).await, Err(PortError::NotFound { .. })));
}
