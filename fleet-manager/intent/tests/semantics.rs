//! The semantics of POLICY.md, scenario by scenario. Every verdict is checked twice: by
//! `explain` from intent and by the compiled device programs (see `common::World::check`).

mod common;

use common::{World, intent, inventory};
use palisade_program::Protocol;

const TCP: Protocol = Protocol::TCP;
const UDP: Protocol = Protocol::UDP;

/// Two deployments (prod, dev) of one three-tier application, plus a second application,
/// spread over three devices.
const INVENTORY: &str = r#"
devices: [{name: dpu-1}, {name: dpu-2}, {name: dpu-3}]
projects:
  - name: shop
    tags: [application=shop]
    networks:
      - name: front
        tags: [tier=web]
        subnets: [10.1.0.0/24]
  - name: blog
    tags: [application=blog]
workloads:
  - {name: web-prod, project: shop, tags: [deployment=prod], interfaces: [{network: front, addresses: [10.1.0.10], device: dpu-1}]}
  - {name: web-dev, project: shop, tags: [deployment=dev], interfaces: [{network: front, addresses: [10.1.0.11], device: dpu-2}]}
  - {name: app-prod, project: shop, tags: [tier=app, deployment=prod], interfaces: [{addresses: [10.1.1.10], device: dpu-2}]}
  - {name: app-dev, project: shop, tags: [tier=app, deployment=dev], interfaces: [{addresses: [10.1.1.11], device: dpu-1}]}
  - {name: db-prod, project: shop, tags: [tier=db, deployment=prod, label=pci],
     interfaces: [{addresses: [10.1.2.10], device: dpu-3, tags: [label=backup]}]}
  - {name: blog-web, project: blog, tags: [tier=web, deployment=prod], interfaces: [{addresses: [10.2.0.10], device: dpu-3}]}
"#;

const TAGS: &str = r#"
kind: Tag
type: application
value: shop
---
kind: Tag
type: application
value: blog
---
kind: Tag
type: tier
value: web
---
kind: Tag
type: tier
value: app
---
kind: Tag
type: tier
value: db
---
kind: Tag
type: deployment
value: prod
---
kind: Tag
type: deployment
value: dev
---
kind: Tag
type: label
value: pci
---
kind: Tag
type: label
value: backup
"#;

fn three_tier() -> World {
    let text = format!(
        "{TAGS}---\n{}",
        r#"
kind: FirewallPolicy
name: three-tier
rules:
  - {sequence: "0010", action: allow, endpoint_1: {any: true}, direction: ">", endpoint_2: {tags: [tier=web]}, service: {protocol: tcp, dst_ports: ["443"]}}
  - {sequence: "0020", action: allow, endpoint_1: {tags: [tier=web]}, direction: ">", endpoint_2: {tags: [tier=app]}, service: {protocol: tcp, dst_ports: ["8080"]}, match_tags: [application, deployment]}
  - {sequence: "0030", action: allow, endpoint_1: {tags: [tier=app]}, direction: ">", endpoint_2: {tags: [tier=db]}, service: {protocol: tcp, dst_ports: ["5432"]}, match_tags: [deployment]}
---
kind: ApplicationPolicySet
name: shop
application: application=shop
policies: [{sequence: "0010", policy: three-tier}]
---
kind: ApplicationPolicySet
name: blog
application: application=blog
policies: [{sequence: "0010", policy: three-tier}]
"#
    );
    World::new(intent(&text), inventory(INVENTORY))
}

#[test]
fn tags_are_inherited_most_specific_wins_and_labels_accumulate() {
    let w = three_tier();
    let e = w.check(w.ip("shop/db-prod"), w.ip("shop/web-prod"), TCP, 443);
    let tags = &e.src.tags;
    for t in [
        "application=shop",
        "tier=db",
        "deployment=prod",
        "label=pci",
        "label=backup",
    ] {
        assert!(tags.contains(&t.to_string()), "{t} missing from {tags:?}");
    }
    // web-prod gets tier=web from its network.
    assert!(
        e.dst.tags.contains(&"tier=web".to_string()),
        "{:?}",
        e.dst.tags
    );
}

