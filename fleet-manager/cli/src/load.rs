//! Reading policy files: our language (`.pal`), our YAML/JSON objects, and Kubernetes
//! manifests (NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy), from files or
//! directories (recursively, in name order).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use palisade_intent::{IntentSet, Object, Origin, lang, yaml};
use palisade_inventory::{Inventory, InventoryIndex};
use palisade_k8s::K8sPolicy;

/// Everything read from the policy paths.
#[derive(Default)]
pub struct Loaded {
    /// Our intent objects with where each came from.
    pub objects: Vec<(Object, Origin)>,
    /// Kubernetes policies.
    pub k8s: Vec<K8sPolicy>,
    /// Every problem found, already rendered for people.
    pub errors: Vec<String>,
    /// Files read.
    pub files: usize,
}

impl Loaded {
    /// The intent objects as a set, or every duplicate.
    pub fn intent(&self) -> Result<IntentSet, Vec<String>> {
        IntentSet::from_objects(
            self.objects
                .iter()
                .map(|(o, origin)| (o.clone(), Some(origin.clone()))),
        )
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }
}

/// Files under `paths` that can hold policy.
pub fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            entries.sort();
            let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
                entries.into_iter().partition(|p| p.is_dir());
            out.extend(files.into_iter().filter(|p| is_policy_file(p)));
            out.extend(policy_files(&dirs)?);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    Ok(out)
}

fn is_policy_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pal" | "yaml" | "yml" | "json")
    )
}

/// Reads every policy file under `paths`, collecting all errors instead of stopping at the
/// first.
pub fn load_policies(paths: &[PathBuf]) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    for file in policy_files(paths)? {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {name}"))?;
        loaded.files += 1;
        if file.extension().and_then(|e| e.to_str()) == Some("pal") {
            match lang::parse(&text) {
                Ok(doc) => loaded.objects.extend(doc.objects.into_iter().map(|s| {
                    (
                        s.value,
                        Origin {
                            file: name.clone(),
                            line: Some(s.span.line as u32),
                        },
                    )
                })),
                Err(errors) => loaded
                    .errors
                    .extend(errors.iter().map(|e| e.render(&name, &text))),
            }
        } else if yaml::is_kubernetes(&text) {
            match palisade_k8s::parse_documents(&text, &name) {
                Ok(policies) => loaded.k8s.extend(policies),
                Err(e) => loaded.errors.push(e.to_string()),
            }
        } else {
            match yaml::parse_objects(&name, &text) {
                Ok(objects) => loaded.objects.extend(objects.into_iter().map(|(o, line)| {
                    (
                        o,
                        Origin {
                            file: name.clone(),
                            line: Some(line),
                        },
                    )
                })),
                Err(errors) => loaded.errors.extend(errors.iter().map(|e| e.to_string())),
            }
        }
    }
    Ok(loaded)
}

/// Reads and validates an inventory file (YAML or JSON).
pub fn load_inventory(path: &Path) -> Result<InventoryIndex> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
    let inventory: Inventory = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{name}: {}",
            e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
        )
    })?;
    inventory
        .index()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}
