//! The inventory: what runs where, as orchestrators report it.
//!
//! Devices (DPUs, host-shims, Kubernetes nodes), projects (Kubernetes namespaces), their
//! networks, and workloads (VMs, pods, bare-metal servers) with their interfaces: addresses,
//! the device that enforces for them, declared named ports, and the tags and labels attached
//! at each level. Tags are kept as written (`tier=web`, `global:site=paris`); the intent
//! model resolves them. Labels are Kubernetes-style key/value maps used by Kubernetes
//! selectors.
//!
//! [`Inventory::index`] validates an inventory and returns an [`InventoryIndex`]: the
//! endpoints (one per interface) in canonical order with look-ups by name and address.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use palisade_program::{Prefix, Protocol};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A Kubernetes-style label map.
pub type Labels = BTreeMap<String, String>;

/// Everything the fleet manager knows about placement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Enforcement points.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Projects (Kubernetes namespaces) with their networks.
    #[serde(default)]
    pub projects: Vec<Project>,
    /// Workloads with their interfaces.
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

/// A device that enforces device programs: a DPU, a host-shim, a Kubernetes node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Unique name.
    pub name: String,
    /// The host's own address, if it has one peers can reach (a Kubernetes node IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// Labels (Kubernetes node labels, for AdminNetworkPolicy `nodes` peers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// A project: the scope of project tags and policies (a Kubernetes namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Unique name.
    pub name: String,
    /// Tags attached to the project, inherited by its networks, workloads and interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Labels (Kubernetes namespace labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Virtual networks of the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
}

/// A virtual network of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Name, unique in its project.
    pub name: String,
    /// Tags attached to the network, inherited by the interfaces on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Its subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Prefix>,
}

/// A workload: VM, pod, container or bare-metal server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name, unique in its project.
    pub name: String,
    /// The project (namespace) it belongs to.
    pub project: String,
    /// Tags attached to the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Labels (Kubernetes pod labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Its network interfaces; each is one endpoint of the firewall.
    pub interfaces: Vec<Interface>,
}

/// A workload's network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Name, unique in its workload.
    #[serde(default = "default_interface_name")]
    pub name: String,
    /// The network it is attached to (in the workload's project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// The device that enforces policy for it.
    pub device: String,
    /// Tags attached to the interface (the most specific level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Ports the workload declares on this interface (what named ports resolve against).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
}

fn default_interface_name() -> String {
    "eth0".to_string()
}

/// A declared port (a Kubernetes container port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    /// Its name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Protocol (TCP when omitted).
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
}

fn default_protocol() -> Protocol {
    Protocol::TCP
}

/// A reason the inventory is inconsistent, naming the object at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{object}: {problem}")]
pub struct InventoryError {
    /// The object, e.g. `workload shop/web-1, interface eth0`.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

fn err(object: impl Into<String>, problem: impl Into<String>) -> InventoryError {
    InventoryError {
        object: object.into(),
        problem: problem.into(),
    }
}

/// Index of an endpoint in [`InventoryIndex::endpoints`].
pub type EndpointId = u32;

/// One endpoint: a workload interface, with where it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `project/workload/interface`.
    pub name: String,
    /// Index into [`Inventory::projects`].
    pub project: usize,
    /// Index into [`Inventory::workloads`].
    pub workload: usize,
    /// Index into the workload's interfaces.
    pub interface: usize,
    /// Index into [`Inventory::devices`].
    pub device: usize,
    /// Index into the project's networks, when attached to one.
    pub network: Option<usize>,
    /// Addresses, sorted.
    pub addresses: Vec<IpAddr>,
}

/// What owns an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressOwner {
    /// A workload interface.
    Endpoint(EndpointId),
    /// A device's own address.
    Device(usize),
}

/// A validated inventory with its look-ups.
#[derive(Clone, Debug)]
pub struct InventoryIndex {
    inventory: Inventory,
    endpoints: Vec<EndpointInfo>,
    endpoint_by_name: HashMap<String, EndpointId>,
    owner_by_address: HashMap<IpAddr, AddressOwner>,
    device_by_name: HashMap<String, usize>,
    project_by_name: HashMap<String, usize>,
    device_endpoints: Vec<Vec<EndpointId>>,
}

