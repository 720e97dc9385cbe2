//! IPFIX export and IPFIX / NetFlow v9 decoding (work in progress).
