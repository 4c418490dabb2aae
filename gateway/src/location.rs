//! The stack of advertised locations: the last served location that is still active is
//! the default one, and the location reserved at construction is the floor.

use plexus_core::Location;

/// Identifies one pushed entry of a [`LocationStack`], so it can be removed whatever
/// the order of removals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocationToken(u64);

/// The locations a gateway serves, in the order they started.
///
/// [`current`](LocationStack::current) is the most recently pushed location that has not
/// been removed, or the reserved location when none is left. Removing entries in any
/// order keeps that rule.
///
/// ```
/// use plexus_core::Location;
/// use plexus_gateway::LocationStack;
///
/// let mut stack = LocationStack::new(Location::Local(0));
/// let a = stack.push(Location::Local(1));
/// let b = stack.push(Location::Local(2));
/// assert_eq!(stack.current(), &Location::Local(2));
/// assert!(stack.remove(b));
/// assert_eq!(stack.current(), &Location::Local(1));
/// assert!(stack.remove(a));
/// assert_eq!(stack.current(), &Location::Local(0));
/// assert!(!stack.remove(a));
/// ```
#[derive(Clone, Debug)]
pub struct LocationStack {
    reserved: Location,
    active: Vec<(LocationToken, Location)>,
    next: u64,
}

impl LocationStack {
    /// An empty stack whose floor is `reserved`.
    pub fn new(reserved: Location) -> Self {
        LocationStack {
            reserved,
            active: Vec::new(),
            next: 0,
        }
    }

    /// Pushes a served location; it becomes the current one.
    pub fn push(&mut self, location: Location) -> LocationToken {
        let token = LocationToken(self.next);
        self.next += 1;
        self.active.push((token, location));
        token
    }

    /// Removes the entry of `token`; returns whether it was still there.
    pub fn remove(&mut self, token: LocationToken) -> bool {
        match self.active.iter().position(|(held, _)| *held == token) {
            Some(index) => {
                self.active.remove(index);
                true
            }
            None => false,
        }
    }

    /// The last pushed location still present, or the reserved one.
    pub fn current(&self) -> &Location {
        self.active
            .last()
            .map_or(&self.reserved, |(_, location)| location)
    }

    /// The location reserved at construction.
    pub fn reserved(&self) -> &Location {
        &self.reserved
    }

    /// The active served locations, oldest first.
    pub fn active(&self) -> impl Iterator<Item = &Location> + '_ {
        self.active.iter().map(|(_, location)| location)
    }
}