#[test]
fn match_tags_keeps_deployments_apart_write_once_deploy_many() {
    let w = three_tier();
    assert!(w.allowed("shop/web-prod", "shop/app-prod", TCP, 8080));
    assert!(w.allowed("shop/web-dev", "shop/app-dev", TCP, 8080));
    assert!(!w.allowed("shop/web-prod", "shop/app-dev", TCP, 8080));
    assert!(!w.allowed("shop/web-dev", "shop/app-prod", TCP, 8080));
    assert!(w.allowed("shop/app-prod", "shop/db-prod", TCP, 5432));
    assert!(!w.allowed("shop/app-dev", "shop/db-prod", TCP, 5432));
    // The same policy serves the blog, but application matching keeps it from the shop's app.
    assert!(!w.allowed("blog/blog-web", "shop/app-prod", TCP, 8080));
}

#[test]
fn bound_endpoints_are_denied_by_default_in_the_application_tier() {
    let w = three_tier();
    assert!(w.allowed("shop/app-prod", "shop/web-prod", TCP, 443));
    assert!(!w.allowed("shop/web-prod", "shop/app-prod", TCP, 9999));
    let by = w.decided_by("shop/web-prod", "shop/app-prod", TCP, 9999);
    assert_eq!(by[0], "default application deny");
    // External traffic to web is allowed by rule 0010 (the web's ingress side only).
    let e = w.check(
        "192.0.2.1".parse().unwrap(),
        w.ip("shop/web-prod"),
        TCP,
        443,
    );
    assert!(e.allowed);
    assert_eq!(e.sides.len(), 1);
}

#[test]
fn tiers_admin_overrides_and_next_tier_passes() {
    let text = format!(
        "{TAGS}---\n{}",
        r#"
kind: AddressGroup
name: quarantine
prefixes: [10.1.1.11/32]
---
kind: AddressGroup
name: pci
label: pci
---
kind: FirewallPolicy
name: guard
tier: admin
sequence: "0100"
rules:
  - {sequence: "0010", action: deny, endpoint_1: {any: true}, direction: "<>", endpoint_2: {address_group: quarantine}, service: {}, log: true}
  - {sequence: "0020", action: next-tier, endpoint_1: {any: true}, direction: ">", endpoint_2: {address_group: pci}, service: {protocol: tcp, dst_ports: ["5432"]}}
  - {sequence: "0030", action: deny, endpoint_1: {any: true}, direction: ">", endpoint_2: {address_group: pci}, service: {}}
---
kind: FirewallPolicy
name: app-rules
rules:
  - {sequence: "0010", action: allow, endpoint_1: {any: true}, direction: ">", endpoint_2: {any: true}, service: {}}
---
kind: ApplicationPolicySet
name: shop
application: application=shop
policies: [{sequence: "0010", policy: app-rules}]
---
kind: FirewallPolicy
name: base
tier: baseline
rules:
  - {sequence: "0010", action: deny, endpoint_1: {tags: [application=blog]}, direction: ">", endpoint_2: {any: true}, service: {protocol: udp}, audit: true}
  - {sequence: "0020", action: deny, endpoint_1: {tags: [application=blog]}, direction: ">", endpoint_2: {any: true}, service: {protocol: tcp, dst_ports: ["25"]}}
"#
    );
    let w = World::new(intent(&text), inventory(INVENTORY));
    // The admin deny beats the application owners' allow-all, both ways (<>).
    assert!(!w.allowed("shop/web-prod", "shop/app-dev", TCP, 80));
    assert!(!w.allowed("shop/app-dev", "shop/web-prod", TCP, 80));
    assert_eq!(
        w.decided_by("shop/app-dev", "shop/web-prod", TCP, 80)[0],
        "admin/guard/0010"
    );
    // next-tier lets postgres to the PCI database reach the application tier, which allows it;
    // everything else to PCI is denied by the admin tier.
    assert!(w.allowed("shop/app-prod", "shop/db-prod", TCP, 5432));
    let e = w.check(w.ip("shop/app-prod"), w.ip("shop/db-prod"), TCP, 5432);
    assert_eq!(e.sides[0].passed[0].rule_ref, "admin/guard/0020");
    assert!(!w.allowed("shop/app-prod", "shop/db-prod", TCP, 22));
    // The blog is bound by no set: it falls through to the baseline tier.
    assert!(!w.allowed("blog/blog-web", "shop/web-prod", TCP, 25));
    assert!(w.allowed("blog/blog-web", "shop/web-prod", TCP, 80));
    assert!(
        w.allowed("blog/blog-web", "shop/web-prod", UDP, 53),
        "audit forwards"
    );
    assert_eq!(
        w.decided_by("blog/blog-web", "198.51.100.7", UDP, 53),
        ["baseline/base/0010"]
    );
}

