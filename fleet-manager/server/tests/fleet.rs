//! The fleet state machine against a real redb store: commits compile and record their
//! targets, status follows acknowledgements, refused changes leave nothing behind, and a
//! reopened store gives back the same fleet.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use palisade_intent::{Object, Scope, lang};
use palisade_inventory::Inventory;
use palisade_server::fleet::{Fleet, FleetConfig, PlacementSummary, State};
use palisade_server::store::RedbStore;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier")
}

fn inventory() -> Inventory {
    let text = std::fs::read_to_string(example().join("inventory.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn policies() -> Vec<Object> {
    let mut out = Vec::new();
    for f in ["tags.pal", "admin.pal", "shop.pal"] {
        let text = std::fs::read_to_string(example().join("policies").join(f)).unwrap();
        out.extend(lang::parse(&text).unwrap().into_objects());
    }
    out
}

fn open(dir: &Path, config: FleetConfig) -> Fleet {
    let store = RedbStore::open(&dir.join("state.redb")).unwrap();
    Fleet::open(Arc::new(store), config).unwrap()
}

/// A fleet with the example inventory and policies committed.
fn populated(dir: &Path, config: FleetConfig) -> Fleet {
    let mut fleet = open(dir, config);
    // Tags first: the inventory refers to them.
    let commit = fleet.apply(policies(), vec![], false).unwrap().commit;
    assert!(commit.unwrap().targets.is_empty(), "no device yet");
    let inv = inventory();
    for d in inv.devices {
        let (commit, _) = fleet.put_device(d).unwrap();
        assert_eq!(
            commit.targets.len(),
            1,
            "a new device gets its first program"
        );
    }
    for p in inv.projects {
        fleet.put_project(p).unwrap();
    }
    let mut touched = std::collections::BTreeSet::new();
    for w in inv.workloads {
        let (commit, _) = fleet.put_workload(w).unwrap();
        touched.extend(commit.targets.into_iter().map(|t| t.device));
    }
    assert_eq!(touched.len(), 2, "both DPUs got new programs");
    assert!(fleet.program("dpu-1").unwrap().rule_count() > 0);
    fleet
}

#[test]
fn a_commit_targets_changed_devices_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (generation, hashes, commits) = {
        let fleet = populated(dir.path(), FleetConfig::default());
        let hashes: Vec<_> = fleet
            .programs()
            .values()
            .map(|p| (p.device().to_string(), p.generation(), p.hash()))
            .collect();
        (fleet.generation(), hashes, fleet.commits(100).len())
    };
    let fleet = open(dir.path(), FleetConfig::default());
    assert_eq!(fleet.generation(), generation);
    let again: Vec<_> = fleet
        .programs()
        .values()
        .map(|p| (p.device().to_string(), p.generation(), p.hash()))
        .collect();
    assert_eq!(again, hashes, "same programs, same generations");
    assert_eq!(
        fleet.commits(100).len(),
        commits,
        "reopening commits nothing"
    );
}

#[test]
fn status_follows_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = populated(dir.path(), FleetConfig::default());
    let latest = fleet.commits(1)[0].clone();
    let now = palisade_server::fleet::now_ms();
    let connected = |_: &str| true;
    assert_eq!(
        fleet.commit_status(&latest, now, &connected).state,
        State::Pending
    );
    // Devices must be enrolled to ack; a token + enroll needs an authority, so record the
    // device directly through a token-less path is impossible: acks from unknown devices
    // are refused.
    let p1 = Arc::clone(fleet.program("dpu-1").unwrap());
    let err = fleet
        .ack(
            "dpu-1",
            p1.generation(),
            p1.hash(),
            Ok(PlacementSummary::default()),
            None,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "device `dpu-1` is not enrolled");
}

#[test]
fn an_overdue_target_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = FleetConfig {
        ack_timeout: Duration::ZERO,
        ..FleetConfig::default()
    };
    let fleet = populated(dir.path(), config);
    let latest = fleet.commits(1)[0].clone();
    let later = latest.at_ms + 1;
    let status = fleet.commit_status(&latest, later, &|_| false);
    assert_eq!(status.state, State::Failed);
    for (_, state, reason) in &status.targets {
        assert_eq!(*state, State::Failed);
        assert_eq!(
            reason,
            "no acknowledgement within 0 s: the device never enrolled"
        );
    }
}

