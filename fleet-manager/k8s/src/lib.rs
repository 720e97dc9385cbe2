//! Kubernetes network policies with upstream semantics.
