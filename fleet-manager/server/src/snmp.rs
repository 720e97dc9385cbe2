//! What the fleet manager answers over SNMP: its system group and PALISADE-MIB's fleet
//! group (devices, how many are in sync and connected, the current generation, a row per
//! device with its state), plus the palisadeDeviceLost notification when a connected device
//! goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_snmp::{
    DeviceState, FleetDevice, FleetGroup, MibSnapshot, MibSource, Notification, SnmpConfig,
    SnmpHandle, SystemGroup, oids,
};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use crate::fleet::now_ms;
use crate::hub::HubEvent;
use crate::orchestrator::device_state;
use crate::service::Core;

/// The manager's MIB.
struct FleetMib {
    core: Arc<Core>,
}

/// A device's state as PALISADE-MIB says it.
fn state_of(d: &palisade_api::pb::orchestrator::v1::DeviceState) -> DeviceState {
    if !d.enrolled || d.last_seen_unix_ms == 0 {
        DeviceState::NeverConnected
    } else if !d.connected {
        DeviceState::Disconnected
    } else if !d.last_error.is_empty() {
        DeviceState::Failed
    } else if d.acked_generation < d.desired_generation || d.acked_hash != d.desired_hash {
        DeviceState::Behind
    } else {
        DeviceState::InSync
    }
}

impl MibSource for FleetMib {
    fn snapshot(&self) -> MibSnapshot {
        let fleet = self.core.fleet.lock().expect("fleet lock");
        let now = now_ms();
        let devices = fleet
            .device_names()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let d = device_state(&self.core, &fleet, name);
                let last_seen = (d.last_seen_unix_ms > 0).then(|| {
                    let ago = Duration::from_millis((now - d.last_seen_unix_ms).max(0) as u64);
                    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
                });
                FleetDevice {
                    index: i as u32 + 1,
                    name: name.clone(),
                    state: state_of(&d),
                    acked_generation: d.acked_generation,
                    desired_generation: d.desired_generation,
                    last_seen,
                }
            })
            .collect();
        MibSnapshot {
            system: SystemGroup {
                descr: format!("Palisade fleet manager {}", env!("CARGO_PKG_VERSION")),
                object_id: oids::PALISADE_FLEET_MANAGER,
                contact: String::new(),
                name: "fleet-manager".into(),
                location: String::new(),
                // Applications (layer 7).
                services: 64,
            },
            interfaces: None,
            device: None,
            fleet: Some(FleetGroup {
                generation: fleet.generation(),
                devices,
            }),
        }
    }
}

/// Serves the fleet's MIB and sends palisadeDeviceLost when a connected device goes away.
pub async fn serve(core: Arc<Core>, config: SnmpConfig) -> Result<Arc<SnmpHandle>, String> {
    let handle = Arc::new(
        palisade_snmp::serve(
            config,
            Arc::new(FleetMib {
                core: Arc::clone(&core),
            }),
        )
        .await
        .map_err(|e| format!("starting the SNMP agent: {e}"))?,
    );
    info!(addr = %handle.local_addr(), "SNMP agent listening");
    let sender = Arc::clone(&handle);
    let mut events = core.hub.events();
    tokio::spawn(async move {
        let mut connected: HashMap<String, bool> = HashMap::new();
        loop {
            match events.recv().await {
                Ok(HubEvent::Device(name)) => {
                    let now = core.hub.connected(&name);
                    let before = connected.insert(name.clone(), now).unwrap_or(false);
                    if before && !now {
                        let report = sender
                            .send_trap(&Notification::DeviceLost { device: name })
                            .await;
                        if !report.all_sent() {
                            warn!("SNMP notification not delivered to every sink: {report:?}");
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(handle)
}
