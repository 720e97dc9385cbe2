//! Shared test support: build intent from YAML, compile it, and check explain against the
//! compiled programs run by the reference interpreter.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{CompileOptions, compile_all};
use palisade_intent::{Explanation, IntentSet, Query, Step, explain, lower, yaml};
use palisade_inventory::{Inventory, InventoryIndex};
use palisade_program::{Decision, DeviceProgram, Packet, Protocol};

pub fn intent(text: &str) -> IntentSet {
    let objects = yaml::parse_objects("test.yaml", text).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let set = IntentSet::from_objects(objects.into_iter().map(|(o, _)| (o, None))).unwrap();
    let errors = set.validate();
    assert!(errors.is_empty(), "{errors:#?}");
    set
}

pub fn inventory(text: &str) -> InventoryIndex {
    let inv: Inventory = serde_saphyr::from_str(text).unwrap();
    inv.index().unwrap()
}

pub struct World {
    pub set: IntentSet,
    pub index: InventoryIndex,
    pub programs: BTreeMap<String, Arc<DeviceProgram>>,
}

impl World {
    pub fn new(set: IntentSet, index: InventoryIndex) -> Self {
        let lowered = lower(&set, &index).unwrap();
        let index_arc = Arc::new(index.clone());
        let compiled = compile_all(
            index_arc,
            Arc::new(lowered.ir),
            1,
            CompileOptions::default(),
        )
        .unwrap();
        Self {
            set,
            index,
            programs: compiled.programs,
        }
    }

    pub fn ip(&self, reference: &str) -> IpAddr {
        self.index
            .resolve(reference)
            .unwrap()
            .address(&self.index)
            .unwrap()
    }

    /// Explains a connection and checks that the compiled programs agree, side by side.
    pub fn check(
        &self,
        src: IpAddr,
        dst: IpAddr,
        protocol: Protocol,
        dst_port: u16,
    ) -> Explanation {
        let q = Query {
            src,
            dst,
            protocol,
            src_port: 40000,
            dst_port,
        };
        let e = explain(&self.set, &self.index, &q).unwrap();
        let packet = Packet {
            src,
            dst,
            protocol,
            src_port: q.src_port,
            dst_port,
        };
        assert_eq!(
            e.sides.len(),
            usize::from(e.src.endpoint.is_some()) + usize::from(e.dst.endpoint.is_some())
        );
        let mut compiled_allowed = true;
        for side in &e.sides {
            let program = &self.programs[&side.device];
            let ep = program
                .endpoint_index(&side.endpoint)
                .expect("endpoint in its device's program");
            let v = program.evaluate_side(ep, side.direction, &packet);
            compiled_allowed &= v.allowed;
            assert_eq!(v.allowed, side.allowed, "side {side:#?}\ncompiled {v:#?}");
            match (&side.decision, &v.decision) {
                (Step::Rule(r), Decision::Rule { rule, .. }) => assert!(
                    rule.id.starts_with(&format!("{}/", r.rule_ref)),
                    "explain says {} but the device matched {}",
                    r.rule_ref,
                    rule.id
                ),
                (Step::Default { .. }, Decision::TierDefault { .. }) => {}
                (Step::Default { allowed: true, .. } | Step::EndOfTiers, Decision::EndOfTiers) => {}
                (a, b) => panic!("explain decided by {a:?}, the device by {b:?}"),
            }
            assert_eq!(
                side.passed.len(),
                v.passed.len(),
                "next-tier steps: {:?} vs {:?}",
                side.passed,
                v.passed
            );
        }
        assert_eq!(e.allowed, compiled_allowed);
        e
    }

    pub fn allowed(&self, src: &str, dst: &str, protocol: Protocol, port: u16) -> bool {
        self.check(self.ip(src), self.ip(dst), protocol, port)
            .allowed
    }

    pub fn decided_by(&self, src: &str, dst: &str, protocol: Protocol, port: u16) -> Vec<String> {
        self.check(self.ip(src), self.ip(dst), protocol, port)
            .sides
            .iter()
            .map(|s| match &s.decision {
                Step::Rule(r) => r.rule_ref.clone(),
                Step::Default { tier, allowed, .. } => {
                    format!("default {tier} {}", if *allowed { "allow" } else { "deny" })
                }
                Step::EndOfTiers => "end".into(),
            })
            .collect()
    }
}
