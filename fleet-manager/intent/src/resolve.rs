//! Tags as the inventory carries them, resolved against the intent: each endpoint's
//! effective tag set, inherited project -> network -> workload -> interface with the most
//! specific level winning per type (`label` tags accumulate instead).

use std::collections::HashMap;

use palisade_inventory::{EndpointId, InventoryIndex};

use crate::objects::{ObjectKey, ObjectKind, Scope, TagRef};
use crate::set::IntentSet;

/// Index of a defined tag in [`Tags::keys`].
pub type TagId = u32;

/// Index of a tag type in [`Tags`]' type table.
type KindId = u16;

/// The tags one level (project, network, workload, interface) attaches.
type Level = Vec<(KindId, TagId)>;

/// Every endpoint's effective tags.
#[derive(Clone, Debug)]
pub struct Tags {
    keys: Vec<ObjectKey>,
    ids: HashMap<ObjectKey, TagId>,
    /// The type of each tag.
    kind_of: Vec<KindId>,
    kind_ids: HashMap<String, KindId>,
    /// Per endpoint: its effective tags, sorted.
    effective: Vec<Vec<TagId>>,
}

/// A tag attachment in the inventory that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentError {
    /// The inventory object (`workload shop/web-1`).
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for AttachmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inventory: {}: {}", self.object, self.message)
    }
}

/// An attachment's type and tag id, or why it does not resolve.
type Resolution<'t> = Result<(&'t str, TagId), String>;

/// Resolves one attachment written in `scope`: its type and tag id, or why not.
fn resolve_one<'t>(
    set: &IntentSet,
    ids: &HashMap<ObjectKey, TagId>,
    scope: &Scope,
    text: &'t str,
) -> Result<(&'t str, TagId), String> {
    let tag: TagRef = text.parse()?;
    let Some(key) = set.resolve_tag(scope, &tag) else {
        let where_ = match scope {
            Scope::Global => "globally".to_string(),
            Scope::Project(p) => format!("in project `{p}` or globally"),
        };
        return Err(format!(
            "tag `{tag}` is not defined {where_}; define it with `tag {}={}`",
            tag.kind, tag.value
        ));
    };
    let kind = text
        .trim_start_matches("global:")
        .split_once('=')
        .map_or(text, |(k, _)| k);
    Ok((kind, ids[&key]))
}

