//! Program updates: a whole program, or the changes from a base the device already runs.
//!
//! A delta replaces list items by index — the endpoint list wholesale when it changed, and
//! each changed address set and tier — then cuts each list to its new length. Device
//! programs change a few sets or one tier at a time (a workload joins a tag, one policy
//! changes), so a delta is usually a small fraction of the program. [`update_for`] sends
//! whichever encodes smaller. [`receive`] rebuilds the program on the device and refuses it
//! unless its content hash is the one the manager sent.

use palisade_program::{ContentHash, DeviceProgram, ProgramParts};
use prost::Message;

use crate::pb::control::v1::{ProgramUpdate, program_update::Body};
use crate::pb::program::v1 as pb;
use crate::wire::{
    WireError, action_from_pb, action_to_pb, endpoint_to_pb, endpoints_from_pb, field,
    parts_from_pb, program_to_pb, set_from_pb, set_to_pb, tier_from_pb, tier_to_pb,
};

/// Most bytes a delta adds to one changed item over the whole program's encoding of it
/// (the `Indexed*` wrapper: a tag, a length and the index, each at most a varint).
pub const DELTA_ITEM_OVERHEAD: usize = 16;
/// Most bytes a delta adds in all besides its items (base hash, counts, wrappers).
pub const DELTA_FIXED_OVERHEAD: usize = 64;

/// Whether `delta` certainly encodes smaller than `target` whole (see [`update_for`]).
fn surely_smaller(base: &DeviceProgram, target: &DeviceProgram, delta: &pb::ProgramDelta) -> bool {
    let (b, t) = (base.parts(), target.parts());
    let mut saved = 0usize;
    if delta.endpoints.is_none() {
        saved += t
            .endpoints
            .iter()
            .map(|e| 2 + 2 * e.addresses.len())
            .sum::<usize>();
    }
    for (i, set) in t.address_sets.iter().enumerate() {
        if b.address_sets.get(i) == Some(set) {
            saved += 2 + 2 * set.prefixes.prefixes().len();
        }
    }
    for (i, tier) in t.tiers.iter().enumerate() {
        if b.tiers.get(i) == Some(tier) {
            saved += 2 + 2 * tier.rules.len();
        }
    }
    let changed = delta.address_sets.len() + delta.tiers.len() + 1;
    saved > DELTA_FIXED_OVERHEAD + DELTA_ITEM_OVERHEAD * changed
}

/// The changes that turn `base` into `target`.
pub fn delta_between(base: &DeviceProgram, target: &DeviceProgram) -> pb::ProgramDelta {
    let (b, t) = (base.parts(), target.parts());
    pb::ProgramDelta {
        base_hash: base.hash().0.to_vec(),
        format: t.format,
        device: t.device.clone(),
        endpoints: (b.endpoints != t.endpoints).then(|| pb::Endpoints {
            items: t.endpoints.iter().map(endpoint_to_pb).collect(),
        }),
        address_set_count: t.address_sets.len() as u32,
        address_sets: t
            .address_sets
            .iter()
            .enumerate()
            .filter(|(i, s)| b.address_sets.get(*i) != Some(*s))
            .map(|(i, s)| pb::IndexedAddressSet {
                index: i as u32,
                set: Some(set_to_pb(s)),
            })
            .collect(),
        tier_count: t.tiers.len() as u32,
        tiers: t
            .tiers
            .iter()
            .enumerate()
            .filter(|(i, tier)| b.tiers.get(*i) != Some(*tier))
            .map(|(i, tier)| pb::IndexedTier {
                index: i as u32,
                tier: Some(tier_to_pb(tier)),
            })
            .collect(),
        foreign: action_to_pb(t.foreign) as i32,
    }
}

/// Applies a delta to the program it was made from. The result is not validated yet.
pub fn apply_delta(
    base: &DeviceProgram,
    delta: &pb::ProgramDelta,
) -> Result<ProgramParts, WireError> {
    let base_hash = hash_from(&delta.base_hash, "delta.base_hash")?;
    if base_hash != base.hash() {
        return Err(WireError::WrongBase {
            base: base_hash.to_string(),
            current: base.hash().to_string(),
        });
    }
    let b = base.parts();
    let endpoints = match &delta.endpoints {
        Some(list) => endpoints_from_pb(&list.items, "delta.endpoints")?,
        None => b.endpoints.clone(),
    };
    let address_sets = rebuild(
        &b.address_sets,
        delta.address_set_count,
        delta.address_sets.iter().map(|s| (s.index, s.set.as_ref())),
        "delta.address_sets",
        set_from_pb,
    )?;
    let tiers = rebuild(
        &b.tiers,
        delta.tier_count,
        delta.tiers.iter().map(|t| (t.index, t.tier.as_ref())),
        "delta.tiers",
        tier_from_pb,
    )?;
    Ok(ProgramParts {
        format: delta.format,
        device: delta.device.clone(),
        generation: b.generation,
        endpoints,
        address_sets,
        tiers,
        foreign: action_from_pb(delta.foreign, "delta.foreign")?,
    })
}

