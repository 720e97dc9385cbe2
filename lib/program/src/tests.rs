use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(id: &str, direction: Direction, action: Action) -> Rule {
    Rule {
        id: id.into(),
        direction,
        endpoints: vec![0],
        remote: None,
        protocol: None,
        src_ports: vec![],
        dst_ports: vec![],
        action,
        log: false,
        audit: false,
        mirror: None,
        redirect: None,
    }
}

/// web (10.0.0.1) and app (10.0.0.2) on one device.
fn sample() -> ProgramParts {
    let mut admin_deny = rule("admin/quarantine", Direction::Egress, Action::Deny);
    admin_deny.endpoints = vec![0, 1];
    admin_deny.remote = Some(1);
    let mut pass_dns = rule("admin/dns", Direction::Egress, Action::NextTier);
    pass_dns.endpoints = vec![0, 1];
    pass_dns.protocol = Some(Protocol::UDP);
    pass_dns.dst_ports = vec![PortRange::single(53)];
    let mut web_to_app = rule("app/web-to-app", Direction::Egress, Action::Allow);
    web_to_app.remote = Some(0);
    web_to_app.protocol = Some(Protocol::TCP);
    web_to_app.dst_ports = vec![PortRange::single(8080)];
    let mut app_from_web = rule("app/app-from-web", Direction::Ingress, Action::Allow);
    app_from_web.endpoints = vec![1];
    app_from_web.remote = Some(2);
    app_from_web.protocol = Some(Protocol::TCP);
    app_from_web.dst_ports = vec![PortRange::single(8080)];
    let mut audit = rule("base/audit", Direction::Egress, Action::Deny);
    audit.audit = true;
    ProgramParts {
        format: FORMAT_VERSION,
        device: "dpu-1".into(),
        generation: 3,
        endpoints: vec![
            Endpoint {
                name: "shop/app-1/eth0".into(),
                addresses: vec![ip("10.0.0.2")],
            },
            Endpoint {
                name: "shop/web-1/eth0".into(),
                addresses: vec![ip("10.0.0.1")],
            },
        ],
        address_sets: vec![
            AddressSet {
                name: "app".into(),
                prefixes: PrefixSet::from_prefixes([Prefix::host(ip("10.0.0.2"))]),
            },
            AddressSet {
                name: "quarantine".into(),
                prefixes: PrefixSet::from_prefixes(["192.0.2.0/24".parse().unwrap()]),
            },
            AddressSet {
                name: "web".into(),
                prefixes: PrefixSet::from_prefixes([Prefix::host(ip("10.0.0.1"))]),
            },
        ],
        tiers: vec![
            Tier {
                kind: TierKind::Admin,
                rules: vec![admin_deny, pass_dns],
                defaults: vec![TierDefaults::both(Action::NextTier); 2],
            },
            Tier {
                kind: TierKind::Application,
                rules: vec![
                    // endpoint 0 is app, 1 is web: fix up the local sides.
                    Rule {
                        endpoints: vec![1],
                        ..web_to_app
                    },
                    Rule {
                        endpoints: vec![0],
                        remote: Some(2),
                        ..app_from_web
                    },
                ],
                defaults: vec![TierDefaults::both(Action::Deny); 2],
            },
            Tier {
                kind: TierKind::Baseline,
                rules: vec![audit],
                defaults: vec![TierDefaults::both(Action::Allow); 2],
            },
        ],
        foreign: Action::Deny,
    }
}

fn tcp(src: &str, dst: &str, port: u16) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        protocol: Protocol::TCP,
        src_port: 40000,
        dst_port: port,
    }
}

#[test]
fn both_local_sides_must_allow() {
    let program = DeviceProgram::new(sample()).unwrap();
    let v = program.evaluate(&tcp("10.0.0.1", "10.0.0.2", 8080));
    assert!(v.allowed);
    assert_eq!(v.sides.len(), 2);
    assert_eq!(v.sides[0].direction, Direction::Egress);
    assert_eq!(v.sides[0].rule().unwrap().id, "app/web-to-app");
    assert_eq!(v.sides[1].rule().unwrap().id, "app/app-from-web");

    let v = program.evaluate(&tcp("10.0.0.1", "10.0.0.2", 8081));
    assert!(!v.allowed);
    assert_eq!(
        v.sides[0].decision,
        Decision::TierDefault {
            tier: TierKind::Application,
            action: Action::Deny
        }
    );
}

#[test]
fn admin_tier_overrides_and_passes() {
    let program = DeviceProgram::new(sample()).unwrap();
    let v = program.evaluate(&tcp("10.0.0.1", "192.0.2.9", 443));
    assert!(!v.allowed);
    assert_eq!(v.sides[0].rule().unwrap().id, "admin/quarantine");

    // DNS is passed on by the admin tier, then denied by the application tier's default.
    let dns = Packet {
        protocol: Protocol::UDP,
        ..tcp("10.0.0.1", "198.51.100.1", 53)
    };
    let v = program.evaluate(&dns);
    assert!(!v.allowed);
    assert_eq!(v.sides[0].passed.len(), 1);
    assert_eq!(v.sides[0].passed[0].1.id, "admin/dns");
}

