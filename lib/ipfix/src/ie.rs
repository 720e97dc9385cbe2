//! Information Element numbers and the value mappings both halves of the codec share.
//!
//! IANA numbers are from the IPFIX Information Elements registry (RFC 7012 and its
//! updates); NetFlow v9 field types 1..=127 coincide with them (RFC 3954, RFC 7270), and so
//! do the Cisco ASA NSEL types this crate reads (231, 232, 233).

use palisade_flow::{EndReason, RecordKind, Verdict};

/// The Private Enterprise Number of Palisade's own Information Elements.
///
/// 32473 is IANA's documentation PEN (RFC 5612); a deployment that registers its own PEN
/// changes this constant and nothing else.
pub const PALISADE_PEN: u32 = 32473;

/// The PEN of RFC 5103's reverse Information Elements: the IANA element of the same number,
/// counted in the reverse direction of a biflow.
pub const REVERSE_PEN: u32 = 29305;

/// The variable-length marker in a field specifier's length (RFC 7011 section 7).
pub const VARIABLE_LENGTH: u16 = 0xffff;

/// IANA Information Elements (and the NetFlow v9 field types with the same numbers).
pub mod iana {
    /// octetDeltaCount (NetFlow v9 IN_BYTES).
    pub const OCTET_DELTA_COUNT: u16 = 1;
    /// packetDeltaCount (NetFlow v9 IN_PKTS).
    pub const PACKET_DELTA_COUNT: u16 = 2;
    /// protocolIdentifier.
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    /// sourceTransportPort.
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    /// sourceIPv4Address.
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    /// destinationTransportPort.
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    /// destinationIPv4Address.
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    /// flowEndSysUpTime (NetFlow v9 LAST_SWITCHED).
    pub const FLOW_END_SYS_UP_TIME: u16 = 21;
    /// flowStartSysUpTime (NetFlow v9 FIRST_SWITCHED).
    pub const FLOW_START_SYS_UP_TIME: u16 = 22;
    /// sourceIPv6Address.
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    /// destinationIPv6Address.
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    /// octetTotalCount.
    pub const OCTET_TOTAL_COUNT: u16 = 85;
    /// packetTotalCount.
    pub const PACKET_TOTAL_COUNT: u16 = 86;
    /// forwardingStatus (RFC 7270).
    pub const FORWARDING_STATUS: u16 = 89;
    /// flowEndReason.
    pub const FLOW_END_REASON: u16 = 136;
    /// flowStartSeconds.
    pub const FLOW_START_SECONDS: u16 = 150;
    /// flowEndSeconds.
    pub const FLOW_END_SECONDS: u16 = 151;
    /// flowStartMilliseconds.
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    /// flowEndMilliseconds.
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    /// flowStartMicroseconds (NTP timestamp format).
    pub const FLOW_START_MICROSECONDS: u16 = 154;
    /// flowEndMicroseconds (NTP timestamp format).
    pub const FLOW_END_MICROSECONDS: u16 = 155;
    /// flowStartNanoseconds (NTP timestamp format).
    pub const FLOW_START_NANOSECONDS: u16 = 156;
    /// flowEndNanoseconds (NTP timestamp format).
    pub const FLOW_END_NANOSECONDS: u16 = 157;
    /// flowStartDeltaMicroseconds (before the message's export time).
    pub const FLOW_START_DELTA_MICROSECONDS: u16 = 158;
    /// flowEndDeltaMicroseconds (before the message's export time).
    pub const FLOW_END_DELTA_MICROSECONDS: u16 = 159;
    /// systemInitTimeMilliseconds: the epoch of the sysUpTime-relative times.
    pub const SYSTEM_INIT_TIME_MILLISECONDS: u16 = 160;
    /// flowDurationMilliseconds.
    pub const FLOW_DURATION_MILLISECONDS: u16 = 161;
    /// udpSourcePort.
    pub const UDP_SOURCE_PORT: u16 = 180;
    /// udpDestinationPort.
    pub const UDP_DESTINATION_PORT: u16 = 181;
    /// tcpSourcePort.
    pub const TCP_SOURCE_PORT: u16 = 182;
    /// tcpDestinationPort.
    pub const TCP_DESTINATION_PORT: u16 = 183;
    /// initiatorOctets (Cisco ASA NF_F_FWD_FLOW_DELTA_BYTES).
    pub const INITIATOR_OCTETS: u16 = 231;
    /// responderOctets (Cisco ASA NF_F_REV_FLOW_DELTA_BYTES).
    pub const RESPONDER_OCTETS: u16 = 232;
    /// firewallEvent (Cisco ASA NF_F_FW_EVENT).
    pub const FIREWALL_EVENT: u16 = 233;
    /// initiatorPackets.
    pub const INITIATOR_PACKETS: u16 = 298;
    /// responderPackets.
    pub const RESPONDER_PACKETS: u16 = 299;
}

