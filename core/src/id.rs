//! Identity and addresses: where a gateway is reached ([`Location`]), which proc
//! ([`ProcId`], [`ProcAddr`]) and which actor ([`ActorId`]).
//!
//! Every type here has a text form that round-trips through `Display` and `FromStr`, and a
//! compact serde form for the wire. Parse errors name the part of the input that is wrong.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Where a gateway can be reached.
///
/// Text forms: `tcp://127.0.0.1:7000`, `unix:///run/app.sock`, `local:17` (in-process, for
/// tests and single-binary clusters).
///
/// ```
/// use plexus_core::Location;
///
/// let tcp: Location = "tcp://127.0.0.1:7000".parse()?;
/// assert_eq!(tcp.to_string(), "tcp://127.0.0.1:7000");
/// let local: Location = "local:17".parse()?;
/// assert_eq!(local, Location::Local(17));
/// assert!("udp://1.2.3.4:5".parse::<Location>().is_err());
/// # Ok::<(), plexus_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Location {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A unix domain socket path.
    Unix(PathBuf),
    /// An in-process location, numbered.
    Local(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Tcp(addr) => write!(f, "tcp://{addr}"),
            Location::Unix(path) => write!(f, "unix://{}", path.display()),
            Location::Local(n) => write!(f, "local:{n}"),
        }
    }
}

impl FromStr for Location {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let addr = rest
                .parse()
                .map_err(|_| ParseError::new("socket address", rest, s))?;
            Ok(Location::Tcp(addr))
        } else if let Some(rest) = s.strip_prefix("unix://") {
            if rest.is_empty() {
                return Err(ParseError::new("unix socket path", rest, s));
            }
            Ok(Location::Unix(PathBuf::from(rest)))
        } else if let Some(rest) = s.strip_prefix("local:") {
            let n = rest
                .parse()
                .map_err(|_| ParseError::new("local number", rest, s))?;
            Ok(Location::Local(n))
        } else {
            let scheme = s.split_once(':').map_or(s, |(scheme, _)| scheme);
            Err(ParseError::new("scheme (tcp, unix or local)", scheme, s))
        }
    }
}

/// A text form that could not be parsed; names the part that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{part}` in `{input}`")]
pub struct ParseError {
    /// What was expected at the bad part, e.g. `socket address`.
    pub what: &'static str,
    /// The bad part of the input.
    pub part: String,
    /// The whole input.
    pub input: String,
}

impl ParseError {
    fn new(what: &'static str, part: &str, input: &str) -> Self {
        ParseError {
            what,
            part: part.to_owned(),
            input: input.to_owned(),
        }
    }
}

/// Identifies a proc: a label plus an instance number.
///
/// [`ProcId::unique`] draws a random instance so that two launches of the same program never
/// share an id; [`ProcId::new`] takes an explicit one for well-known procs. Text form:
/// `label#instance`.
///
/// ```
/// use plexus_core::ProcId;
///
/// let id = ProcId::new("worker", 3);
/// assert_eq!(id.to_string(), "worker#3");
/// assert_eq!("worker#3".parse::<ProcId>()?, id);
/// assert_ne!(ProcId::unique("worker"), ProcId::unique("worker"));
/// # Ok::<(), plexus_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcId {
    label: Arc<str>,
    instance: u64,
}

impl ProcId {
    /// A proc id with an explicit instance number.
    pub fn new(label: impl Into<Arc<str>>, instance: u64) -> Self {
        ProcId {
            label: label.into(),
            instance,
        }
    }

    /// A proc id whose instance is random, so it differs from every other launch.
    pub fn unique(label: impl Into<Arc<str>>) -> Self {
        ProcId {
            label: label.into(),
            instance: random_u64(),
        }
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The instance number.
    pub fn instance(&self) -> u64 {
        self.instance
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.label, self.instance)
    }
}

impl FromStr for ProcId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, instance) = s
            .rsplit_once('#')
            .ok_or_else(|| ParseError::new("proc id (label#instance)", s, s))?;
        if label.is_empty() || label.contains('/') {
            return Err(ParseError::new("proc label", label, s));
        }
        let instance = instance
            .parse()
            .map_err(|_| ParseError::new("proc instance", instance, s))?;
        Ok(ProcId::new(label, instance))
    }
}