#[test]
fn refused_changes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = populated(dir.path(), FleetConfig::default());
    let generation = fleet.generation();
    // A policy naming a tag that does not exist.
    let bad = lang::parse("project shop {\n  policy broken {\n    0010: allow tier=nope > tier=app on tcp/1\n  }\n}\n")
        .unwrap()
        .into_objects();
    let err = fleet.apply(bad, vec![], false).unwrap_err().to_string();
    assert!(err.contains("tier=nope"), "{err}");
    // A workload on a device that does not exist.
    let mut w = inventory().workloads[0].clone();
    w.name = "stray".into();
    w.interfaces[0].device = "dpu-9".into();
    w.interfaces[0].addresses = vec!["10.9.9.9".parse().unwrap()];
    let err = fleet.put_workload(w).unwrap_err().to_string();
    assert!(err.starts_with("inventory: "), "{err}");
    assert!(err.contains("dpu-9"), "{err}");
    assert_eq!(fleet.generation(), generation);
    drop(fleet);
    let fleet = open(dir.path(), FleetConfig::default());
    assert_eq!(fleet.generation(), generation, "nothing was persisted");
    assert!(
        fleet
            .inventory()
            .workloads
            .iter()
            .all(|w| w.name != "stray")
    );
}

#[test]
fn drafts_wait_for_commit_and_racing_commits_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = populated(dir.path(), FleetConfig::default());
    let shop = Scope::Project("shop".into());
    fleet.set_drafting(shop.clone(), true).unwrap();
    let generation = fleet.generation();
    let change = lang::parse("project shop {\n  policy extra {\n    0010: allow tier=web > tier=db on tcp/9000\n  }\n}\n")
        .unwrap()
        .into_objects();
    let applying = fleet.apply(change, vec![], false).unwrap();
    let (applied, commit) = (applying.objects, applying.commit);
    assert!(applied[0].drafted && commit.is_none());
    assert_eq!(fleet.generation(), generation, "a draft reaches no device");
    let (revision, diff) = fleet.diff(&shop);
    assert_eq!(diff.len(), 1);
    // Two reviewers commit what they saw: one wins, the other gets a conflict.
    let (commit, _) = fleet.commit(&shop, Some(revision)).unwrap();
    assert_eq!(commit.generation, generation + 1);
    let err = fleet.commit(&shop, Some(revision)).unwrap_err().to_string();
    assert!(
        err.starts_with("conflict: project shop is at revision"),
        "{err}"
    );
    // Drafts survive a restart.
    let more = lang::parse(
        "project shop {\n  policy more {\n    0010: allow tier=web > tier=db on tcp/9001\n  }\n}\n",
    )
    .unwrap()
    .into_objects();
    fleet.apply(more, vec![], false).unwrap();
    drop(fleet);
    let fleet = open(dir.path(), FleetConfig::default());
    assert_eq!(fleet.diff(&shop).1.len(), 1);
    assert!(fleet.intent().drafting(&shop));
}

#[test]
fn names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = open(dir.path(), FleetConfig::default());
    let err = fleet
        .create_token("Bad Name", Duration::from_secs(60))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("name `Bad Name`"), "{err}");
}

#[test]
fn acknowledgements_in_one_batch_each_get_their_answer_and_survive_a_restart() {
    use palisade_server::fleet::Ack;
    use palisade_server::service::CaAuthority;

    let dir = tempfile::tempdir().unwrap();
    let mut fleet = populated(dir.path(), FleetConfig::default());
    let ca = CaAuthority(Arc::new(palisade_pki::Ca::generate().unwrap()));
    for d in ["dpu-1", "dpu-2"] {
        let (token, _, _) = fleet.create_token(d, Duration::from_secs(60)).unwrap();
        let key = palisade_pki::DeviceKey::generate().unwrap();
        fleet
            .enroll(d, &token, &key.csr_pem(d).unwrap(), &ca)
            .unwrap();
    }
    let latest = fleet.commits(1)[0].clone();
    let programs = fleet.programs().clone();
    let ack = |device: &str| {
        let p = programs.get(device).map(Arc::clone);
        let (generation, hash) = p.map_or((1, palisade_program::ContentHash([0; 32])), |p| {
            (p.generation(), p.hash())
        });
        Ack {
            device: device.into(),
            generation,
            hash,
            result: Ok(PlacementSummary::default()),
            profile: Some("sim-small".into()),
        }
    };
    let batch = vec![ack("dpu-1"), ack("ghost"), ack("dpu-2")];
    let (results, effects) = fleet.ack_many(batch).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "device `ghost` is not enrolled"
    );
    assert!(
        effects.commits.contains(&latest.generation),
        "{:?}",
        effects.commits
    );
    assert_eq!(
        effects.devices,
        vec!["dpu-1".to_string(), "dpu-2".to_string()]
    );
    let now = palisade_server::fleet::now_ms();
    assert_eq!(
        fleet.commit_status(&latest, now, &|_| true).state,
        State::Enforced
    );
    // Acknowledging again changes no commit's state, so none is announced.
    let (_, effects) = fleet.ack_many(vec![ack("dpu-1")]).unwrap();
    assert!(effects.commits.is_empty(), "{:?}", effects.commits);
    drop(fleet);
    let fleet = open(dir.path(), FleetConfig::default());
    assert_eq!(fleet.device("dpu-2").unwrap().profile, "sim-small");
    assert_eq!(
        fleet.commit_status(&latest, now, &|_| true).state,
        State::Enforced
    );
}

