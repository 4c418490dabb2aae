//! Protocol versions and capabilities, the codec's part of the connection handshake.
//!
//! The handshake (in the transport) exchanges each side's [`VersionRange`] and
//! [`Capabilities`]. The connection speaks the highest version both ranges contain, or is
//! refused with both ranges in the error; it is never silently downgraded below a side's
//! minimum. Each optional feature of the wire is used only when both sides announce its
//! capability: the negotiated set is the intersection of the two, and the encoder is
//! configured with it ([`CodecConfig::capabilities`](crate::CodecConfig)).
//!
//! # Compatibility
//!
//! What a change to the codec means for peers of different builds:
//!
//! - **Compatible, no version change**: a new capability bit (old peers do not announce it,
//!   so the intersection leaves it off and nothing on the wire changes); a new message type
//!   (a peer that does not know its name skips each such envelope and, for a request,
//!   answers `Decode`); a new [`CodecConfig`](crate::CodecConfig) default such as the flush
//!   threshold, which only the sending side sees.
//! - **Compatible only through a new message name**: any change to a message's serde
//!   shape. Payloads are postcard, which is not self-describing: adding, removing or
//!   reordering a field makes old and new builds misread each other. Give the new shape a
//!   new [`RemoteMessage::NAME`](plexus_core::RemoteMessage::NAME) (`bank.Deposit.v2`) and
//!   register both while old peers remain.
//! - **Incompatible, new protocol version**: anything in the frame or envelope layout
//!   (field order, flag bits, kind tags, the varint forms), the meaning of an existing
//!   capability, and the interning limits ([`MAX_INTERNED_STRINGS`](crate::MAX_INTERNED_STRINGS)
//!   and its siblings), which both ends must share. Such a change bumps
//!   [`PROTOCOL_VERSION`]; a build that can still speak the old layout keeps it in
//!   [`SUPPORTED_VERSIONS`] so mixed clusters keep working during an upgrade.
//! - **Decoders are lenient**: a decoder of this version accepts compressed frames and
//!   interned definitions whether or not it announced the capability, so a capability only
//!   tells the peer's encoder what it may send.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks natively.
pub const PROTOCOL_VERSION: u16 = 1;

/// The protocol versions this build can speak.
pub const SUPPORTED_VERSIONS: VersionRange = VersionRange {
    min: 1,
    max: PROTOCOL_VERSION,
};

/// An inclusive range of protocol versions a side can speak.
///
/// ```
/// use plexus_codec::VersionRange;
///
/// let ours = VersionRange::new(1, 3);
/// assert_eq!(ours.negotiate(VersionRange::new(2, 5)), Ok(3));
/// let err = ours.negotiate(VersionRange::new(4, 5)).unwrap_err();
/// assert_eq!(err.to_string(), "no common protocol version: we speak 1..=3, the peer speaks 4..=5");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionRange {
    /// The oldest version spoken.
    pub min: u16,
    /// The newest version spoken.
    pub max: u16,
}

impl VersionRange {
    /// A range from `min` to `max`, both included.
    pub const fn new(min: u16, max: u16) -> Self {
        VersionRange { min, max }
    }

    /// Whether `version` is in the range.
    pub fn contains(self, version: u16) -> bool {
        self.min <= version && version <= self.max
    }

