//! The device-facing gRPC service: enrollment, renewal, program streams, acknowledgements
//! and status reports.

use std::pin::Pin;
use std::sync::Arc;

use palisade_api::delta::{hash_from, update_for};
use palisade_api::pb::control::v1::control_server::Control;
use palisade_api::pb::control::v1::{
    AckRequest, AckResponse, Credentials, DeviceStatus, EnrollRequest, FlowReport,
    FlowReportResponse, ProgramUpdate, RenewRequest, ReportStatusResponse, SubscribeRequest,
    ack_request,
};
use palisade_program::{ContentHash, DeviceProgram};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::convert::placement_from_pb;
use crate::fleet::{Ack, SignedCertificate};
use crate::service::{CaAuthority, Core, status_of};

/// Most acknowledgements recorded in one store transaction.
const MAX_ACK_BATCH: usize = 4096;

type AckReply = tokio::sync::oneshot::Sender<Result<(), Status>>;

/// The Control service.
pub struct ControlService {
    core: Arc<Core>,
    acks: mpsc::Sender<(Ack, AckReply)>,
}

impl ControlService {
    /// The service over the shared core. Starts the task that records acknowledgements
    /// (call it inside the runtime).
    pub fn new(core: Arc<Core>) -> Self {
        let (acks, queue) = mpsc::channel(MAX_ACK_BATCH);
        tokio::spawn(record_acks(Arc::clone(&core), queue));
        Self { core, acks }
    }
}

/// Records acknowledgements as they come, all those waiting in one transaction: after a
/// commit a thousand devices ack within milliseconds, and one durable write each would
/// queue them behind the disk.
async fn record_acks(core: Arc<Core>, mut queue: mpsc::Receiver<(Ack, AckReply)>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ACK_BATCH {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (acks, replies): (Vec<Ack>, Vec<AckReply>) = batch.into_iter().unzip();
        match core.with_fleet(move |f| f.ack_many(acks)).await {
            Ok(Ok((results, effects))) => {
                core.apply_effects(effects);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(|e| status_of(&e)));
                }
            }
            Ok(Err(e)) => {
                warn!("could not record acknowledgements: {e}");
                for reply in replies {
                    let _ = reply.send(Err(status_of(&e)));
                }
            }
            Err(status) => {
                for reply in replies {
                    let _ = reply.send(Err(status.clone()));
                }
            }
        }
    }
}

fn credentials(core: &Core, cert: SignedCertificate) -> Credentials {
    let now = crate::fleet::now_ms() / 1000;
    // Renew at two thirds of the lifetime.
    let renew_after = now + (cert.not_after_unix - now) * 2 / 3;
    Credentials {
        certificate_pem: cert.pem,
        ca_pem: core.ca.cert_pem().to_string(),
        not_after_unix: cert.not_after_unix,
        renew_after_unix: renew_after,
    }
}

