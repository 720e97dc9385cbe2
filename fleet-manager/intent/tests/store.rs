//! Drafts, commit, revert, diffs, conflicts, and validation messages a user can act on.

use palisade_intent::*;

fn objects(text: &str) -> Vec<Object> {
    yaml::parse_objects("t.yaml", text)
        .unwrap()
        .into_iter()
        .map(|(o, _)| o)
        .collect()
}

fn one(text: &str) -> Object {
    objects(text).pop().unwrap()
}

const BASE: &str = r#"
kind: Tag
type: tier
value: web
---
kind: Tag
type: tier
value: app
---
kind: AddressGroup
name: quarantine
prefixes: [192.0.2.0/24]
---
kind: FirewallPolicy
name: guard
tier: admin
rules:
  - {sequence: "0010", action: deny, endpoint_1: {any: true}, direction: ">", endpoint_2: {address_group: quarantine}, service: {}}
"#;

fn store() -> IntentStore {
    let mut s = IntentStore::new();
    for o in objects(BASE) {
        s.put(o).unwrap();
    }
    s
}

fn policy(project: &str, name: &str, endpoint: &str) -> Object {
    one(&format!(
        r#"
kind: FirewallPolicy
name: {name}
project: {project}
rules:
  - {{sequence: "0010", action: allow, endpoint_1: {{tags: [tier=web]}}, direction: ">", endpoint_2: {endpoint}, service: {{protocol: tcp, dst_ports: ["8080"]}}}}
"#
    ))
}

#[test]
fn without_drafting_every_edit_commits() {
    let mut s = store();
    assert_eq!(s.generation(), 4);
    let out = s.put(policy("shop", "p", "{tags: [tier=app]}")).unwrap();
    assert_eq!(out, Outcome::Committed { generation: 5 });
    assert!(s.committed().len() == 5);
}

#[test]
fn drafts_reach_nothing_until_committed_and_commit_is_atomic() {
    let mut s = store();
    let shop = Scope::Project("shop".into());
    s.set_drafting(shop.clone(), true);
    let generation = s.generation();
    assert_eq!(
        s.put(policy("shop", "p1", "{tags: [tier=app]}")).unwrap(),
        Outcome::Drafted
    );
    assert_eq!(
        s.put(policy("shop", "p2", "{tags: [tier=web]}")).unwrap(),
        Outcome::Drafted
    );
    assert_eq!(s.generation(), generation);
    assert_eq!(s.committed().len(), 4, "drafts are not committed state");
    assert_eq!(
        s.draft_view(&shop).len(),
        6,
        "but reads can ask for the draft state"
    );

    let diff = s.diff(&shop);
    assert_eq!(diff.len(), 2);
    assert!(diff.iter().all(|d| d.change == ChangeKind::Created));

    let out = s.commit(&shop, None).unwrap();
    assert_eq!(out.generation, generation + 1);
    assert_eq!(out.diff.len(), 2);
    assert_eq!(s.committed().len(), 6);
    assert!(s.diff(&shop).is_empty());

    // An update and a delete in one commit.
    s.put(policy("shop", "p1", "{any: true}")).unwrap();
    let key = policy("shop", "p2", "{any: true}").key();
    s.delete(&key).unwrap();
    let kinds: Vec<ChangeKind> = s.diff(&shop).iter().map(|d| d.change).collect();
    assert_eq!(kinds, [ChangeKind::Updated, ChangeKind::Deleted]);
    s.commit(&shop, None).unwrap();
    assert!(s.committed().get(&key).is_none());
}

#[test]
fn an_invalid_commit_changes_nothing_and_says_why() {
    let mut s = store();
    let shop = Scope::Project("shop".into());
    s.set_drafting(shop.clone(), true);
    s.put(policy("shop", "good", "{tags: [tier=app]}")).unwrap();
    s.put(policy("shop", "bad", "{tags: [tier=ap]}")).unwrap();
    let before = s.committed().clone();
    let err = s.commit(&shop, None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("policy `shop/bad`, rule 0010, endpoint_2: tag `tier=ap` is not defined in project `shop` or globally; did you mean `tier=app`?"),
        "{text}"
    );
    assert_eq!(s.committed(), &before);
    assert_eq!(s.diff(&shop).len(), 2, "the drafts are kept for fixing");
    let discarded = s.revert(&shop);
    assert_eq!(discarded.len(), 2);
    assert!(s.diff(&shop).is_empty());
    assert_eq!(s.committed(), &before);
}

