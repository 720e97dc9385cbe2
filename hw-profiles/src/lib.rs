//! Hardware profiles of supported DPUs and SmartNICs.
