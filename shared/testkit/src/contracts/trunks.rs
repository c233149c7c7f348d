//! SIP trunks: versioned documents, created once, updated only over the version read.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::PhoneNumber;
use golos_ports::{PortError, SipTrunk};

fn trunk(org: &golos_domain::OrgId) -> SipTrunk {
    SipTrunk {
        id: fixtures::trunk_id(),
        org_id: org.clone(),
        name: "Exolve".into(),
        source_networks: vec!["185.71.76.0/27".into()],
        digest_username: None,
        digest_password: None,
        digest_fingerprint: None,
        numbers: vec![PhoneNumber::parse("+74951234567").expect("test number")],
        enabled: true,
        sip_address: None,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

pub async fn trunks_are_versioned_documents(h: &impl Harness) {
    let trunks = h.stores().trunks;
    let org = fixtures::org_id();
    let (a, b) = (trunk(&org), trunk(&org));
    trunks.create(&a).await.unwrap();
    trunks.create(&b).await.unwrap();
    assert!(matches!(trunks.create(&a).await, Err(PortError::AlreadyExists { .. })), "an id is taken once");
    assert_eq!(trunks.get(&a.id).await.unwrap().as_ref(), Some(&a));

    let renamed =
        SipTrunk { name: "Exolve, Moscow".into(), sip_address: Some("sip.exolve.ru:5060".into()), ..a.clone() };
    assert_eq!(trunks.update(&renamed).await.unwrap(), 2);
    let stored = trunks.get(&a.id).await.unwrap().expect("still there");
    assert_eq!((stored.name.as_str(), stored.version), ("Exolve, Moscow", 2));
    assert_eq!(stored.sip_address.as_deref(), Some("sip.exolve.ru:5060"), "the probe address is kept");
    // An update over the version read before is refused with the current version.
    assert!(matches!(trunks.update(&a).await, Err(PortError::Conflict { expected: 1, actual: 2 })));

    // Of two updates from the same version exactly one wins.
    let (x, y) = (SipTrunk { enabled: false, ..stored.clone() }, SipTrunk { name: "other".into(), ..stored });
    let (rx, ry) = tokio::join!(trunks.update(&x), trunks.update(&y));
    assert_eq!([rx.is_ok(), ry.is_ok()].iter().filter(|ok| **ok).count(), 1, "{rx:?} {ry:?}");

    let ours: Vec<_> =
        trunks.all().await.unwrap().into_iter().filter(|t| t.id == a.id || t.id == b.id).map(|t| t.id).collect();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(ours, expected, "every trunk, ordered by id");

    trunks.delete(&a.id).await.unwrap();
    assert_eq!(trunks.get(&a.id).await.unwrap(), None);
    assert!(matches!(trunks.delete(&a.id).await, Err(PortError::NotFound { .. })));
    assert!(matches!(trunks.update(&a).await, Err(PortError::NotFound { .. })));
}
