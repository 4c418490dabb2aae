//! The network envelope, its framing and the message registry.
//!
//! This crate is filled by the codec work (design section 5); until then it holds only
//! this description so that the workspace layout is in place.
