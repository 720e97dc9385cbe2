//! SNMP agent (work in progress).
