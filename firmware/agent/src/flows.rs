//! Session records on their way out of the agent: the dataplane's [`SessionRecord`]s become
//! [`FlowRecord`]s with wall-clock times and wait in a bounded queue until the manager has
//! stored them (what it has not acknowledged is sent again); when the manager is away long
//! enough for the queue to fill, the oldest records go first and are counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_dataplane::session::{
    EndReason as DpEnd, RecordKind as DpKind, RecordSink, SessionRecord,
};
use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};

/// Records waiting for the manager.
#[derive(Debug)]
pub struct FlowQueue {
    records: Mutex<VecDeque<FlowRecord>>,
    capacity: usize,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records queued since start.
    pub queued: AtomicU64,
}

impl FlowQueue {
    /// A queue of at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<FlowRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record, dropping the oldest when full.
    pub fn push(&self, record: FlowRecord) {
        let mut q = self.lock();
        if q.len() >= self.capacity {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(record);
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes up to `max` of the oldest records.
    pub fn take(&self, max: usize) -> Vec<FlowRecord> {
        let mut q = self.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Puts back records that could not be delivered, ahead of newer ones.
    pub fn put_back(&self, records: Vec<FlowRecord>) {
        let mut q = self.lock();
        for r in records.into_iter().rev() {
            q.push_front(r);
        }
        while q.len() > self.capacity {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The dataplane's record sink: converts and queues.
pub struct FlowSink {
    queues: Vec<Arc<FlowQueue>>,
    device: Arc<str>,
    /// Wall-clock ms at dataplane time 0.
    epoch_ms: i64,
}

impl FlowSink {
    /// A sink feeding `queues`, for records of `device` whose dataplane clock started at
    /// `epoch_ms` (ms since the Unix epoch).
    pub fn new(queues: Vec<Arc<FlowQueue>>, device: &str, epoch_ms: i64) -> Self {
        Self {
            queues,
            device: device.into(),
            epoch_ms,
        }
    }

    /// The flow record of a session record.
    pub fn convert(&self, r: &SessionRecord) -> FlowRecord {
        let ms = |ns: u64| self.epoch_ms + (ns / 1_000_000) as i64;
        let (kind, end_reason) = match r.kind {
            DpKind::Start => (RecordKind::Start, None),
            DpKind::Update => (RecordKind::Update, None),
            DpKind::End(reason) => (
                RecordKind::End,
                Some(match reason {
                    DpEnd::Idle => EndReason::Idle,
                    DpEnd::Fin => EndReason::Fin,
                    DpEnd::Reset => EndReason::Reset,
                    DpEnd::Evicted => EndReason::Evicted,
                    DpEnd::PolicyChange => EndReason::PolicyChange,
                    DpEnd::Flushed => EndReason::Flushed,
                }),
            ),
        };
        FlowRecord {
            device: Arc::clone(&self.device),
            kind,
            end_reason,
            src: r.key.src,
            dst: r.key.dst,
            protocol: r.key.protocol.0,
            src_port: r.key.src_port,
            dst_port: r.key.dst_port,
            start_ms: ms(r.started),
            end_ms: ms(r.last_seen.max(r.started)),
            packets: r.delta_packets[0],
            bytes: r.delta_bytes[0],
            rev_packets: r.delta_packets[1],
            rev_bytes: r.delta_bytes[1],
            verdict: if r.verdict.allowed {
                Verdict::Allowed
            } else {
                Verdict::Denied
            },
            rule: r.verdict.rule.as_deref().unwrap_or_default().into(),
            generation: r.verdict.generation,
        }
    }
}

impl RecordSink for FlowSink {
    fn emit(&mut self, record: SessionRecord) {
        let flow = self.convert(&record);
        for q in &self.queues {
            q.push(flow.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u16) -> FlowRecord {
        FlowRecord {
            device: "d".into(),
            kind: RecordKind::Start,
            end_reason: None,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            src_port: n,
            dst_port: 80,
            start_ms: 0,
            end_ms: 0,
            packets: 1,
            bytes: 60,
            rev_packets: 0,
            rev_bytes: 0,
            verdict: Verdict::Allowed,
            rule: "".into(),
            generation: 1,
        }
    }

    #[test]
    fn the_queue_keeps_order_puts_back_and_drops_the_oldest_when_full() {
        let q = FlowQueue::new(3);
        for n in 1..=4 {
            q.push(record(n));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 1);
        let taken = q.take(2);
        assert_eq!(taken.iter().map(|r| r.src_port).collect::<Vec<_>>(), [2, 3]);
        q.push(record(5));
        q.put_back(taken);
        // Over capacity again: the oldest (2) goes.
        let all = q.take(10);
        assert_eq!(
            all.iter().map(|r| r.src_port).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        assert!(q.is_empty());
    }
}
