//! Packet parsing for the Palisade dataplane.
