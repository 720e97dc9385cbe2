//! The templates Palisade exports: one field list per (address family, end record or not),
//! and the field specifier type both halves of the codec use.

use crate::ie::{PALISADE_PEN, REVERSE_PEN, VARIABLE_LENGTH, iana, palisade};

/// One field of a template: an Information Element, its enterprise (0 for IANA) and its
/// encoded length ([`VARIABLE_LENGTH`] for variable-length fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FieldSpec {
    pub id: u16,
    pub enterprise: u32,
    pub length: u16,
}

impl FieldSpec {
    const fn iana(id: u16, length: u16) -> Self {
        FieldSpec {
            id,
            enterprise: 0,
            length,
        }
    }

    const fn enterprise(enterprise: u32, id: u16, length: u16) -> Self {
        FieldSpec {
            id,
            enterprise,
            length,
        }
    }
}

/// The template of IPv4 records that are not ends (or ends without a reason).
pub(crate) const TEMPLATE_ID_V4: u16 = 256;
/// The template of IPv6 records that are not ends (or ends without a reason).
pub(crate) const TEMPLATE_ID_V6: u16 = 257;
/// The template of IPv4 end records with a reason.
pub(crate) const TEMPLATE_ID_V4_END: u16 = 258;
/// The template of IPv6 end records with a reason.
pub(crate) const TEMPLATE_ID_V6_END: u16 = 259;

/// The fields of one of the exported templates, in record order: fixed-length fields first,
/// the two strings last.
pub(crate) fn fields(v6: bool, end: bool) -> Vec<FieldSpec> {
    let (src, dst, addr_len) = if v6 {
        (
            iana::SOURCE_IPV6_ADDRESS,
            iana::DESTINATION_IPV6_ADDRESS,
            16,
        )
    } else {
        (iana::SOURCE_IPV4_ADDRESS, iana::DESTINATION_IPV4_ADDRESS, 4)
    };
    let mut fields = vec![
        FieldSpec::iana(src, addr_len),
        FieldSpec::iana(dst, addr_len),
        FieldSpec::iana(iana::PROTOCOL_IDENTIFIER, 1),
        FieldSpec::iana(iana::SOURCE_TRANSPORT_PORT, 2),
        FieldSpec::iana(iana::DESTINATION_TRANSPORT_PORT, 2),
        FieldSpec::iana(iana::FLOW_START_MILLISECONDS, 8),
        FieldSpec::iana(iana::FLOW_END_MILLISECONDS, 8),
        FieldSpec::iana(iana::OCTET_DELTA_COUNT, 8),
        FieldSpec::iana(iana::PACKET_DELTA_COUNT, 8),
        FieldSpec::enterprise(REVERSE_PEN, iana::OCTET_DELTA_COUNT, 8),
        FieldSpec::enterprise(REVERSE_PEN, iana::PACKET_DELTA_COUNT, 8),
        FieldSpec::iana(iana::FIREWALL_EVENT, 1),
        FieldSpec::iana(iana::FORWARDING_STATUS, 1),
    ];
    if end {
        fields.push(FieldSpec::iana(iana::FLOW_END_REASON, 1));
        fields.push(FieldSpec::enterprise(PALISADE_PEN, palisade::END_REASON, 1));
    }
    fields.extend([
        FieldSpec::enterprise(PALISADE_PEN, palisade::GENERATION, 8),
        FieldSpec::enterprise(PALISADE_PEN, palisade::DEVICE, VARIABLE_LENGTH),
        FieldSpec::enterprise(PALISADE_PEN, palisade::RULE_ID, VARIABLE_LENGTH),
    ]);
    fields
}

/// The exported templates: (template id, fields).
pub(crate) fn all() -> [(u16, Vec<FieldSpec>); 4] {
    [
        (TEMPLATE_ID_V4, fields(false, false)),
        (TEMPLATE_ID_V6, fields(true, false)),
        (TEMPLATE_ID_V4_END, fields(false, true)),
        (TEMPLATE_ID_V6_END, fields(true, true)),
    ]
}

/// The bytes of a record's fixed-length fields under a template, plus one length byte per
/// variable-length field.
pub(crate) fn min_record_len(fields: &[FieldSpec]) -> usize {
    fields
        .iter()
        .map(|f| {
            if f.length == VARIABLE_LENGTH {
                1
            } else {
                usize::from(f.length)
            }
        })
        .sum()
}