/// Palisade's Information Elements, under [`PALISADE_PEN`].
pub mod palisade {
    /// palisadeRuleId (string, variable length): the id of the deciding rule, empty when a
    /// tier default decided.
    pub const RULE_ID: u16 = 1;
    /// palisadeGeneration (unsigned64): the device program generation that decided.
    pub const GENERATION: u16 = 2;
    /// palisadeDevice (string, variable length): the reporting device's name.
    pub const DEVICE: u16 = 3;
    /// palisadeEndReason (unsigned8): why a session ended, finer than flowEndReason; see
    /// [`end_reason_code`](super::end_reason_code).
    pub const END_REASON: u16 = 4;
}

/// firewallEvent values (IANA "firewallEvent" sub-registry).
pub mod firewall_event {
    /// Ignore: the record carries no event.
    pub const IGNORE: u8 = 0;
    /// Flow created.
    pub const CREATED: u8 = 1;
    /// Flow deleted.
    pub const DELETED: u8 = 2;
    /// Flow denied.
    pub const DENIED: u8 = 3;
    /// Flow alert.
    pub const ALERT: u8 = 4;
    /// Flow update.
    pub const UPDATE: u8 = 5;
}

/// flowEndReason values (IANA "flowEndReason" sub-registry).
pub mod flow_end_reason {
    /// The flow was idle longer than its timeout.
    pub const IDLE_TIMEOUT: u8 = 1;
    /// The flow was exported because it lived longer than the active timeout.
    pub const ACTIVE_TIMEOUT: u8 = 2;
    /// The end of the flow was seen (TCP FIN or RST).
    pub const END_OF_FLOW: u8 = 3;
    /// The flow was ended by something outside the flow (shutdown, flush, policy).
    pub const FORCED_END: u8 = 4;
    /// The flow was ended for lack of resources (eviction).
    pub const LACK_OF_RESOURCES: u8 = 5;
}

/// forwardingStatus for an allowed session: "Forwarded, unknown reason" (RFC 7270).
pub const FORWARDED: u8 = 0b01_000000;
/// forwardingStatus for a denied session: "Dropped, ACL deny" (RFC 7270).
pub const DROPPED_ACL_DENY: u8 = 0b10_000001;

/// The firewallEvent a record is exported with: a session's start is `created` (1) when
/// allowed and `denied` (3) when denied; updates are `update` (5); ends are `deleted` (2).
pub fn firewall_event_of(kind: RecordKind, verdict: Verdict) -> u8 {
    match (kind, verdict) {
        (RecordKind::Start, Verdict::Allowed) => firewall_event::CREATED,
        (RecordKind::Start, Verdict::Denied) => firewall_event::DENIED,
        (RecordKind::Update, _) => firewall_event::UPDATE,
        (RecordKind::End, _) => firewall_event::DELETED,
    }
}

/// The record kind a firewallEvent reports: `created` and `denied` start a session,
/// `update` is an update, everything else (`deleted`, `alert`, unknown) an end.
pub fn kind_of_firewall_event(event: u8) -> RecordKind {
    match event {
        firewall_event::CREATED | firewall_event::DENIED => RecordKind::Start,
        firewall_event::UPDATE => RecordKind::Update,
        _ => RecordKind::End,
    }
}

/// The forwardingStatus a verdict is exported with.
pub fn forwarding_status_of(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Allowed => FORWARDED,
        Verdict::Denied => DROPPED_ACL_DENY,
    }
}

