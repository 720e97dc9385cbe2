//! Hardware flow entries: what the planner asks a NIC to hold, in rte_flow terms.

use palisade_classifier::Key;

/// A masked value: the field matches when `field & mask == value` (`value` has no bits
/// outside `mask`; a zero mask leaves the field open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Masked<T> {
    /// The value.
    pub value: T,
    /// The mask.
    pub mask: T,
}

/// An entry's pattern: eth / ipv4 / (tcp | udp | sctp), each field optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pattern {
    /// IPv4 source.
    pub src: Option<Masked<u32>>,
    /// IPv4 destination.
    pub dst: Option<Masked<u32>>,
    /// IP protocol (exact).
    pub proto: Option<u8>,
    /// L4 source port (needs `proto` = TCP, UDP or SCTP).
    pub sport: Option<Masked<u16>>,
    /// L4 destination port (likewise).
    pub dport: Option<Masked<u16>>,
}

impl Pattern {
    /// Whether a packet key matches.
    pub fn matches(&self, k: &Key<u32>) -> bool {
        let m32 = |f: Option<Masked<u32>>, v: u32| f.is_none_or(|m| v & m.mask == m.value);
        let m16 = |f: Option<Masked<u16>>, v: u16| f.is_none_or(|m| v & m.mask == m.value);
        m32(self.src, k.src)
            && m32(self.dst, k.dst)
            && self.proto.is_none_or(|p| p == k.proto)
            && m16(self.sport, k.sport)
            && m16(self.dport, k.dport)
    }
}

/// What an entry does on a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HwAction {
    /// Tag the packet with the rule's id and hand it to software (rte_flow MARK + QUEUE).
    Mark(u32),
    /// Continue in another group (rte_flow JUMP).
    Jump(u32),
}

/// One hardware entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HwEntry {
    /// Group (0 is where every packet starts).
    pub group: u32,
    /// Priority within the group (0 is highest).
    pub priority: u32,
    /// What it matches.
    pub pattern: Pattern,
    /// What it does.
    pub action: HwAction,
}

/// Splits an inclusive port range into aligned power-of-two blocks (value, mask), the
/// fewest that cover it exactly (at most 30 for 16-bit ports).
pub fn port_blocks(lo: u16, hi: u16) -> Vec<Masked<u16>> {
    let mut out = Vec::new();
    let mut start = u32::from(lo);
    let end = u32::from(hi);
    while start <= end {
        // The largest aligned block starting at `start` that stays within the range.
        let mut size = if start == 0 {
            1 << 16
        } else {
            1u32 << start.trailing_zeros()
        };
        while start + size - 1 > end {
            size >>= 1;
        }
        out.push(Masked {
            value: start as u16,
            mask: !((size - 1) as u16),
        });
        start += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_blocks_cover_ranges_exactly() {
        for (lo, hi) in [
            (0u16, 65535u16),
            (80, 80),
            (1024, 65535),
            (1, 65534),
            (1000, 2000),
            (0, 0),
            (65535, 65535),
        ] {
            let blocks = port_blocks(lo, hi);
            assert!(blocks.len() <= 30, "{lo}-{hi}: {}", blocks.len());
            for p in [
                lo.saturating_sub(1),
                lo,
                hi,
                hi.saturating_add(1),
                (lo / 2 + hi / 2),
            ] {
                let inside = lo <= p && p <= hi;
                let covered = blocks.iter().filter(|b| p & b.mask == b.value).count();
                assert_eq!(covered, usize::from(inside), "{lo}-{hi} at {p}: {blocks:?}");
            }
        }
        assert_eq!(port_blocks(0, 65535), vec![Masked { value: 0, mask: 0 }]);
        assert_eq!(port_blocks(1024, 65535).len(), 6);
    }
}
