//! Distribution: what each device should run, who is connected, and the event feed.
//!
//! Each device has a `watch` channel holding its desired program. A device's stream waits
//! on its own channel only, and a channel holds just the latest value, so a slow or dead
//! device never holds up another and never makes the manager queue programs: whenever it
//! catches up it gets the newest program, once. The hub also keeps each device's recent
//! programs, so an update can be sent as a delta from the one the device reports running.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use palisade_api::pb::control::v1::DeviceStatus;
use palisade_program::{ContentHash, DeviceProgram};
use tokio::sync::{broadcast, watch};

use crate::fleet::now_ms;

/// How many recent programs per device are kept as delta bases.
const RECENT: usize = 4;

/// Something that happened, for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A commit's status may have changed.
    Commit(u64),
    /// A device's state may have changed.
    Device(String),
}

struct DeviceChannel {
    desired: watch::Sender<Option<Arc<DeviceProgram>>>,
    /// Bumped to close the device's streams (revocation).
    kick: watch::Sender<u64>,
    recent: VecDeque<Arc<DeviceProgram>>,
    connections: usize,
    last_seen_ms: i64,
    status: Option<DeviceStatus>,
}

impl DeviceChannel {
    fn new() -> Self {
        Self {
            desired: watch::channel(None).0,
            kick: watch::channel(0).0,
            recent: VecDeque::new(),
            connections: 0,
            last_seen_ms: 0,
            status: None,
        }
    }
}

/// The distribution hub.
pub struct Hub {
    devices: Mutex<HashMap<String, DeviceChannel>>,
    events: broadcast::Sender<HubEvent>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

/// A device's live subscription; dropping it marks the connection gone.
pub struct Subscription {
    hub: Arc<Hub>,
    device: String,
    /// The desired program.
    pub desired: watch::Receiver<Option<Arc<DeviceProgram>>>,
    /// Changes when the device must be disconnected.
    pub kick: watch::Receiver<u64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut devices = self.hub.devices.lock().expect("hub lock");
            if let Some(d) = devices.get_mut(&self.device) {
                d.connections = d.connections.saturating_sub(1);
                d.last_seen_ms = now_ms();
            }
        }
        self.hub.emit(HubEvent::Device(self.device.clone()));
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            devices: Mutex::new(HashMap::new()),
            events: broadcast::channel(4096).0,
        }
    }

    fn with<R>(&self, device: &str, f: impl FnOnce(&mut DeviceChannel) -> R) -> R {
        let mut devices = self.devices.lock().expect("hub lock");
        f(devices
            .entry(device.to_string())
            .or_insert_with(DeviceChannel::new))
    }

    /// Makes `program` the desired program of its device.
    pub fn publish(&self, program: Arc<DeviceProgram>) {
        let device = program.device().to_string();
        self.with(&device, |d| {
            if d.recent.back().is_none_or(|p| p.hash() != program.hash()) {
                d.recent.push_back(Arc::clone(&program));
                if d.recent.len() > RECENT {
                    d.recent.pop_front();
                }
            }
            d.desired.send_replace(Some(program));
        });
    }

    /// Subscribes a device's connection.
    pub fn subscribe(self: &Arc<Self>, device: &str) -> Subscription {
        let (desired, kick) = self.with(device, |d| {
            d.connections += 1;
            d.last_seen_ms = now_ms();
            (d.desired.subscribe(), d.kick.subscribe())
        });
        self.emit(HubEvent::Device(device.to_string()));
        Subscription {
            hub: Arc::clone(self),
            device: device.to_string(),
            desired,
            kick,
        }
    }

    /// A recent program of `device` with this hash, to send a delta from.
    pub fn base(&self, device: &str, hash: &ContentHash) -> Option<Arc<DeviceProgram>> {
        self.with(device, |d| {
            d.recent.iter().rev().find(|p| p.hash() == *hash).cloned()
        })
    }

    /// Whether the device has a live stream.
    pub fn connected(&self, device: &str) -> bool {
        let devices = self.devices.lock().expect("hub lock");
        devices.get(device).is_some_and(|d| d.connections > 0)
    }

    /// When the device was last connected (ms since the epoch), 0 if never.
    pub fn last_seen_ms(&self, device: &str) -> i64 {
        let devices = self.devices.lock().expect("hub lock");
        devices.get(device).map_or(0, |d| {
            if d.connections > 0 {
                now_ms()
            } else {
                d.last_seen_ms
            }
        })
    }

    /// Closes the device's streams.
    pub fn disconnect(&self, device: &str) {
        self.with(device, |d| {
            d.kick.send_modify(|k| *k += 1);
        });
    }

    /// Records a device's status report.
    pub fn report(&self, device: &str, status: DeviceStatus) {
        self.with(device, |d| {
            d.status = Some(status);
            d.last_seen_ms = now_ms();
        });
        self.emit(HubEvent::Device(device.to_string()));
    }

    /// The device's last status report.
    pub fn status(&self, device: &str) -> Option<DeviceStatus> {
        let devices = self.devices.lock().expect("hub lock");
        devices.get(device).and_then(|d| d.status.clone())
    }

    /// Tells watchers something happened.
    pub fn emit(&self, event: HubEvent) {
        // No watcher is fine.
        let _ = self.events.send(event);
    }

    /// A feed of events from now on.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }
}