#[test]
fn racing_commits_conflict() {
    let mut s = store();
    let shop = Scope::Project("shop".into());
    s.set_drafting(shop.clone(), true);
    s.put(policy("shop", "p1", "{tags: [tier=app]}")).unwrap();
    let seen_by_alice = s.revision(&shop);
    let seen_by_bob = s.revision(&shop);
    s.commit(&shop, Some(seen_by_alice)).unwrap();
    s.put(policy("shop", "p2", "{tags: [tier=app]}")).unwrap();
    let err = s.commit(&shop, Some(seen_by_bob)).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("conflict: project shop is at revision"),
        "{err}"
    );
    assert_eq!(s.diff(&shop).len(), 1, "the loser's drafts are untouched");
}

#[test]
fn referenced_objects_cannot_be_deleted() {
    let mut s = store();
    let key = ObjectKey {
        kind: ObjectKind::AddressGroup,
        scope: Scope::Global,
        name: "quarantine".into(),
    };
    let err = s.delete(&key).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot delete address group `quarantine`: still referenced by policy `guard` (rule 0010, endpoint_2)"
    );
    let missing = ObjectKey {
        name: "nope".into(),
        ..key
    };
    assert_eq!(
        s.delete(&missing).unwrap_err().to_string(),
        "address group `nope` does not exist"
    );
}

fn errors_of(text: &str) -> Vec<String> {
    let set = IntentSet::from_objects(objects(text).into_iter().map(|o| (o, None))).unwrap();
    set.validate().iter().map(|e| e.to_string()).collect()
}

#[test]
fn validation_names_object_field_and_expectation() {
    let errs = errors_of(
        r#"
kind: Tag
type: owner
value: alice
---
kind: FirewallPolicy
name: p
rules:
  - {sequence: "0010", action: allow, endpoint_1: {any: true}, direction: ">", endpoint_2: {any: true}, service: {}, match_tags: [label]}
  - {sequence: "0020", action: allow, endpoint_1: {any: true}, direction: ">", endpoint_2: {any: true}, service_group: nope, audit: true}
  - {sequence: "0020", action: deny, endpoint_1: {tags: [tier=web, tier=app]}, direction: ">", endpoint_2: {any: true}, service: {protocol: icmp, dst_ports: ["80"]}, redirect: ids}
---
kind: ApplicationPolicySet
name: s
application: tier=web
policies: [{sequence: "1", policy: admin-only}, {sequence: "2", policy: ghost}]
---
kind: FirewallPolicy
name: admin-only
tier: admin
"#,
    );
    let expected = [
        "policy `p`, rule 0010, match_tags: `label` cannot be matched: it is the only repeatable tag type",
        "policy `p`, rule 0020, audit: `audit` only applies to deny rules",
        "policy `p`, rule 0020, sequence: another rule of the policy has the same sequence key",
        "policy `p`, rule 0020, service: ports are only allowed with tcp, udp or sctp",
        "policy `p`, rule 0020, redirect: `redirect` only applies to allow rules",
        "policy `p`, rule 0020, endpoint_1: two `tier` tags can never both match: an endpoint has one `tier`",
        "policy `p`, rule 0020, service_group: service group `nope` is not defined globally",
        "policy `p`, rule 0020, endpoint_1: tag `tier=web` is not defined globally; define it with `tag tier=web`",
        "tag `owner=alice`, type: tag type `owner` is not defined globally; define it with `tag-type owner`",
        "application policy set `s`, application: `tier=web` is not an `application` tag",
        "application policy set `s`, entry 1: policy `admin-only` is in the admin tier; only application-tier policies go in application policy sets",
        "application policy set `s`, entry 2: policy `ghost` is not defined globally",
    ];
    for e in expected {
        assert!(
            errs.iter().any(|x| x == e),
            "missing {e:?} in\n{}",
            errs.join("\n")
        );
    }
}

#[test]
fn duplicates_are_refused_with_both_places() {
    let a = one("kind: Tag\ntype: tier\nvalue: web\n");
    let err = IntentSet::from_objects([
        (
            a.clone(),
            Some(Origin {
                file: "a.yaml".into(),
                line: Some(3),
            }),
        ),
        (
            a,
            Some(Origin {
                file: "b.pal".into(),
                line: Some(9),
            }),
        ),
    ])
    .unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "b.pal:9: tag `tier=web`: is defined twice (first defined at a.yaml:3)"
    );
}

