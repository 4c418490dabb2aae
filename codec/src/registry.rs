//! The message registry: from a message name on the wire to the decoder of its type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use plexus_core::RemoteMessage;

use crate::envelope::NetworkEnvelope;
use crate::error::{DecodeError, RegistryError};

/// Decodes a payload into a boxed message of the type registered under a name.
pub type DecodeFn = fn(&[u8]) -> Result<Box<dyn Any + Send>, DecodeError>;

/// Maps message names to the decoders of their types.
///
/// Each [`RemoteMessage`] type is registered once at start-up. Registering the same type
/// twice is harmless; registering a second type under a name already taken is a
/// [`RegistryError::DuplicateName`], so a clash is found before any message is sent.
///
/// ```
/// use plexus_codec::{EnvelopeKind, MessageRegistry, NetworkEnvelope, Recipient, RegistryError};
/// use plexus_core::{ActorId, ProcId, RemoteMessage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Deposit { cents: u64 }
/// impl RemoteMessage for Deposit { const NAME: &'static str = "bank.Deposit"; }
///
/// #[derive(Serialize, Deserialize)]
/// struct Impostor;
/// impl RemoteMessage for Impostor { const NAME: &'static str = "bank.Deposit"; }
///
/// let mut registry = MessageRegistry::new();
/// registry.register::<Deposit>()?;
/// registry.register::<Deposit>()?; // the same type again is fine
/// assert!(matches!(
///     registry.register::<Impostor>(),
///     Err(RegistryError::DuplicateName { name: "bank.Deposit", .. })
/// ));
///
/// let to = Recipient::Actor(ActorId::new(ProcId::new("bank", 1), "ledger", 0));
/// let envelope =
///     NetworkEnvelope::message(None, to, EnvelopeKind::Regular, &Deposit { cents: 250 })?;
/// let message = registry.decode(&envelope)?;
/// assert_eq!(message.downcast_ref::<Deposit>(), Some(&Deposit { cents: 250 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MessageRegistry {
    by_name: HashMap<&'static str, Registered>,
}

#[derive(Clone, Debug)]
struct Registered {
    type_id: TypeId,
    type_name: &'static str,
    decode: DecodeFn,
}

impl MessageRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        MessageRegistry::default()
    }

    /// Registers `M` under [`M::NAME`](RemoteMessage::NAME). Idempotent for the same type;
    /// an error if another type holds the name.
    pub fn register<M: RemoteMessage>(&mut self) -> Result<&mut Self, RegistryError> {
        let registered = Registered {
            type_id: TypeId::of::<M>(),
            type_name: std::any::type_name::<M>(),
            decode: decode_boxed::<M>,
        };
        match self.by_name.entry(M::NAME) {
            Entry::Vacant(slot) => {
                slot.insert(registered);
            }
            Entry::Occupied(slot) if slot.get().type_id == registered.type_id => {}
            Entry::Occupied(slot) => {
                return Err(RegistryError::DuplicateName {
                    name: M::NAME,
                    existing: slot.get().type_name,
                    new: registered.type_name,
                });
            }
        }
        Ok(self)
    }

    /// Decodes an envelope's payload into the type registered under its name.
    pub fn decode(&self, envelope: &NetworkEnvelope) -> Result<Box<dyn Any + Send>, DecodeError> {
        if envelope.kind.is_control() {
            return Err(DecodeError::NotAMessage {
                kind: envelope.kind.as_str(),
            });
        }
        let registered =
            self.by_name
                .get(&*envelope.name)
                .ok_or_else(|| DecodeError::UnknownName {
                    name: envelope.name.clone(),
                })?;
        (registered.decode)(&envelope.payload)
    }

    /// The decoder registered under `name`, if any.
    pub fn decoder(&self, name: &str) -> Option<DecodeFn> {
        self.by_name.get(name).map(|registered| registered.decode)
    }

    /// Whether a type is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// How many names are registered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The registered names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// Decodes a payload as `M`, refusing leftover bytes: postcard is not self-describing, so