#[test]
fn foreign_traffic_gets_the_foreign_verdict() {
    let program = DeviceProgram::new(sample()).unwrap();
    let v = program.evaluate(&tcp("198.51.100.1", "198.51.100.2", 80));
    assert!(v.sides.is_empty());
    assert!(!v.allowed);
}

#[test]
fn audit_forwards_what_it_would_deny() {
    let mut parts = sample();
    // Let the application tier fall through for app so the baseline audit rule is reached.
    parts.tiers[1].defaults[0] = TierDefaults::both(Action::NextTier);
    let program = DeviceProgram::new(parts).unwrap();
    let v = program.evaluate(&tcp("10.0.0.2", "198.51.100.1", 443));
    assert!(v.allowed);
    assert!(v.sides[0].rule().unwrap().audit);
}

#[test]
fn falling_off_the_end_allows() {
    let mut parts = sample();
    parts.tiers.truncate(1);
    let program = DeviceProgram::new(parts).unwrap();
    let v = program.evaluate(&tcp("10.0.0.1", "198.51.100.1", 443));
    assert!(v.allowed);
    assert_eq!(v.sides[0].decision, Decision::EndOfTiers);
}

#[test]
fn hash_ignores_generation_but_not_content() {
    let a = DeviceProgram::new(sample()).unwrap();
    let b = DeviceProgram::new(ProgramParts {
        generation: 99,
        ..sample()
    })
    .unwrap();
    assert_eq!(a.hash(), b.hash());
    let edits: [fn(&mut ProgramParts); 10] = [
        |p| p.tiers[1].rules[0].dst_ports = vec![PortRange::single(8443)],
        |p| p.tiers[1].rules[0].src_ports = vec![PortRange::single(8443)],
        |p| p.tiers[1].rules[0].id.push('x'),
        |p| p.tiers[1].rules[0].mirror = Some("tap".into()),
        |p| p.tiers[1].rules[0].log = true,
        |p| p.tiers[1].defaults[0].egress = Action::NextTier,
        |p| p.endpoints[0].name.push('x'),
        |p| p.address_sets[0].name.push('x'),
        |p| p.foreign = Action::Allow,
        |p| p.tiers[1].rules.swap(0, 1),
    ];
    for (i, edit) in edits.iter().enumerate() {
        let mut changed = sample();
        edit(&mut changed);
        assert_ne!(
            a.hash(),
            DeviceProgram::new(changed).unwrap().hash(),
            "edit {i}"
        );
    }
}

#[test]
fn encoding_round_trips_and_detects_tampering() {
    let program = DeviceProgram::new(sample()).unwrap();
    let json = serde_json::to_string_pretty(&program).unwrap();
    let back: DeviceProgram = serde_json::from_str(&json).unwrap();
    assert_eq!(back, program);

    let tampered = json.replace("\"8080\"", "\"8081\"");
    let err = serde_json::from_str::<DeviceProgram>(&tampered).unwrap_err();
    assert!(err.to_string().contains("content hash mismatch"), "{err}");
}

#[test]
fn invalid_programs_are_refused_with_the_place_named() {
    let check = |edit: fn(&mut ProgramParts), expected: &str| {
        let mut parts = sample();
        edit(&mut parts);
        let err = DeviceProgram::new(parts).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    };
    check(|p| p.format = 7, "program format 7 is not supported");
    check(|p| p.endpoints.swap(0, 1), "must be sorted by name");
    check(
        |p| p.endpoints[1].addresses = vec![ip("10.0.0.2")],
        "also belongs to endpoint `shop/app-1/eth0`",
    );
    check(
        |p| p.tiers[0].rules[0].remote = Some(9),
        "rule `admin/quarantine`: refers to an address set index",
    );
    check(
        |p| p.tiers[0].rules[0].endpoints = vec![5],
        "refers to an endpoint index",
    );
    check(
        |p| p.tiers[0].rules[0].dst_ports = vec![PortRange::single(80)],
        "ports are only allowed with tcp, udp or sctp",
    );
    check(
        |p| p.tiers[0].rules[0].redirect = Some("ids".into()),
        "`redirect` only applies to allow rules",
    );
    check(
        |p| p.tiers[1].rules[0].audit = true,
        "`audit` only applies to deny rules",
    );
    check(
        |p| p.tiers.swap(0, 2),
        "in the order admin, application, baseline",
    );
    check(
        |p| p.tiers[2].defaults.pop().map(drop).unwrap_or(()),
        "has 1 defaults",
    );
    check(
        |p| p.tiers[2].rules[0].id = "admin/dns".into(),
        "the id is used by another rule",
    );
    check(
        |p| p.foreign = Action::NextTier,
        "`foreign` must be allow or deny",
    );
}

#[test]
fn redirect_is_allowed_on_allow_rules() {
    let mut parts = sample();
    parts.tiers[1].rules[0].redirect = Some("ids".into());
    let program = DeviceProgram::new(parts).unwrap();
    let v = program.evaluate(&tcp("10.0.0.1", "10.0.0.2", 8080));
    assert_eq!(v.sides[0].rule().unwrap().redirect.as_deref(), Some("ids"));
}

#[test]
fn garbage_input_is_an_error_not_a_panic() {
    for text in [
        "",
        "{}",
        "[]",
        "{\"format\":1}",
        "null",
        "{\"format\": \"x\"}",
    ] {
        assert!(serde_json::from_str::<DeviceProgram>(text).is_err());
    }
}