impl Tags {
    /// Resolves every attachment of the inventory. Fails with every unresolvable attachment.
    pub fn new<'a>(
        set: &'a IntentSet,
        index: &'a InventoryIndex,
    ) -> Result<Self, Vec<AttachmentError>> {
        let keys: Vec<ObjectKey> = set
            .objects()
            .map(|o| o.key())
            .filter(|k| k.kind == ObjectKind::Tag)
            .collect();
        let ids: HashMap<ObjectKey, TagId> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as TagId))
            .collect();
        let mut kind_ids: HashMap<String, KindId> = HashMap::new();
        let kind_of: Vec<KindId> = keys
            .iter()
            .map(|k| {
                let kind = k.name.split_once('=').map_or(k.name.as_str(), |(t, _)| t);
                let next = kind_ids.len() as KindId;
                *kind_ids.entry(kind.to_string()).or_insert(next)
            })
            .collect();
        let label = kind_ids.get("label").copied().unwrap_or(KindId::MAX);
        let mut errors = Vec::new();
        let inv = index.inventory();
        // Most attachments repeat (`tier=web` on thousands of workloads): resolve each
        // (project, text) once.
        let mut memo: HashMap<(&str, &str), Resolution<'_>> = HashMap::new();
        let mut resolve_level =
            |object: &dyn Fn() -> String,
             project: &'a str,
             tags: &'a [String],
             errors: &mut Vec<AttachmentError>| {
                let mut level: Level = Vec::new();
                for text in tags {
                    let resolved = memo
                        .entry((project, text.as_str()))
                        .or_insert_with(|| {
                            resolve_one(set, &ids, &Scope::Project(project.to_string()), text)
                        })
                        .clone();
                    let (kind, id) = match resolved {
                        Ok(r) => r,
                        Err(message) => {
                            errors.push(AttachmentError {
                                object: object(),
                                message,
                            });
                            continue;
                        }
                    };
                    let k = kind_of[id as usize];
                    if kind != "label" && level.iter().any(|&(lk, _)| lk == k) {
                        errors.push(AttachmentError {
                            object: object(),
                            message: format!("attaches two `{kind}` tags; only `label` may repeat"),
                        });
                        continue;
                    }
                    level.push((k, id));
                }
                level
            };
        let projects: Vec<(Level, Vec<Level>)> = inv
            .projects
            .iter()
            .map(|p| {
                let own = resolve_level(
                    &|| format!("project {}", p.name),
                    &p.name,
                    &p.tags,
                    &mut errors,
                );
                let nets = p
                    .networks
                    .iter()
                    .map(|n| {
                        resolve_level(
                            &|| format!("project {}, network {}", p.name, n.name),
                            &p.name,
                            &n.tags,
                            &mut errors,
                        )
                    })
                    .collect();
                (own, nets)
            })
            .collect();
        let workloads: Vec<Level> = inv
            .workloads
            .iter()
            .map(|w| {
                resolve_level(
                    &|| format!("workload {}/{}", w.project, w.name),
                    &w.project,
                    &w.tags,
                    &mut errors,
                )
            })
            .collect();
        let mut effective = Vec::with_capacity(index.endpoints().len());
        for (id, e) in index.endpoints().iter().enumerate() {
            let iface = index.interface_of(id as EndpointId);
            let w = index.workload_of(id as EndpointId);
            let iface_level = resolve_level(
                &|| {
                    format!(
                        "workload {}/{}, interface {}",
                        w.project, w.name, iface.name
                    )
                },
                &w.project,
                &iface.tags,
                &mut errors,
            );
            let (project_level, network_levels) = &projects[e.project];
            let mut tags: Level = Vec::new();
            let levels = [
                Some(project_level),
                e.network.map(|n| &network_levels[n]),
                Some(&workloads[e.workload]),
                Some(&iface_level),
            ];
            for level in levels.into_iter().flatten() {
                for &(kind, id) in level {
                    // A more specific level replaces the type's value; labels accumulate.
                    if kind != label {
                        tags.retain(|&(k, _)| k != kind);
                    }
                    tags.push((kind, id));
                }
            }
            let mut ids: Vec<TagId> = tags.into_iter().map(|(_, id)| id).collect();
            ids.sort_unstable();
            ids.dedup();
            effective.push(ids);
        }
        if errors.is_empty() {
            Ok(Self {
                keys,
                ids,
                kind_of,
                kind_ids,
                effective,
            })
        } else {
            Err(errors)
        }
    }

    /// The tag objects, indexed by [`TagId`].
    pub fn keys(&self) -> &[ObjectKey] {
        &self.keys
    }

    /// The id of a defined tag.
    pub fn id(&self, key: &ObjectKey) -> Option<TagId> {
        self.ids.get(key).copied()
    }

    /// An endpoint's effective tags, sorted.
    pub fn of(&self, endpoint: EndpointId) -> &[TagId] {
        &self.effective[endpoint as usize]
    }

    /// Whether an endpoint carries a tag.
    pub fn has(&self, endpoint: EndpointId, tag: TagId) -> bool {
        self.of(endpoint).binary_search(&tag).is_ok()
    }

    /// The endpoint's tag of a non-repeatable type, if it has one.
    pub fn value(&self, endpoint: EndpointId, kind: &str) -> Option<TagId> {
        let kind = *self.kind_ids.get(kind)?;
        self.of(endpoint)
            .iter()
            .copied()
            .find(|&t| self.kind_of[t as usize] == kind)
    }

    /// `type=value` of a tag, with its project when project-scoped.
    pub fn display(&self, tag: TagId) -> String {
        let key = &self.keys[tag as usize];
        match &key.scope {
            Scope::Global => key.name.clone(),
            Scope::Project(p) => format!("{p}:{}", key.name),
        }
    }
}

/// Every endpoint's effective tags as `type=value`, sorted; indexed by [`EndpointId`]. What
/// flow records are enriched with.
pub fn endpoint_tags(
    set: &IntentSet,
    index: &InventoryIndex,
) -> Result<Vec<Vec<String>>, Vec<AttachmentError>> {
    let tags = Tags::new(set, index)?;
    Ok((0..index.endpoints().len())
        .map(|e| {
            let mut v: Vec<String> = tags
                .of(e as EndpointId)
                .iter()
                .map(|&t| tags.keys()[t as usize].name.clone())
                .collect();
            v.sort();
            v
        })
        .collect())
}