#[test]
fn an_inventory_file_is_one_commit_and_a_refused_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = open(dir.path(), FleetConfig::default());
    fleet.apply(policies(), vec![], false).unwrap();
    let inv = inventory();
    let before = fleet.generation();
    let (commit, _) = fleet
        .apply_inventory(
            inv.devices.clone(),
            inv.projects.clone(),
            inv.workloads.clone(),
        )
        .unwrap();
    assert_eq!(
        fleet.generation(),
        before + 1,
        "one commit for the whole file"
    );
    assert_eq!(commit.targets.len(), 2, "both DPUs got programs");
    assert_eq!(fleet.inventory().workloads.len(), inv.workloads.len());

    // A workload on a device nobody declared: refused, nothing recorded.
    let mut bad = inv.workloads[0].clone();
    bad.name = "stray".into();
    bad.interfaces[0].device = "no-such-dpu".into();
    let generation = fleet.generation();
    let err = fleet
        .apply_inventory(vec![], vec![], vec![bad])
        .unwrap_err();
    assert!(err.to_string().contains("no-such-dpu"), "{err}");
    assert_eq!(fleet.generation(), generation);
    assert!(
        fleet
            .inventory()
            .workloads
            .iter()
            .all(|w| w.name != "stray")
    );

    // Applying the same file again replaces in place: no duplicates.
    fleet
        .apply_inventory(
            inv.devices.clone(),
            inv.projects.clone(),
            inv.workloads.clone(),
        )
        .unwrap();
    assert_eq!(fleet.inventory().workloads.len(), inv.workloads.len());
    assert_eq!(fleet.inventory().devices.len(), inv.devices.len());
}

#[test]
fn kubernetes_policies_commit_with_intent_persist_and_refuse_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = populated(dir.path(), FleetConfig::default());
    let before = fleet.program("dpu-2").unwrap().hash();
    let generation = fleet.generation();
    // The admin tier comes before the shop's application tier: this closes web -> app.
    let deny_all = palisade_k8s::parse_documents(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: no-8080}\nspec:\n  priority: 5\n  subject: {namespaces: {}}\n  ingress:\n  - {action: Deny, from: [{namespaces: {}}], ports: [{portNumber: {protocol: TCP, port: 8080}}]}\n",
        "no-8080.yaml",
    )
    .unwrap();

    // A dry run compiles and stores nothing.
    let dry = fleet.apply(vec![], deny_all.clone(), true).unwrap();
    assert!(dry.commit.is_none());
    assert!(fleet.kubernetes().is_empty());
    assert_eq!(fleet.generation(), generation);

    // The same policy twice in one apply is refused; nothing changes.
    let twice = [deny_all.clone(), deny_all.clone()].concat();
    let err = fleet.apply(vec![], twice, false).unwrap_err().to_string();
    assert!(
        err.contains("AdminNetworkPolicy no-8080 is given twice"),
        "{err}"
    );
    assert_eq!(fleet.generation(), generation);

    // Applied with intent objects: one commit, compiled together.
    let applying = fleet.apply(policies(), deny_all.clone(), false).unwrap();
    let commit = applying.commit.unwrap();
    assert_eq!(commit.generation, generation + 1);
    assert_eq!(applying.kubernetes.len(), 1);
    assert_eq!(applying.kubernetes[0].change, "created");
    assert_ne!(fleet.program("dpu-2").unwrap().hash(), before);
    let changed = fleet.program("dpu-2").unwrap().hash();
    let again = fleet.apply(vec![], deny_all, false).unwrap();
    assert!(again.commit.is_none(), "unchanged: no commit");
    assert_eq!(again.kubernetes[0].change, "unchanged");
    drop(fleet);

    // Reopened: the policy is back and compiles to the same program.
    let mut fleet = open(dir.path(), FleetConfig::default());
    assert_eq!(fleet.kubernetes().len(), 1);
    assert_eq!(fleet.program("dpu-2").unwrap().hash(), changed);
    assert_eq!(fleet.generation(), generation + 1);
    fleet
        .delete_kubernetes("AdminNetworkPolicy", "", "no-8080")
        .unwrap();
    assert_eq!(fleet.program("dpu-2").unwrap().hash(), before);
    let err = fleet
        .delete_kubernetes("AdminNetworkPolicy", "", "no-8080")
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}