impl Inventory {
    /// Validates the inventory and builds its index.
    pub fn index(self) -> Result<InventoryIndex, InventoryError> {
        InventoryIndex::new(self)
    }
}

fn check_name(object: &str, name: &str) -> Result<(), InventoryError> {
    if name.is_empty() {
        return Err(err(object, "the name is empty"));
    }
    if name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(err(
            object,
            format!("name `{name}` must not contain `/` or spaces"),
        ));
    }
    Ok(())
}

impl InventoryIndex {
    fn new(inventory: Inventory) -> Result<Self, InventoryError> {
        let mut device_by_name = HashMap::new();
        let mut owner_by_address = HashMap::new();
        for (i, d) in inventory.devices.iter().enumerate() {
            let object = format!("device {}", d.name);
            check_name(&object, &d.name)?;
            if device_by_name.insert(d.name.clone(), i).is_some() {
                return Err(err(object, "the name is used by another device"));
            }
            if let Some(a) = d.address
                && owner_by_address
                    .insert(a, AddressOwner::Device(i))
                    .is_some()
            {
                return Err(err(object, format!("address {a} is used twice")));
            }
        }
        let mut project_by_name = HashMap::new();
        for (i, p) in inventory.projects.iter().enumerate() {
            let object = format!("project {}", p.name);
            check_name(&object, &p.name)?;
            if project_by_name.insert(p.name.clone(), i).is_some() {
                return Err(err(object, "the name is used by another project"));
            }
            let mut seen = HashMap::new();
            for n in &p.networks {
                let object = format!("project {}, network {}", p.name, n.name);
                check_name(&object, &n.name)?;
                if seen.insert(n.name.as_str(), ()).is_some() {
                    return Err(err(object, "the name is used twice in the project"));
                }
            }
        }
        let mut endpoints = Vec::new();
        let mut workload_names = HashMap::new();
        for (wi, w) in inventory.workloads.iter().enumerate() {
            let object = format!("workload {}/{}", w.project, w.name);
            check_name(&object, &w.name)?;
            let Some(&pi) = project_by_name.get(&w.project) else {
                return Err(err(
                    object,
                    format!("project `{}` is not in the inventory", w.project),
                ));
            };
            if workload_names.insert((pi, w.name.as_str()), ()).is_some() {
                return Err(err(object, "the name is used twice in the project"));
            }
            if w.interfaces.is_empty() {
                return Err(err(object, "has no interface"));
            }
            let mut iface_names = HashMap::new();
            for (ii, iface) in w.interfaces.iter().enumerate() {
                let object = format!(
                    "workload {}/{}, interface {}",
                    w.project, w.name, iface.name
                );
                check_name(&object, &iface.name)?;
                if iface_names.insert(iface.name.as_str(), ()).is_some() {
                    return Err(err(object, "the name is used twice in the workload"));
                }
                let Some(&di) = device_by_name.get(&iface.device) else {
                    return Err(err(
                        object,
                        format!("device `{}` is not in the inventory", iface.device),
                    ));
                };
                let network = match &iface.network {
                    None => None,
                    Some(n) => Some(
                        inventory.projects[pi]
                            .networks
                            .iter()
                            .position(|net| &net.name == n)
                            .ok_or_else(|| {
                                err(
                                    &object,
                                    format!("network `{n}` is not in project `{}`", w.project),
                                )
                            })?,
                    ),
                };
                for port in &iface.ports {
                    if port.name.as_deref() == Some("") {
                        return Err(err(&object, "a declared port has an empty name"));
                    }
                }
                let mut addresses = iface.addresses.clone();
                addresses.sort();
                addresses.dedup();
                endpoints.push(EndpointInfo {
                    name: format!("{}/{}/{}", w.project, w.name, iface.name),
                    project: pi,
                    workload: wi,
                    interface: ii,
                    device: di,
                    network,
                    addresses,
                });
            }
        }
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
        let mut endpoint_by_name = HashMap::new();
        let mut device_endpoints = vec![Vec::new(); inventory.devices.len()];
        for (i, e) in endpoints.iter().enumerate() {
            let id = i as EndpointId;
            endpoint_by_name.insert(e.name.clone(), id);
            device_endpoints[e.device].push(id);
            for a in &e.addresses {
                if let Some(previous) = owner_by_address.insert(*a, AddressOwner::Endpoint(id)) {
                    let other = match previous {
                        AddressOwner::Endpoint(o) => {
                            format!("endpoint {}", endpoints[o as usize].name)
                        }
                        AddressOwner::Device(d) => format!("device {}", inventory.devices[d].name),
                    };
                    return Err(err(
                        format!("endpoint {}", e.name),
                        format!("address {a} is also used by {other}"),
                    ));
                }
            }
        }
        Ok(Self {
            inventory,
            endpoints,
            endpoint_by_name,
            owner_by_address,
            device_by_name,
            project_by_name,
            device_endpoints,
        })
    }