/// A proc and the location of the gateway it is reached through. Text form: `proc@location`.
///
/// ```
/// use plexus_core::{Location, ProcAddr, ProcId};
///
/// let addr = ProcAddr::new(ProcId::new("db", 1), "tcp://127.0.0.1:7000".parse()?);
/// assert_eq!(addr.to_string(), "db#1@tcp://127.0.0.1:7000");
/// assert_eq!(addr.to_string().parse::<ProcAddr>()?, addr);
/// # Ok::<(), plexus_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcAddr {
    /// The proc.
    pub proc: ProcId,
    /// Where the proc's gateway is reached.
    pub location: Location,
}

impl ProcAddr {
    /// Joins a proc id and a location.
    pub fn new(proc: ProcId, location: Location) -> Self {
        ProcAddr { proc, location }
    }
}

impl fmt::Display for ProcAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.proc, self.location)
    }
}

impl FromStr for ProcAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proc, location) = s
            .split_once('@')
            .ok_or_else(|| ParseError::new("proc address (proc@location)", s, s))?;
        Ok(ProcAddr {
            proc: proc.parse()?,
            location: location.parse()?,
        })
    }
}

/// Identifies an actor: its proc, its name and an index unique within the proc.
///
/// The id stays the same across supervised restarts, so refs stay valid. A name that is
/// spawned again after the first actor stopped gets a new index, so stale refs never reach
/// the new actor. Text form: `proc/name.index`.
///
/// ```
/// use plexus_core::{ActorId, ProcId};
///
/// let id = ActorId::new(ProcId::new("app", 0), "counter", 7);
/// assert_eq!(id.to_string(), "app#0/counter.7");
/// assert_eq!("app#0/counter.7".parse::<ActorId>()?, id);
/// # Ok::<(), plexus_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId {
    proc: ProcId,
    name: Arc<str>,
    index: u64,
}

impl ActorId {
    /// Builds an actor id.
    pub fn new(proc: ProcId, name: impl Into<Arc<str>>, index: u64) -> Self {
        ActorId {
            proc,
            name: name.into(),
            index,
        }
    }

    /// The proc the actor lives in.
    pub fn proc(&self) -> &ProcId {
        &self.proc
    }

    /// The actor's name (for children, `parent/child`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index, unique within the proc.
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.proc, self.name, self.index)
    }
}

impl FromStr for ActorId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proc, rest) = s
            .split_once('/')
            .ok_or_else(|| ParseError::new("actor id (proc/name.index)", s, s))?;
        let (name, index) = rest
            .rsplit_once('.')
            .ok_or_else(|| ParseError::new("actor name.index", rest, s))?;
        if name.is_empty() {
            return Err(ParseError::new("actor name", name, s));
        }
        let index = index
            .parse()
            .map_err(|_| ParseError::new("actor index", index, s))?;
        Ok(ActorId::new(proc.parse::<ProcId>()?, name, index))
    }
}

/// A random 64-bit number without a dependency: std's hasher is seeded randomly per process,
/// and a counter makes successive draws differ.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text form round-trips through `Display` and `FromStr`.
    #[test]
    fn text_forms_round_trip() {
        for text in [
            "tcp://127.0.0.1:7000",
            "tcp://[::1]:80",
            "unix:///run/app.sock",
            "local:17",
        ] {
            let location: Location = text.parse().unwrap();
            assert_eq!(location.to_string(), text);
        }
        let actor = ActorId::new(ProcId::new("a.b", 9), "sup/worker", 3);
        assert_eq!(actor.to_string().parse::<ActorId>().unwrap(), actor);
    }

    /// A bad string gets an error naming the bad part.
    #[test]
    fn parse_errors_name_the_bad_part() {
        let err = "tcp://nowhere".parse::<Location>().unwrap_err();
        assert_eq!(err.part, "nowhere");
        assert_eq!(err.what, "socket address");
        let err = "ftp://x".parse::<Location>().unwrap_err();
        assert_eq!(err.part, "ftp");
        let err = "app#x/a.1".parse::<ActorId>().unwrap_err();
        assert_eq!(err.part, "x");
        assert!(err.to_string().contains("proc instance"));
        let err = "app#1/a.b".parse::<ActorId>().unwrap_err();
        assert_eq!(err.what, "actor index");
    }

    /// Ids serialize compactly with postcard.
    #[test]
    fn ids_serialize_compactly() {
        let id = ActorId::new(ProcId::new("app", 1), "counter", 2);
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert!(bytes.len() <= 14, "{} bytes", bytes.len());
        assert_eq!(postcard::from_bytes::<ActorId>(&bytes).unwrap(), id);
    }
}
