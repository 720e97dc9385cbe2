//! The software packet classifier.