/// Whether a forwardingStatus value reports a drop (status bits `10`).
///
/// The status is the two high bits of the one-byte form; a four-byte encoding either keeps
/// that byte as its least significant one (small values) or puts it first.
pub fn forwarding_status_dropped(value: u64, encoded_len: usize) -> bool {
    let byte = if encoded_len > 1 && value > 0xff {
        (value >> ((encoded_len - 1) * 8)) as u8
    } else {
        value as u8
    };
    byte >> 6 == 0b10
}

/// The standard flowEndReason of an end reason.
pub fn flow_end_reason_of(reason: EndReason) -> u8 {
    match reason {
        EndReason::Idle => flow_end_reason::IDLE_TIMEOUT,
        EndReason::Fin | EndReason::Reset => flow_end_reason::END_OF_FLOW,
        EndReason::Evicted => flow_end_reason::LACK_OF_RESOURCES,
        EndReason::PolicyChange | EndReason::Flushed => flow_end_reason::FORCED_END,
    }
}

/// The end reason a standard flowEndReason reports, when it reports one: an active timeout
/// does not end the session, so it has none.
pub fn end_reason_of_flow_end_reason(value: u8) -> Option<EndReason> {
    match value {
        flow_end_reason::IDLE_TIMEOUT => Some(EndReason::Idle),
        flow_end_reason::END_OF_FLOW => Some(EndReason::Fin),
        flow_end_reason::FORCED_END => Some(EndReason::Flushed),
        flow_end_reason::LACK_OF_RESOURCES => Some(EndReason::Evicted),
        _ => None,
    }
}

/// The palisadeEndReason code of an end reason: idle 1, fin 2, reset 3, evicted 4,
/// policy-change 5, flushed 6.
pub fn end_reason_code(reason: EndReason) -> u8 {
    match reason {
        EndReason::Idle => 1,
        EndReason::Fin => 2,
        EndReason::Reset => 3,
        EndReason::Evicted => 4,
        EndReason::PolicyChange => 5,
        EndReason::Flushed => 6,
    }
}

/// The end reason of a palisadeEndReason code (the inverse of [`end_reason_code`]).
pub fn end_reason_of_code(code: u8) -> Option<EndReason> {
    Some(match code {
        1 => EndReason::Idle,
        2 => EndReason::Fin,
        3 => EndReason::Reset,
        4 => EndReason::Evicted,
        5 => EndReason::PolicyChange,
        6 => EndReason::Flushed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [RecordKind; 3] = [RecordKind::Start, RecordKind::Update, RecordKind::End];
    const REASONS: [EndReason; 6] = [
        EndReason::Idle,
        EndReason::Fin,
        EndReason::Reset,
        EndReason::Evicted,
        EndReason::PolicyChange,
        EndReason::Flushed,
    ];

    #[test]
    fn firewall_event_keeps_the_kind() {
        for kind in KINDS {
            for verdict in [Verdict::Allowed, Verdict::Denied] {
                assert_eq!(
                    kind_of_firewall_event(firewall_event_of(kind, verdict)),
                    kind
                );
            }
        }
    }

    #[test]
    fn forwarding_status_keeps_the_verdict() {
        assert!(!forwarding_status_dropped(u64::from(FORWARDED), 1));
        assert!(forwarding_status_dropped(u64::from(DROPPED_ACL_DENY), 1));
        assert!(forwarding_status_dropped(u64::from(DROPPED_ACL_DENY), 4));
        assert!(forwarding_status_dropped(0x8100_0000, 4));
        assert!(!forwarding_status_dropped(0x4200_0000, 4));
    }

    #[test]
    fn end_reason_codes_round_trip_and_map_to_standard_reasons() {
        for reason in REASONS {
            assert_eq!(end_reason_of_code(end_reason_code(reason)), Some(reason));
            let standard = end_reason_of_flow_end_reason(flow_end_reason_of(reason));
            assert!(standard.is_some(), "{reason:?}");
        }
        assert_eq!(end_reason_of_code(0), None);
        assert_eq!(
            end_reason_of_flow_end_reason(flow_end_reason::ACTIVE_TIMEOUT),
            None
        );
    }
}