    /// The inventory as given.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// All endpoints, sorted by name; an [`EndpointId`] indexes this slice.
    pub fn endpoints(&self) -> &[EndpointInfo] {
        &self.endpoints
    }

    /// One endpoint.
    pub fn endpoint(&self, id: EndpointId) -> &EndpointInfo {
        &self.endpoints[id as usize]
    }

    /// The endpoint's workload.
    pub fn workload_of(&self, id: EndpointId) -> &Workload {
        &self.inventory.workloads[self.endpoint(id).workload]
    }

    /// The endpoint's interface.
    pub fn interface_of(&self, id: EndpointId) -> &Interface {
        let e = self.endpoint(id);
        &self.inventory.workloads[e.workload].interfaces[e.interface]
    }

    /// The endpoint's project.
    pub fn project_of(&self, id: EndpointId) -> &Project {
        &self.inventory.projects[self.endpoint(id).project]
    }

    /// The endpoint's network, if attached to one.
    pub fn network_of(&self, id: EndpointId) -> Option<&Network> {
        let e = self.endpoint(id);
        e.network
            .map(|n| &self.inventory.projects[e.project].networks[n])
    }

    /// The endpoint with this exact `project/workload/interface` name.
    pub fn endpoint_by_name(&self, name: &str) -> Option<EndpointId> {
        self.endpoint_by_name.get(name).copied()
    }

