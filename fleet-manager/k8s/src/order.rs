//! The order policies are evaluated in, which both [`crate::lower`] and [`crate::explain`]
//! follow: AdminNetworkPolicies by priority then name (upstream leaves equal priorities
//! undefined; the name makes the choice deterministic), NetworkPolicies by namespace then name
//! (their order cannot change a verdict, only which allowing rule is reported), then the
//! BaselineAdminNetworkPolicy.

use std::collections::HashSet;

use crate::K8sError;
use crate::manifest::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, K8sPolicy, NetworkPolicy};

/// Policies sorted into evaluation order.
pub(crate) struct PolicyOrder<'a> {
    pub(crate) admin: Vec<&'a AdminNetworkPolicy>,
    pub(crate) network: Vec<&'a NetworkPolicy>,
    /// The first BaselineAdminNetworkPolicy ([`checked`] refuses a second one).
    pub(crate) baseline: Option<&'a BaselineAdminNetworkPolicy>,
}

impl<'a> PolicyOrder<'a> {
    pub(crate) fn new(policies: &'a [K8sPolicy]) -> Self {
        let mut order = PolicyOrder {
            admin: Vec::new(),
            network: Vec::new(),
            baseline: None,
        };
        for policy in policies {
            match policy {
                K8sPolicy::NetworkPolicy(p) => order.network.push(p),
                K8sPolicy::AdminNetworkPolicy(p) => order.admin.push(p),
                K8sPolicy::BaselineAdminNetworkPolicy(p) => {
                    order.baseline.get_or_insert(p);
                }
            }
        }
        order.admin.sort_by(|a, b| {
            (a.spec.priority, &a.metadata.name).cmp(&(b.spec.priority, &b.metadata.name))
        });
        order.network.sort_by(|a, b| {
            (a.namespace(), &a.metadata.name).cmp(&(b.namespace(), &b.metadata.name))
        });
        order
    }
}

/// Validates every policy, refuses two objects with one identity, and orders them.
pub(crate) fn checked(policies: &[K8sPolicy]) -> Result<PolicyOrder<'_>, K8sError> {
    let mut seen = HashSet::new();
    for policy in policies {
        policy.validate()?;
        // A cluster has a single BaselineAdminNetworkPolicy whatever its name.
        let identity = match policy {
            K8sPolicy::BaselineAdminNetworkPolicy(_) => policy.kind().to_string(),
            _ => policy.display_name(),
        };
        if !seen.insert(identity) {
            return Err(K8sError::Duplicate {
                object: policy.display_name(),
            });
        }
    }
    Ok(PolicyOrder::new(policies))
}
