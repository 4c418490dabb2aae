//! Property tests of the codec's promises, grouped by promise (design section 5).

mod hostile_input;
mod round_trip;
mod skip;
mod support;