    /// What owns `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<AddressOwner> {
        self.owner_by_address.get(&ip).copied()
    }

    /// A device's index by name.
    pub fn device_by_name(&self, name: &str) -> Option<usize> {
        self.device_by_name.get(name).copied()
    }

    /// A project's index by name.
    pub fn project_by_name(&self, name: &str) -> Option<usize> {
        self.project_by_name.get(name).copied()
    }

    /// The endpoints a device enforces for, in endpoint order.
    pub fn device_endpoints(&self, device: usize) -> &[EndpointId] {
        &self.device_endpoints[device]
    }

    /// Finds an endpoint from what a user would type: `project/workload/interface`,
    /// `project/workload` (a workload with one interface) or one of its addresses.
    pub fn resolve(&self, reference: &str) -> Result<Resolved, InventoryError> {
        if let Ok(ip) = reference.parse::<IpAddr>() {
            return Ok(match self.owner_of(ip) {
                Some(AddressOwner::Endpoint(id)) => Resolved::Endpoint(id),
                Some(AddressOwner::Device(d)) => Resolved::Device(d, ip),
                None => Resolved::External(ip),
            });
        }
        if let Some(id) = self.endpoint_by_name(reference) {
            return Ok(Resolved::Endpoint(id));
        }
        let prefix = format!("{reference}/");
        let start = self
            .endpoints
            .partition_point(|e| e.name.as_str() < prefix.as_str());
        let matches: Vec<EndpointId> = self.endpoints[start..]
            .iter()
            .take_while(|e| e.name.starts_with(&prefix))
            .enumerate()
            .map(|(i, _)| (start + i) as EndpointId)
            .filter(|&id| self.endpoint(id).name[prefix.len()..].find('/').is_none())
            .collect();
        match matches.as_slice() {
            [one] => Ok(Resolved::Endpoint(*one)),
            [] => Err(err(
                reference,
                "no such endpoint: use project/workload[/interface] or an IP address",
            )),
            several => Err(err(
                reference,
                format!(
                    "the workload has {} interfaces; name one: {}",
                    several.len(),
                    several
                        .iter()
                        .map(|&id| self.endpoint(id).name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}

/// What a user's reference to a connection end resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A workload interface.
    Endpoint(EndpointId),
    /// A device's own address.
    Device(usize, IpAddr),
    /// An address the inventory does not know.
    External(IpAddr),
}

impl Resolved {
    /// The address traffic would use (the endpoint's first address).
    pub fn address(&self, index: &InventoryIndex) -> Option<IpAddr> {
        match *self {
            Resolved::Endpoint(id) => index.endpoint(id).addresses.first().copied(),
            Resolved::Device(_, ip) | Resolved::External(ip) => Some(ip),
        }
    }
}

impl fmt::Display for EndpointInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inventory {
        serde_json::from_str(
            r#"{
              "devices": [{"name": "dpu-1"}, {"name": "dpu-2", "address": "172.18.0.2"}],
              "projects": [{"name": "shop", "tags": ["application=shop"],
                            "networks": [{"name": "front", "subnets": ["10.1.0.0/24"]}]}],
              "workloads": [
                {"name": "web-1", "project": "shop", "tags": ["tier=web"],
                 "interfaces": [{"network": "front", "addresses": ["10.1.0.5"], "device": "dpu-1",
                                 "ports": [{"name": "http", "port": 80}]}]},
                {"name": "db-1", "project": "shop",
                 "interfaces": [{"name": "a", "addresses": ["10.1.1.5"], "device": "dpu-2"},
                                {"name": "b", "addresses": ["10.1.2.5"], "device": "dpu-2"}]}
              ]
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn index_sorts_endpoints_and_resolves_references() {
        let index = sample().index().unwrap();
        let names: Vec<_> = index.endpoints().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["shop/db-1/a", "shop/db-1/b", "shop/web-1/eth0"]);
        assert_eq!(index.device_endpoints(1), &[0, 1]);
        assert_eq!(index.resolve("shop/web-1").unwrap(), Resolved::Endpoint(2));
        assert_eq!(index.resolve("10.1.1.5").unwrap(), Resolved::Endpoint(0));
        assert!(matches!(
            index.resolve("172.18.0.2").unwrap(),
            Resolved::Device(1, _)
        ));
        assert!(matches!(
            index.resolve("192.0.2.1").unwrap(),
            Resolved::External(_)
        ));
        let err = index.resolve("shop/db-1").unwrap_err().to_string();
        assert!(err.contains("has 2 interfaces"), "{err}");
        assert!(index.resolve("shop/nope").is_err());
        assert_eq!(
            index.interface_of(2).ports[0].protocol,
            Protocol::TCP,
            "declared ports default to TCP"
        );
    }

    #[test]
    fn inconsistencies_name_the_object() {
        let check = |edit: fn(&mut Inventory), expected: &str| {
            let mut inv = sample();
            edit(&mut inv);
            let e = inv.index().unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        };
        check(
            |i| i.workloads[0].interfaces[0].device = "dpu-9".into(),
            "workload shop/web-1, interface eth0: device `dpu-9` is not in the inventory",
        );
        check(
            |i| i.workloads[1].interfaces[0].addresses = vec!["10.1.0.5".parse().unwrap()],
            "address 10.1.0.5 is also used by endpoint",
        );
        check(
            |i| i.workloads[0].project = "x".into(),
            "project `x` is not in the inventory",
        );
        check(
            |i| i.workloads[0].interfaces[0].network = Some("back".into()),
            "network `back` is not in project `shop`",
        );
        check(
            |i| i.devices[1].name = "dpu-1".into(),
            "used by another device",
        );
        check(
            |i| i.workloads[0].name = "a/b".into(),
            "must not contain `/`",
        );
    }
}