    /// The highest version both ranges contain, or an error naming both ranges. An empty
    /// range (`min > max`) has nothing in common with any range.
    pub fn negotiate(self, peer: VersionRange) -> Result<u16, VersionMismatch> {
        let highest = self.max.min(peer.max);
        if highest >= self.min && highest >= peer.min && self.min <= self.max {
            Ok(highest)
        } else {
            Err(VersionMismatch { ours: self, peer })
        }
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// Two sides share no protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no common protocol version: we speak {ours}, the peer speaks {peer}")]
pub struct VersionMismatch {
    /// Our range.
    pub ours: VersionRange,
    /// The peer's range.
    pub peer: VersionRange,
}

/// A set of optional wire features, exchanged in the handshake.
///
/// Unknown bits from a newer peer are kept by [`Capabilities::from_bits`] and dropped by the
/// intersection with ours, so they never switch anything on.
///
/// ```
/// use plexus_codec::Capabilities;
///
/// let ours = Capabilities::NAME_INTERNING | Capabilities::LZ4;
/// let theirs = Capabilities::from_bits(Capabilities::NAME_INTERNING.bits() | 1 << 31);
/// let agreed = ours.intersect(theirs);
/// assert!(agreed.contains(Capabilities::NAME_INTERNING));
/// assert!(!agreed.contains(Capabilities::LZ4));
/// assert_eq!(agreed, Capabilities::NAME_INTERNING);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(u32);

impl Capabilities {
    /// The encoder may send interned definitions and ids for names and actor ids.
    pub const NAME_INTERNING: Capabilities = Capabilities(1 << 0);
    /// The encoder may compress frames with lz4.
    pub const LZ4: Capabilities = Capabilities(1 << 1);

    /// No capability.
    pub const fn empty() -> Self {
        Capabilities(0)
    }

    /// Every capability this build can use: interning always, lz4 with the `lz4` feature.
    pub const fn supported() -> Self {
        if cfg!(feature = "lz4") {
            Capabilities(Self::NAME_INTERNING.0 | Self::LZ4.0)
        } else {
            Self::NAME_INTERNING
        }
    }

    /// A set from raw bits, as received from a peer; unknown bits are kept.
    pub const fn from_bits(bits: u32) -> Self {
        Capabilities(bits)
    }

    /// The raw bits, as sent to a peer.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every capability in `other` is in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities in both sets: what a connection may use.
    pub const fn intersect(self, other: Capabilities) -> Self {
        Capabilities(self.0 & other.0)
    }

    /// The capabilities in either set.
    pub const fn union(self, other: Capabilities) -> Self {
        Capabilities(self.0 | other.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, other: Capabilities) -> Capabilities {
        self.union(other)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        if self.contains(Capabilities::NAME_INTERNING) {
            set.entry(&format_args!("NAME_INTERNING"));
        }
        if self.contains(Capabilities::LZ4) {
            set.entry(&format_args!("LZ4"));
        }
        let unknown = self.0 & !(Capabilities::NAME_INTERNING.0 | Capabilities::LZ4.0);
        if unknown != 0 {
            set.entry(&format_args!("{unknown:#x}"));
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Negotiation picks the highest shared version and refuses disjoint or empty ranges.
    #[test]
    fn negotiation_picks_the_highest_shared_version() {
        let ours = VersionRange::new(2, 4);
        assert_eq!(ours.negotiate(VersionRange::new(1, 9)), Ok(4));
        assert_eq!(ours.negotiate(VersionRange::new(1, 2)), Ok(2));
        assert_eq!(ours.negotiate(VersionRange::new(3, 3)), Ok(3));
        let mismatch = ours.negotiate(VersionRange::new(5, 9)).unwrap_err();
        assert_eq!(mismatch.peer, VersionRange::new(5, 9));
        assert!(ours.negotiate(VersionRange::new(0, 1)).is_err());
        assert!(ours.negotiate(VersionRange::new(3, 1)).is_err());
        assert!(VersionRange::new(4, 2).negotiate(ours).is_err());
        assert!(SUPPORTED_VERSIONS.contains(PROTOCOL_VERSION));
    }

    /// Capabilities keep unknown bits from the peer but never switch them on in the
    /// intersection with ours.
    #[test]
    fn unknown_capability_bits_never_switch_anything_on() {
        let peer = Capabilities::from_bits(u32::MAX);
        assert_eq!(
            Capabilities::supported().intersect(peer),
            Capabilities::supported()
        );
        assert_eq!(format!("{:?}", Capabilities::empty()), "{}");
        assert!(format!("{peer:?}").contains("0xfffffffc"));
        assert_eq!(
            Capabilities::supported().contains(Capabilities::LZ4),
            cfg!(feature = "lz4")
        );
    }
}
