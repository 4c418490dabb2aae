//! Where envelopes go: the [`Dest`] key of every per-destination table.

use std::fmt;
use std::str::FromStr;

use plexus_core::{Location, ParseError};

/// A key for where envelopes go: the [`Location`] of a gateway.
///
/// Two `Dest`s are equal when their locations are; the text form is the location's.
///
/// ```
/// use plexus_core::Location;
/// use plexus_transport::Dest;
///
/// let dest: Dest = "tcp://127.0.0.1:7000".parse()?;
/// assert_eq!(dest.to_string(), "tcp://127.0.0.1:7000");
/// assert_eq!(Dest::from(Location::Local(3)), "local:3".parse()?);
/// # Ok::<(), plexus_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest(Location);

impl Dest {
    /// The destination at `location`.
    pub fn new(location: Location) -> Self {
        Dest(location)
    }

    /// The location this destination is reached at.
    pub fn location(&self) -> &Location {
        &self.0
    }

    /// Gives the location back.
    pub fn into_location(self) -> Location {
        self.0
    }
}

impl From<Location> for Dest {
    fn from(location: Location) -> Self {
        Dest(location)
    }
}

impl From<Dest> for Location {
    fn from(dest: Dest) -> Self {
        dest.0
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Dest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Dest)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every location form survives Display → FromStr, and a bad scheme is refused.
    #[test]
    fn text_form_round_trips_through_location() {
        for text in ["tcp://127.0.0.1:7000", "unix:///tmp/a.sock", "local:17"] {
            let dest: Dest = text.parse().unwrap();
            assert_eq!(dest.to_string(), text);
            assert_eq!(dest.location().to_string(), text);
        }
        assert!("udp://127.0.0.1:1".parse::<Dest>().is_err());
    }

    /// Dests with equal locations hash to one key; different locations to different keys.
    #[test]
    fn equal_locations_are_one_key() {
        let set: HashSet<Dest> = ["local:1", "local:1", "local:2"]
            .into_iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&Dest::new(Location::Local(2))));
    }
}