/// bytes left over mean the payload was made from a different shape.
pub(crate) fn decode_payload<M: RemoteMessage>(payload: &[u8]) -> Result<M, DecodeError> {
    let (message, rest) =
        postcard::take_from_bytes::<M>(payload).map_err(|source| DecodeError::Payload {
            name: M::NAME,
            source,
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            name: M::NAME,
            extra: rest.len(),
        });
    }
    Ok(message)
}

fn decode_boxed<M: RemoteMessage>(payload: &[u8]) -> Result<Box<dyn Any + Send>, DecodeError> {
    decode_payload::<M>(payload).map(|message| Box::new(message) as Box<dyn Any + Send>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{EnvelopeKind, MessageName, Recipient};
    use bytes::Bytes;
    use plexus_core::{ActorId, ProcId};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping(u32);
    impl RemoteMessage for Ping {
        const NAME: &'static str = "test.Ping";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OtherPing(String);
    impl RemoteMessage for OtherPing {
        const NAME: &'static str = "test.Ping";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pair(u8, u8);
    impl RemoteMessage for Pair {
        const NAME: &'static str = "test.Pair";
    }

    fn to_actor() -> Recipient {
        Recipient::Actor(ActorId::new(ProcId::new("p", 1), "a", 0))
    }

    /// A second type under a taken name is refused with both type names; the same type
    /// again is accepted and leaves one entry.
    #[test]
    fn duplicate_names_are_refused_with_both_types() {
        let mut registry = MessageRegistry::new();
        registry
            .register::<Ping>()
            .unwrap()
            .register::<Ping>()
            .unwrap();
        assert_eq!(registry.len(), 1);
        let err = registry.register::<OtherPing>().unwrap_err();
        let RegistryError::DuplicateName {
            name,
            existing,
            new,
        } = err.clone();
        assert_eq!(name, "test.Ping");
        assert!(existing.ends_with("::Ping"), "{existing}");
        assert!(new.ends_with("::OtherPing"), "{new}");
        assert!(err.to_string().contains("test.Ping"));
        // The first registration still decodes.
        let envelope =
            NetworkEnvelope::message(None, to_actor(), EnvelopeKind::Regular, &Ping(9)).unwrap();
        let decoded = registry.decode(&envelope).unwrap();
        assert_eq!(decoded.downcast_ref::<Ping>(), Some(&Ping(9)));
    }

    /// An unknown name, a payload of the wrong shape, leftover bytes and control envelopes
    /// are each reported with their own error.
    #[test]
    fn undecodable_payloads_get_typed_errors() {
        let mut registry = MessageRegistry::new();
        registry
            .register::<Ping>()
            .unwrap()
            .register::<Pair>()
            .unwrap();
        let mut envelope =
            NetworkEnvelope::message(None, to_actor(), EnvelopeKind::Regular, &Pair(1, 2)).unwrap();

        envelope.name = MessageName::from_static("test.Missing");
        assert!(matches!(
            registry.decode(&envelope),
            Err(DecodeError::UnknownName { name }) if &*name == "test.Missing"
        ));

        envelope.name = MessageName::from_static("test.Pair");
        envelope.payload = Bytes::from_static(&[1]);
        assert!(matches!(
            registry.decode(&envelope),
            Err(DecodeError::Payload {
                name: "test.Pair",
                ..
            })
        ));

        envelope.payload = Bytes::from_static(&[1, 2, 3]);
        assert!(matches!(
            registry.decode(&envelope),
            Err(DecodeError::TrailingBytes {
                name: "test.Pair",
                extra: 1
            })
        ));

        let pong = NetworkEnvelope::control(EnvelopeKind::Pong { nonce: 1 });
        assert!(matches!(
            registry.decode(&pong),
            Err(DecodeError::NotAMessage { kind: "pong" })
        ));
    }

    /// A typed decode checks the name before the bytes.
    #[test]
    fn typed_decode_checks_the_name() {
        let envelope =
            NetworkEnvelope::message(None, to_actor(), EnvelopeKind::Regular, &Pair(1, 2)).unwrap();
        assert_eq!(envelope.decode_as::<Pair>().unwrap(), Pair(1, 2));
        assert!(matches!(
            envelope.decode_as::<Ping>(),
            Err(DecodeError::NameMismatch {
                expected: "test.Ping",
                ..
            })
        ));
    }
}