/// Refuses a malformed request from a device, saying so in the log.
fn malformed(device: &str, call: &str, message: impl std::fmt::Display) -> Status {
    warn!(device = %device, call, "malformed request refused: {message}");
    Status::invalid_argument(message.to_string())
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<ProgramUpdate, Status>> + Send>>;

/// Most records in one `ReportFlows` call.
pub const MAX_FLOW_RECORDS: usize = 10_000;

#[tonic::async_trait]
impl Control for ControlService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<Credentials>, Status> {
        let peer = request
            .extensions()
            .get::<palisade_pki::ConnInfo>()
            .and_then(|c| c.remote_addr);
        let req = request.into_inner();
        let core = Arc::clone(&self.core);
        let device = req.device.clone();
        let authority = CaAuthority(Arc::clone(&self.core.ca));
        let result = self
            .core
            .with_fleet(move |f| f.enroll(&req.device, &req.token, &req.csr_pem, &authority))
            .await?;
        match result {
            Ok((cert, effects)) => {
                info!(device = %device, serial = %cert.serial, "device enrolled");
                core.apply_effects(effects);
                Ok(Response::new(credentials(&core, cert)))
            }
            Err(e) => {
                warn!(device = %device, peer = ?peer, "enrollment refused: {e}");
                Err(status_of(&e))
            }
        }
    }

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<Credentials>, Status> {
        let device = self.core.device(&request)?;
        let csr = request.into_inner().csr_pem;
        let authority = CaAuthority(Arc::clone(&self.core.ca));
        let name = device.clone();
        let cert = self
            .core
            .with_fleet(move |f| f.renew(&name, &csr, &authority))
            .await?
            .map_err(|e| {
                warn!(device = %device, "renewal refused: {e}");
                status_of(&e)
            })?;
        info!(device = %device, serial = %cert.serial, "certificate renewed");
        Ok(Response::new(credentials(&self.core, cert)))
    }

    type SubscribeStream = UpdateStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let device = self.core.device(&request)?;
        let req = request.into_inner();
        let applied: Option<ContentHash> = if req.applied_hash.is_empty() {
            None
        } else {
            Some(
                hash_from(&req.applied_hash, "applied_hash")
                    .map_err(|e| malformed(&device, "Subscribe", e))?,
            )
        };
        if !req.profile.is_empty() {
            let (name, profile) = (device.clone(), req.profile.clone());
            self.core
                .with_fleet(move |f| f.set_profile(&name, &profile))
                .await?
                .map_err(|e| status_of(&e))?;
        }
        // Make sure the hub knows the current desired program.
        let name = device.clone();
        let desired = self
            .core
            .with_fleet(move |f| f.program(&name).cloned())
            .await?;
        if let Some(p) = desired
            && self.core.hub.base(&device, &p.hash()).is_none()
        {
            self.core.hub.publish(p);
        }
        let mut sub = self.core.hub.subscribe(&device);
        let mut base: Option<Arc<DeviceProgram>> =
            applied.and_then(|h| self.core.hub.base(&device, &h));
        let mut running = applied;
        info!(device = %device, applied = ?applied, "device subscribed");
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let current = sub.desired.borrow_and_update().clone();
                if let Some(program) = current
                    && running != Some(program.hash())
                {
                    let update = update_for(&program, base.as_deref());
                    if tx.send(Ok(update)).await.is_err() {
                        break;
                    }
                    running = Some(program.hash());
                    base = Some(program);
                }
                tokio::select! {
                    changed = sub.desired.changed() => if changed.is_err() { break },
                    _ = sub.kick.changed() => {
                        let _ = tx.send(Err(Status::permission_denied("the device was revoked"))).await;
                        break;
                    }
                    _ = tx.closed() => break,
                }
            }
            drop(sub);
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as UpdateStream
        ))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let device = self.core.device(&request)?;
        let req = request.into_inner();
        let hash = hash_from(&req.hash, "hash").map_err(|e| malformed(&device, "Ack", e))?;
        let result = match req.result {
            Some(ack_request::Result::Applied(p)) => Ok(placement_from_pb(&p)),
            Some(ack_request::Result::Error(e)) => Err(e),
            None => {
                return Err(malformed(
                    &device,
                    "Ack",
                    "result: say `applied` or `error`",
                ));
            }
        };
        match &result {
            Ok(_) => info!(device = %device, generation = req.generation, %hash, "program applied"),
            Err(e) => {
                warn!(device = %device, generation = req.generation, %hash, "program refused by the device: {e}")
            }
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ack = Ack {
            device,
            generation: req.generation,
            hash,
            result,
            profile: None,
        };
        self.acks
            .send((ack, reply))
            .await
            .map_err(|_| Status::unavailable("the manager is shutting down"))?;
        answer
            .await
            .map_err(|_| Status::unavailable("the manager is shutting down"))??;
        Ok(Response::new(AckResponse {}))
    }

    async fn report_flows(
        &self,
        request: Request<FlowReport>,
    ) -> Result<Response<FlowReportResponse>, Status> {
        let device = self.core.device(&request)?;
        let report = request.into_inner();
        if report.records.len() > MAX_FLOW_RECORDS {
            return Err(malformed(
                &device,
                "ReportFlows",
                format!(
                    "{} records in one report; at most {MAX_FLOW_RECORDS}",
                    report.records.len()
                ),
            ));
        }
        let mut records = Vec::with_capacity(report.records.len());
        let name: std::sync::Arc<str> = device.as_str().into();
        for (i, m) in report.records.iter().enumerate() {
            let r = palisade_api::flows::from_pb(m, &name)
                .map_err(|e| malformed(&device, "ReportFlows", format!("records[{i}]: {e}")))?;
            records.push(r);
        }
        let stored = self
            .core
            .telemetry
            .ingest(records)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(FlowReportResponse {
            stored: stored as u64,
        }))
    }

    async fn report_status(
        &self,
        request: Request<DeviceStatus>,
    ) -> Result<Response<ReportStatusResponse>, Status> {
        let device = self.core.device(&request)?;
        self.core.hub.report(&device, request.into_inner());
        Ok(Response::new(ReportStatusResponse {}))
    }
}