/// A list rebuilt from the base's items and the delta's replacements, cut to `count`.
fn rebuild<'a, T: Clone, M: 'a>(
    base: &[T],
    count: u32,
    replacements: impl Iterator<Item = (u32, Option<&'a M>)>,
    path: &str,
    decode: impl Fn(&M, &str) -> Result<T, WireError>,
) -> Result<Vec<T>, WireError> {
    let count = count as usize;
    let mut out: Vec<Option<T>> = (0..count).map(|i| base.get(i).cloned()).collect();
    for (k, (index, item)) in replacements.enumerate() {
        let at = format!("{path}[{k}]");
        let slot = out.get_mut(index as usize).ok_or_else(|| {
            field(
                &at,
                format!("index {index} is beyond the list's new length {count}"),
            )
        })?;
        let item = item.ok_or_else(|| field(&at, "the replacement is missing"))?;
        *slot = Some(decode(item, &at)?);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, item)| {
            item.ok_or_else(|| {
                field(
                    path,
                    format!("item {i} is neither in the base program nor in the delta"),
                )
            })
        })
        .collect()
}

/// The update that brings a device running `base` (or nothing) to `target`: a delta when
/// the device runs a program of the same device and the delta encodes smaller, else the
/// whole program.
///
/// The whole program is only encoded when the delta might not be smaller: a delta carries
/// the changed items as the whole program would, plus at most [`DELTA_ITEM_OVERHEAD`]
/// bytes each and [`DELTA_FIXED_OVERHEAD`] in all, and leaves out every unchanged item,
/// each of which takes at least two bytes per element (prefix, rule, address) and two for
/// itself. When that lower bound on what the delta saves exceeds what it adds, the delta
/// is smaller for sure — the common case, and the whole encoding was a tenth of a
/// manager's work in the `fanout` benchmark.
pub fn update_for(target: &DeviceProgram, base: Option<&DeviceProgram>) -> ProgramUpdate {
    let body = match base {
        Some(base) if base.device() == target.device() => {
            let delta = delta_between(base, target);
            if surely_smaller(base, target, &delta) {
                Body::Delta(delta)
            } else {
                let full = program_to_pb(target);
                if delta.encoded_len() < full.encoded_len() {
                    Body::Delta(delta)
                } else {
                    Body::Full(full)
                }
            }
        }
        _ => Body::Full(program_to_pb(target)),
    };
    ProgramUpdate {
        generation: target.generation(),
        hash: target.hash().0.to_vec(),
        body: Some(body),
    }
}

/// The program an update describes, for a device that runs `current`: rebuilt, validated,
/// and refused unless its content hash is the update's.
pub fn receive(
    update: &ProgramUpdate,
    current: Option<&DeviceProgram>,
) -> Result<DeviceProgram, WireError> {
    let expected = hash_from(&update.hash, "hash")?;
    let mut parts = match &update.body {
        Some(Body::Full(program)) => parts_from_pb(program)?,
        Some(Body::Delta(delta)) => match current {
            Some(base) => apply_delta(base, delta)?,
            None => {
                return Err(WireError::WrongBase {
                    base: hash_from(&delta.base_hash, "delta.base_hash")?.to_string(),
                    current: "nothing".into(),
                });
            }
        },
        None => return Err(field("body", "the update carries no program")),
    };
    parts.generation = update.generation;
    let program = DeviceProgram::new(parts)?;
    if program.hash() != expected {
        return Err(WireError::HashMismatch {
            expected: expected.to_string(),
            actual: program.hash().to_string(),
        });
    }
    Ok(program)
}

/// A 32-byte content hash from a message field.
pub fn hash_from(bytes: &[u8], path: &str) -> Result<ContentHash, WireError> {
    <[u8; 32]>::try_from(bytes).map(ContentHash).map_err(|_| {
        field(
            path,
            format!("a content hash is 32 bytes, not {}", bytes.len()),
        )
    })
}
