//! Enrichment: each record gets the endpoints and tags of both ends as they were when the
//! record was made. The enricher keeps the views of the last few commits with the time each
//! took effect and picks the one in force at the record's report time, so a record that
//! arrives late (a device reconnecting with buffered records) is not tagged with what an
//! address means now.

use std::net::IpAddr;
use std::sync::Arc;

use palisade_flow::FlowRecord;

use crate::Flow;
use rustc_hash::FxHashMap;

/// How many past views are kept.
const HISTORY: usize = 64;

/// What one address is: its endpoint and that endpoint's tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct End {
    /// `project/workload/interface`.
    pub endpoint: Arc<str>,
    /// Effective tags, `type=value`, sorted.
    pub tags: Arc<[String]>,
}

/// Addresses to ends, as of some time.
pub type View = FxHashMap<IpAddr, Arc<End>>;

/// Attaches ends to records.
#[derive(Debug, Default)]
pub struct Enricher {
    /// (in force from, view), oldest first.
    views: Vec<(i64, Arc<View>)>,
    /// What an address that is no endpoint gets.
    nobody: End,
}

impl Enricher {
    /// An enricher that knows nothing yet (records keep empty ends).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the view in force from `at_ms` (a commit's time).
    pub fn update(&mut self, at_ms: i64, view: View) {
        self.views.push((at_ms, Arc::new(view)));
        self.views.sort_by_key(|(t, _)| *t);
        if self.views.len() > HISTORY {
            let extra = self.views.len() - HISTORY;
            self.views.drain(..extra);
        }
    }

    /// The view in force at `at_ms` (the oldest known for earlier times).
    pub fn view_at(&self, at_ms: i64) -> Option<&Arc<View>> {
        let i = self.views.partition_point(|(t, _)| *t <= at_ms);
        self.views
            .get(i.saturating_sub(1))
            .map(|(_, v)| v)
            .or_else(|| self.views.first().map(|(_, v)| v))
    }

    /// The ends of a record: its source's and its destination's as of its time (an empty
    /// end for an address that was no endpoint).
    pub fn ends(&self, record: &FlowRecord) -> (&End, &End) {
        let view = self.view_at(record.end_ms);
        let end =
            |ip: IpAddr| -> &End { view.and_then(|v| v.get(&ip)).map_or(&self.nobody, |e| &**e) };
        (end(record.src), end(record.dst))
    }

    /// The record with its ends (shared with the view: no copy per record).
    pub fn enrich(&self, record: FlowRecord) -> Flow {
        let (src, dst) = self.ends(&record);
        Flow {
            src_endpoint: Arc::clone(&src.endpoint),
            dst_endpoint: Arc::clone(&dst.endpoint),
            src_tags: Arc::clone(&src.tags),
            dst_tags: Arc::clone(&dst.tags),
            record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_flow::{RecordKind, Verdict};

    fn record(end_ms: i64) -> FlowRecord {
        FlowRecord {
            device: "dpu-1".into(),
            kind: RecordKind::End,
            end_reason: None,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            src_port: 1,
            dst_port: 2,
            start_ms: end_ms,
            end_ms,
            packets: 1,
            bytes: 1,
            rev_packets: 0,
            rev_bytes: 0,
            verdict: Verdict::Allowed,
            rule: "".into(),
            generation: 1,
        }
    }

    fn view(tag: &str) -> View {
        let mut v = View::default();
        v.insert(
            "10.0.0.1".parse().unwrap(),
            Arc::new(End {
                endpoint: "shop/web/eth0".into(),
                tags: [tag.into()].into(),
            }),
        );
        v
    }

    #[test]
    fn records_get_the_tags_in_force_when_they_were_made() {
        let mut e = Enricher::new();
        assert_eq!(&*e.enrich(record(5)).src_endpoint, "");
        e.update(100, view("deployment=prod"));
        e.update(200, view("deployment=dev"));
        assert_eq!(&*e.enrich(record(150)).src_tags, ["deployment=prod"]);
        assert_eq!(&*e.enrich(record(250)).src_tags, ["deployment=dev"]);
        assert_eq!(&*e.enrich(record(200)).src_tags, ["deployment=dev"]);
        // Older than anything known: the oldest view.
        assert_eq!(&*e.enrich(record(50)).src_tags, ["deployment=prod"]);
        assert_eq!(&*e.enrich(record(250)).dst_endpoint, "");
    }
}
