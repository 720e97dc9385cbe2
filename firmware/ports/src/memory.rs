//! In-memory ports: two ends of a link inside one process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::{Port, PortError, PortStats};

/// Frames one end sends and the other receives.
type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// One end of an in-memory link. What it sends, its peer receives.
pub struct MemoryPort {
    name: String,
    inbox: Queue,
    outbox: Queue,
    capacity: usize,
    stats: PortStats,
}

/// Two connected ports; each queue holds at most `capacity` frames (sends beyond are
/// dropped and counted, as a NIC ring would).
pub fn memory_pair(a: &str, b: &str, capacity: usize) -> (MemoryPort, MemoryPort) {
    let ab: Queue = Arc::default();
    let ba: Queue = Arc::default();
    let port = |name: &str, inbox: &Queue, outbox: &Queue| MemoryPort {
        name: name.to_string(),
        inbox: Arc::clone(inbox),
        outbox: Arc::clone(outbox),
        capacity,
        stats: PortStats::default(),
    };
    (port(a, &ba, &ab), port(b, &ab, &ba))
}

fn lock(q: &Queue) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
    // A poisoned queue still holds valid frames.
    q.lock().unwrap_or_else(|e| e.into_inner())
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(
        &mut self,
        max: usize,
        out: &mut Vec<Vec<u8>>,
        _spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        let mut inbox = lock(&self.inbox);
        let n = max.min(inbox.len());
        for frame in inbox.drain(..n) {
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += frame.len() as u64;
            out.push(frame);
        }
        Ok(n)
    }

    fn send(
        &mut self,
        frames: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        let mut outbox = lock(&self.outbox);
        let mut sent = 0;
        for frame in frames.drain(..) {
            if outbox.len() < self.capacity {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame.len() as u64;
                outbox.push_back(frame);
                sent += 1;
            } else {
                self.stats.tx_dropped += 1;
                spare.push(frame);
            }
        }
        Ok(sent)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_the_link_and_overflow_is_counted() {
        let (mut a, mut b) = memory_pair("a", "b", 2);
        let mut spare = Vec::new();
        let mut frames = vec![vec![1u8; 60], vec![2u8; 60], vec![3u8; 60]];
        assert_eq!(a.send(&mut frames, &mut spare).unwrap(), 2);
        assert!(frames.is_empty());
        assert_eq!(spare.len(), 1);
        assert_eq!(a.stats().tx_dropped, 1);
        let mut got = Vec::new();
        assert_eq!(b.recv(8, &mut got, &mut spare).unwrap(), 2);
        assert_eq!(got[0][0], 1);
        assert_eq!(got[1][0], 2);
        assert_eq!(b.stats().rx_bytes, 120);
        assert_eq!(a.recv(8, &mut got, &mut spare).unwrap(), 0);
    }
}