#[test]
fn sequence_keys_order_rules_and_allow_insertion_between() {
    let text = format!(
        "{TAGS}---\n{}",
        r#"
kind: FirewallPolicy
name: p
tier: admin
rules:
  - {sequence: "0020", action: deny, endpoint_1: {any: true}, direction: ">", endpoint_2: {tags: [tier=db]}, service: {}}
  - {sequence: "0015", action: allow, endpoint_1: {tags: [tier=app]}, direction: ">", endpoint_2: {tags: [tier=db]}, service: {protocol: tcp, dst_ports: ["5432"]}}
  - {sequence: "0010", action: next-tier, endpoint_1: {tags: [deployment=dev]}, direction: ">", endpoint_2: {any: true}, service: {}}
"#
    );
    let w = World::new(intent(&text), inventory(INVENTORY));
    assert_eq!(
        w.decided_by("shop/app-prod", "shop/db-prod", TCP, 5432),
        ["admin/p/0015", "admin/p/0015"]
    );
    assert_eq!(
        w.decided_by("shop/web-prod", "shop/db-prod", TCP, 5432),
        ["admin/p/0020", "admin/p/0020"],
        "web's egress is in `any` too"
    );
    // 0010 passes connections from dev on, on both sides, before 0015/0020 are looked at.
    assert_eq!(
        w.decided_by("shop/app-dev", "shop/db-prod", TCP, 5432),
        ["default baseline allow", "default baseline allow"]
    );
}

#[test]
fn project_tags_shadow_global_ones_within_their_project() {
    let text = format!(
        "{TAGS}---\n{}",
        r#"
kind: Tag
project: blog
type: tier
value: web
---
kind: FirewallPolicy
name: p
project: blog
tier: admin
rules:
  - {sequence: "0010", action: deny, endpoint_1: {any: true}, direction: ">", endpoint_2: {tags: [tier=web]}, service: {}}
  - {sequence: "0020", action: deny, endpoint_1: {any: true}, direction: ">", endpoint_2: {tags: [global:tier=app]}, service: {}}
"#
    );
    let w = World::new(intent(&text), inventory(INVENTORY));
    // blog-web's `tier=web` now resolves to the blog's own tag; the rule (in project blog)
    // targets that tag only, so traffic from blog to the shop's (global) web tier passes.
    assert!(w.allowed("blog/blog-web", "shop/web-prod", TCP, 443));
    assert!(!w.allowed("blog/blog-web", "shop/app-prod", TCP, 443));
    // A project's admin policy only governs that project's endpoints: the shop's web tier
    // carries the global tag and is not the blog's business.
    assert!(w.allowed("shop/web-dev", "shop/web-prod", TCP, 443));
    assert!(!w.allowed("shop/web-dev", "blog/blog-web", TCP, 443));
}

#[test]
fn service_groups_and_source_ports() {
    let text = format!(
        "{TAGS}---\n{}",
        r#"
kind: ServiceGroup
name: web
services:
  - {protocol: tcp, dst_ports: ["80", "443"]}
  - {protocol: udp, src_ports: ["53"], dst_ports: ["1024-65535"]}
---
kind: FirewallPolicy
name: p
tier: admin
rules:
  - {sequence: "0010", action: deny, endpoint_1: {tags: [tier=app]}, direction: ">", endpoint_2: {any: true}, service_group: web}
"#
    );
    let w = World::new(intent(&text), inventory(INVENTORY));
    assert!(!w.allowed("shop/app-prod", "shop/web-prod", TCP, 443));
    assert!(w.allowed("shop/app-prod", "shop/web-prod", TCP, 8443));
    // src port 40000 is not 53, so the UDP service does not match.
    assert!(w.allowed("shop/app-prod", "shop/web-prod", UDP, 2000));
}
