//! The forwarding loop shared by `vrouter run` and `vrouter agent`: frames in from the
//! ports, through the pipeline, out of the right port.
//!
//! The vRouter is a bump in the wire: each link joins two ports, and a frame received on one
//! is sent out of the other when the program allows it. A frame redirected to an L7 service
//! goes out of the service's port; a frame the service sends back goes where the frame it
//! came from would have gone (remembered by its MAC pair), else by destination MAC (learned
//! from the links' traffic), else to every link port. Mirrored frames are copied to the
//! mirror's port.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use palisade_dataplane::pipeline::{Disposition, Pipeline};
use palisade_dataplane::session::{NullSink, RecordSink};
use palisade_ports::Port;

/// How often an idle dataplane still ages its sessions (ns).
pub const IDLE_TICK: u64 = 100_000_000;

/// Most remembered (source, destination) MAC pairs of redirected frames.
const MAX_REDIRECTED: usize = 65_536;

/// A frame's (source, destination) MAC addresses.
fn mac_pair(frame: &[u8]) -> Option<([u8; 6], [u8; 6])> {
    Some((
        frame.get(6..12)?.try_into().ok()?,
        frame.get(0..6)?.try_into().ok()?,
    ))
}

/// Where frames received on each port may go, by port index.
pub struct Topology {
    peer: Vec<Option<usize>>,
    services: HashMap<String, usize>,
    mirrors: HashMap<String, usize>,
    service_ports: Vec<bool>,
    link_ports: Vec<usize>,
}

impl Topology {
    /// The topology of ports named `names`: links join two ports each, services and mirrors
    /// name their port.
    pub fn new(
        names: &[&str],
        links: &[[String; 2]],
        services: &HashMap<String, String>,
        mirrors: &HashMap<String, String>,
    ) -> Result<Self> {
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let find = |name: &str, what: &str| {
            index
                .get(name)
                .copied()
                .ok_or_else(|| anyhow!("{what} names port `{name}`, which is not in `ports`"))
        };
        let mut peer = vec![None; names.len()];
        for [a, b] in links {
            let (a, b) = (find(a, "a link")?, find(b, "a link")?);
            if a == b || peer[a].is_some() || peer[b].is_some() {
                bail!(
                    "link [{}, {}]: a port joins at most one link, and not with itself",
                    names[a],
                    names[b]
                );
            }
            peer[a] = Some(b);
            peer[b] = Some(a);
        }
        let mut service_ports = vec![false; names.len()];
        let mut service_index = HashMap::new();
        for (name, port) in services {
            let p = find(port, &format!("service `{name}`"))?;
            service_ports[p] = true;
            service_index.insert(name.clone(), p);
        }
        let mut mirror_index = HashMap::new();
        for (name, port) in mirrors {
            mirror_index.insert(name.clone(), find(port, &format!("mirror `{name}`"))?);
        }
        let link_ports = (0..names.len()).filter(|&i| peer[i].is_some()).collect();
        Ok(Self {
            peer,
            services: service_index,
            mirrors: mirror_index,
            service_ports,
            link_ports,
        })
    }
}

/// Ports, their topology and the pipeline, with the loop's buffers.
pub struct Forwarder {
    ports: Vec<Box<dyn Port>>,
    topology: Topology,
    pipeline: Pipeline,
    macs: HashMap<[u8; 6], usize>,
    /// Where frames handed to a service were going, by (source, destination) MAC.
    redirected: HashMap<([u8; 6], [u8; 6]), usize>,
    spare: Vec<Vec<u8>>,
    rx: Vec<Vec<u8>>,
    tx: Vec<Vec<Vec<u8>>>,
    outcomes: Vec<palisade_dataplane::pipeline::Outcome>,
    last_tick: u64,
}

impl Forwarder {
    /// A forwarder over `ports` (indexed as in `topology`).
    pub fn new(ports: Vec<Box<dyn Port>>, topology: Topology, pipeline: Pipeline) -> Self {
        let n = ports.len();
        Self {
            ports,
            topology,
            pipeline,
            macs: HashMap::new(),
            redirected: HashMap::new(),
            spare: Vec::new(),
            rx: Vec::new(),
            tx: vec![Vec::new(); n],
            outcomes: Vec::new(),
            last_tick: 0,
        }
    }

    /// Each port's name and counters.
    pub fn port_stats(&self) -> Vec<(String, palisade_ports::PortStats)> {
        self.ports
            .iter()
            .map(|p| (p.name().to_string(), p.stats()))
            .collect()
    }

    /// The pipeline (counters, sessions, current program).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// One pass over every port at time `now` (ns); whether any frame was received.
    /// Session records are dropped.
    pub fn poll(&mut self, now: u64) -> Result<bool> {
        self.poll_with(now, &mut NullSink)
    }