#[test]
fn yaml_rule_with_service_and_group_is_refused() {
    let errs = yaml::parse_objects(
        "x.yaml",
        "kind: FirewallPolicy\nname: p\nrules:\n  - {sequence: '1', action: allow, endpoint_1: {any: true}, direction: '>', endpoint_2: {any: true}, service: {}, service_group: web}\n",
    )
    .unwrap_err();
    assert!(
        errs[0].to_string().contains(
            "rule `1`, service: a rule has either a `service` or a `service_group`, not both"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn a_snapshot_restores_committed_state_drafts_and_revisions() {
    let mut s = store();
    let shop = Scope::Project("shop".into());
    s.put(policy("shop", "p1", "{tags: [tier=app]}")).unwrap();
    s.set_drafting(shop.clone(), true);
    s.put(policy("shop", "p2", "{tags: [tier=web]}")).unwrap();
    s.delete(&policy("shop", "p1", "{any: true}").key())
        .unwrap();
    let snapshot = s.snapshot();
    // Through JSON, as the server persists it.
    let json = serde_json::to_string(&snapshot).unwrap();
    let mut back = IntentStore::restore(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(back.snapshot(), snapshot);
    assert_eq!(back.generation(), s.generation());
    assert_eq!(back.revision(&shop), s.revision(&shop));
    assert!(back.drafting(&shop));
    assert_eq!(back.diff(&shop), s.diff(&shop));
    // The restored store commits exactly what the original would.
    let revision = back.revision(&shop);
    let a = back.commit(&shop, Some(revision)).unwrap();
    let b = s.commit(&shop, Some(revision)).unwrap();
    assert_eq!(a, b);
    assert_eq!(back.snapshot(), s.snapshot());
}

#[test]
fn a_snapshot_with_invalid_committed_objects_is_refused() {
    let mut snapshot = store().snapshot();
    snapshot
        .committed
        .push(policy("shop", "p", "{tags: [tier=nope]}"));
    let err = IntentStore::restore(snapshot).unwrap_err().to_string();
    assert!(err.contains("tier=nope"), "{err}");
}

#[test]
fn apply_commits_a_batch_as_one_generation_or_nothing() {
    let mut s = store();
    let generation = s.generation();
    // A tag and a policy that needs it, in one batch: fine together, whatever the order.
    let batch = objects(
        r#"
kind: FirewallPolicy
name: p
project: shop
rules:
  - {sequence: "0010", action: allow, endpoint_1: {tags: [tier=web]}, direction: ">", endpoint_2: {tags: [tier=db]}, service: {}}
---
kind: Tag
type: tier
value: db
---
kind: Tag
type: tier
value: web
"#,
    );
    let out = s.apply(batch.clone()).unwrap();
    let changes: Vec<AppliedChange> = out.iter().map(|a| a.change).collect();
    assert_eq!(
        changes,
        [
            AppliedChange::Created,
            AppliedChange::Created,
            AppliedChange::Unchanged
        ]
    );
    assert_eq!(
        s.generation(),
        generation + 1,
        "one generation for the batch"
    );
    // Applying the same again changes nothing and makes no generation.
    let out = s.apply(batch).unwrap();
    assert!(out.iter().all(|a| a.change == AppliedChange::Unchanged));
    assert_eq!(s.generation(), generation + 1);
    // One bad object refuses the whole batch.
    let before = s.snapshot();
    let bad = vec![
        policy("shop", "q", "{tags: [tier=app]}"),
        policy("shop", "r", "{tags: [tier=missing]}"),
    ];
    let err = s.apply(bad).unwrap_err().to_string();
    assert!(err.contains("tier=missing"), "{err}");
    assert_eq!(s.snapshot(), before);
    // In a drafting scope, apply drafts.
    let shop = Scope::Project("shop".into());
    s.set_drafting(shop.clone(), true);
    let out = s
        .apply(vec![policy("shop", "q", "{tags: [tier=app]}")])
        .unwrap();
    assert!(out[0].drafted && out[0].change == AppliedChange::Created);
    assert_eq!(s.generation(), generation + 1);
    assert_eq!(s.diff(&shop).len(), 1);
}
