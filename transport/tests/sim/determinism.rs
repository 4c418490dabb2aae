//! R19: the same seed run twice yields the same delivered sequence with the same
//! simulated timestamps, the same moment of loss and the same request outcomes.

use crate::partition;

#[test]
fn one_seed_replays_exactly() {
    for seed in [19, 20] {
        let first = partition::run(seed);
        let second = partition::run(seed);
        assert!(!first.arrivals.is_empty());
        assert_eq!(first, second, "seed {seed} did not replay");
    }
}
