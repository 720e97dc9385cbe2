//! The shared core of the APIs: the fleet behind a lock, the hub, the CA, and what every
//! request needs — who is calling, running a change and telling the world about it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use palisade_api::pb::orchestrator::v1 as pb;
use palisade_pki::{Ca, ConnInfo, Identity, ServerTls, Validity};
use tonic::{Request, Status};
use tracing::{info, warn};

use crate::convert::commit_to_pb;
use crate::fleet::{
    Authority, CommitRecord, Effects, Fleet, FleetError, Role, SignedCertificate, now_ms,
};
use crate::hub::{Hub, HubEvent};

/// The fleet's CA as the state machine sees it.
pub struct CaAuthority(pub Arc<Ca>);

impl Authority for CaAuthority {
    fn sign_device(
        &self,
        csr_pem: &str,
        device: &str,
        validity: Duration,
    ) -> Result<SignedCertificate, String> {
        let cert = self
            .0
            .sign_device_csr(csr_pem, device, Validity::for_duration(validity))
            .map_err(|e| e.to_string())?;
        Ok(SignedCertificate {
            pem: cert.pem,
            serial: cert.serial,
            not_after_unix: cert
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        })
    }

    fn ca_pem(&self) -> String {
        self.0.cert_pem().to_string()
    }
}

/// Who is calling the orchestrator API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Everything the services share.
pub struct Core {
    /// The state machine.
    pub fleet: Mutex<Fleet>,
    /// Distribution.
    pub hub: Arc<Hub>,
    /// The CA.
    pub ca: Arc<Ca>,
    /// The TLS configuration of every listener (for CRL updates).
    pub tls: ServerTls,
    /// Flow telemetry.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Revoked serials and devices, for checking calls without taking the fleet's lock
    /// (a commit holds it while it compiles); kept current by [`Core::refresh_crl`].
    pub revoked: RwLock<RevokedView>,
}

/// What is revoked, as calls check it.
#[derive(Default, Debug)]
pub struct RevokedView {
    /// Certificate serials.
    pub serials: HashSet<String>,
    /// Device names.
    pub devices: HashSet<String>,
}

/// A refusal as a gRPC status.
pub fn status_of(e: &FleetError) -> Status {
    let message = e.to_string();
    match e {
        FleetError::Intent(palisade_intent::StoreError::Conflict { .. }) => {
            Status::aborted(message)
        }
        FleetError::Intent(palisade_intent::StoreError::NotFound(_)) | FleetError::NotFound(_) => {
            Status::not_found(message)
        }
        FleetError::Intent(palisade_intent::StoreError::NothingToCommit(_)) => {
            Status::failed_precondition(message)
        }
        FleetError::Denied(_) => Status::permission_denied(message),
        FleetError::Store(_) => Status::unavailable(message),
        _ => Status::invalid_argument(message),
    }
}

impl Core {
    /// Runs `f` on the fleet off the async threads (compiles can take a while).
    pub async fn with_fleet<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Fleet) -> R + Send + 'static,
    ) -> Result<R, Status> {
        let core = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut fleet = core.fleet.lock().expect("fleet lock");
            f(&mut fleet)
        })
        .await
        .map_err(|e| Status::internal(format!("the request's task failed: {e}")))
    }

    /// Tells devices, watchers and the TLS layer what a change did.
    pub fn apply_effects(&self, effects: Effects) {
        for program in effects.programs {
            self.hub.publish(program);
        }
        if effects.revocations {
            self.refresh_crl();
        }
        for device in &effects.disconnect {
            self.hub.disconnect(device);
        }
        if !effects.commits.is_empty() {
            let fleet = self.fleet.lock().expect("fleet lock");
            self.telemetry.refresh(&fleet);
        }
        for generation in effects.commits {
            self.hub.emit(HubEvent::Commit(generation));
        }
        for device in effects.devices {
            self.hub.emit(HubEvent::Device(device));
        }
    }

    /// Regenerates the CRL from the revoked serials and installs it.
    pub fn refresh_crl(&self) {
        let revoked: Vec<palisade_pki::Revoked> = {
            let fleet = self.fleet.lock().expect("fleet lock");
            let view = RevokedView {
                serials: fleet.revoked().map(|(s, _)| s.to_string()).collect(),
                devices: fleet.revoked_devices().map(str::to_string).collect(),
            };
            *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = view;
            fleet
                .revoked()
                .map(|(serial, at_ms)| palisade_pki::Revoked {
                    serial: serial.to_string(),
                    at: std::time::UNIX_EPOCH + Duration::from_millis(at_ms.max(0) as u64),
                })
                .collect()
        };
        let number = now_ms().max(1) as u64;
        match self
            .ca
            .crl(&revoked, number, Duration::from_secs(7 * 24 * 3600))
            .and_then(|der| self.tls.set_crl(&der))
        {
            Ok(()) => info!(revoked = revoked.len(), "revocation list updated"),
            Err(e) => warn!("could not update the revocation list: {e}"),
        }
    }

    /// The status message of a commit.
    pub fn commit_pb(&self, fleet: &Fleet, commit: &CommitRecord) -> pb::CommitStatus {
        let hub = Arc::clone(&self.hub);
        commit_to_pb(&fleet.commit_status(commit, now_ms(), &move |d| hub.connected(d)))
    }

    /// The calling device, from its verified client certificate. Refuses callers without
    /// one, orchestrator certificates, and devices revoked since the handshake.
    pub fn device<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let peer = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.peer.clone())
            .ok_or_else(|| {
                Status::unauthenticated("this call needs the device's client certificate")
            })?;
        let Identity::Device(name) = peer.identity else {
            return Err(Status::permission_denied(
                "this call is for devices; the certificate is an orchestrator user's",
            ));
        };
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        if revoked.serials.contains(&peer.serial) || revoked.devices.contains(&name) {
            warn!(device = %name, serial = %peer.serial, "refused a revoked device");
            return Err(Status::permission_denied(format!(
                "device `{name}` is revoked"
            )));
        }
        Ok(name)
    }

    /// The calling orchestrator user, from a user certificate or a bearer token.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.peer.clone());
        if let Some(peer) = peer {
            return match peer.identity {
                Identity::User { name, role } => Ok(Caller {
                    name,
                    role: match role {
                        palisade_pki::Role::Admin => Role::Admin,
                        palisade_pki::Role::ReadOnly => Role::ReadOnly,
                    },
                }),
                Identity::Device(name) => Err(Status::permission_denied(format!(
                    "device `{name}` may not use the orchestrator API"
                ))),
            };
        }
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing credentials: send `authorization: Bearer <token>` or a user certificate",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            Status::unauthenticated("the authorization header must be `Bearer <token>`")
        })?;
        self.caller_for_token(token.trim())
    }

    /// The user behind an API token.
    pub fn caller_for_token(&self, token: &str) -> Result<Caller, Status> {
        let fleet = self.fleet.lock().expect("fleet lock");
        fleet
            .user_for_token(token)
            .map(|u| Caller {
                name: u.name.clone(),
                role: u.role,
            })
            .ok_or_else(|| Status::unauthenticated("unknown API token"))
    }

    /// Like [`Core::caller`], and refuses read-only callers.
    pub fn admin<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = self.caller(request)?;
        if caller.role != Role::Admin {
            return Err(Status::permission_denied(format!(
                "user `{}` is read-only",
                caller.name
            )));
        }
        Ok(caller)
    }
}