    /// [`Forwarder::poll`], handing session records to `sink`. When no frame came in, the
    /// session table still ages (idle sessions end, periodic records go out) every
    /// [`IDLE_TICK`] ns.
    pub fn poll_with(&mut self, now: u64, sink: &mut dyn RecordSink) -> Result<bool> {
        let busy = self.poll_ports(now, sink)?;
        if busy {
            self.last_tick = now;
        } else if now.saturating_sub(self.last_tick) >= IDLE_TICK {
            self.outcomes.clear();
            self.pipeline
                .process::<Vec<u8>>(&[], now, &mut self.outcomes, sink);
            self.last_tick = now;
        }
        Ok(busy)
    }

    fn poll_ports(&mut self, now: u64, sink: &mut dyn RecordSink) -> Result<bool> {
        let mut busy = false;
        for i in 0..self.ports.len() {
            self.rx.clear();
            if self.ports[i].recv(32, &mut self.rx, &mut self.spare)? == 0 {
                continue;
            }
            busy = true;
            if self.topology.peer[i].is_some() {
                for f in &self.rx {
                    if f.len() >= 12 {
                        let src: [u8; 6] = f[6..12].try_into().expect("six bytes");
                        self.macs.insert(src, i);
                    }
                }
            }
            if self.topology.service_ports[i] {
                // Back from an L7 service: already judged; on to where it was going.
                for f in self.rx.drain(..) {
                    let out = mac_pair(&f).and_then(|(src, dst)| {
                        self.redirected
                            .get(&(src, dst))
                            .or_else(|| self.macs.get(&dst))
                            .copied()
                    });
                    match out {
                        Some(out) => self.tx[out].push(f),
                        None => {
                            for &out in &self.topology.link_ports {
                                self.tx[out].push(f.clone());
                            }
                        }
                    }
                }
                continue;
            }
            self.outcomes.clear();
            self.pipeline
                .process(&self.rx, now, &mut self.outcomes, sink);
            for (frame, outcome) in self.rx.drain(..).zip(&self.outcomes) {
                if let Some(m) = outcome
                    .mirror
                    .as_ref()
                    .and_then(|m| self.topology.mirrors.get(m.as_ref()))
                {
                    self.tx[*m].push(frame.clone());
                }
                let out = match &outcome.disposition {
                    Disposition::Forward => self.topology.peer[i],
                    Disposition::Redirect(service) => {
                        if let (Some(peer), Some(pair)) = (self.topology.peer[i], mac_pair(&frame))
                        {
                            if self.redirected.len() >= MAX_REDIRECTED {
                                self.redirected.clear();
                            }
                            self.redirected.insert(pair, peer);
                        }
                        self.topology.services.get(service.as_ref()).copied()
                    }
                    Disposition::Drop(_) => None,
                };
                match out {
                    Some(o) => self.tx[o].push(frame),
                    None => self.spare.push(frame),
                }
            }
        }
        for (port, frames) in self.ports.iter_mut().zip(self.tx.iter_mut()) {
            if !frames.is_empty() {
                port.send(frames, &mut self.spare)?;
            }
        }
        Ok(busy)
    }

    /// Counters as one JSON object: frames, verdicts, sessions, rule hits, ports.
    pub fn stats_json(&self) -> serde_json::Value {
        let pipeline = &self.pipeline;
        let c = pipeline.counters();
        let dropped: serde_json::Map<String, serde_json::Value> = c
            .dropped
            .iter()
            .map(|(reason, n)| (format!("{reason:?}").to_lowercase(), (*n).into()))
            .collect();
        let rules: serde_json::Map<String, serde_json::Value> = pipeline
            .rule_counters()
            .into_iter()
            .filter(|(_, r)| r.connections > 0)
            .map(|(id, r)| {
                (
                    id.to_string(),
                    serde_json::json!({"connections": r.connections, "packets": r.packets, "bytes": r.bytes}),
                )
            })
            .collect();
        let ports: Vec<_> = self
            .ports
            .iter()
            .map(|p| {
                let s = p.stats();
                serde_json::json!({"port": p.name(), "rx": s.rx_frames, "tx": s.tx_frames, "tx_dropped": s.tx_dropped})
            })
            .collect();
        let sessions = pipeline.sessions().counters();
        serde_json::json!({
            "generation": pipeline.program().generation(),
            "frames": c.frames, "forwarded": c.forwarded, "redirected": c.redirected,
            "mirrored": c.mirrored, "dropped": dropped, "switches": c.switches,
            "sessions": {"active": pipeline.sessions().len(), "created": sessions.created,
                         "denied": sessions.denied, "expired": sessions.expired, "evicted": sessions.evicted},
            "rules": rules, "ports": ports,
        })
    }
}
