//! Personal data at the bus's edges: sealed with its subject's key on the way to the store
//! or the wire, opened on the way back, and forgotten ([`Bus::forget`]). See
//! [`crate::personal`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Bus;
use crate::event::AnyEvent;
use crate::personal::{DataKey, KeyId, KeyLookup};
use crate::store::{EventStore, KeyStore, StoreError, StoredEvent};

/// How long a key read from the key store is kept in memory. Another process's `forget`
/// takes effect here within this time; this process's own at once.
const KEY_TTL: Duration = Duration::from_secs(30);
/// Past this many cached keys, the cache starts again.
const MAX_CACHED: usize = 10_000;

/// Where keys come from.
enum Source {
    /// The bus's store's own.
    Store(Arc<dyn EventStore>),
    /// [`BusBuilder::keys`](crate::BusBuilder::keys).
    Own(Arc<dyn KeyStore>),
}

/// The key store, with a short-lived cache in front.
pub(crate) struct Keys {
    source: Source,
    by_subject: Mutex<HashMap<String, (DataKey, Instant)>>,
    by_id: Mutex<HashMap<KeyId, (Option<DataKey>, Instant)>>,
}

impl Keys {
    /// The bus's keys: `own`, else the store's, else none.
    pub(crate) fn new(
        own: Option<Arc<dyn KeyStore>>,
        store: Option<&Arc<dyn EventStore>>,
    ) -> Option<Arc<Keys>> {
        let source = match (own, store) {
            (Some(own), _) => Source::Own(own),
            (None, Some(store)) if store.keys().is_some() => Source::Store(Arc::clone(store)),
            _ => return None,
        };
        Some(Arc::new(Keys {
            source,
            by_subject: Mutex::new(HashMap::new()),
            by_id: Mutex::new(HashMap::new()),
        }))
    }

    fn store(&self) -> Option<&dyn KeyStore> {
        match &self.source {
            Source::Store(s) => s.keys(),
            Source::Own(k) => Some(&**k),
        }
    }

    /// The key of `subject`, made if it has none.
    fn key_for(&self, subject: &str) -> Result<DataKey, StoreError> {
        if subject != crate::personal::REDACTION_SUBJECT {
            check_user_subject(subject)?;
        }
        {
            let cache = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((key, at)) = cache.get(subject) {
                if at.elapsed() < KEY_TTL {
                    return Ok(*key);
                }
            }
        }
        let store = self.store().ok_or(StoreError::Closed)?;
        let key = store.key_for(subject)?;
        let mut cache = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(subject.to_owned(), (key, Instant::now()));
        Ok(key)
    }

    fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        check_user_subject(subject)?;
        let store = self.store().ok_or(StoreError::Closed)?;
        let forgotten = store.forget(subject)?;
        let removed = self
            .by_subject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(subject);
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        match removed {
            Some((key, _)) => {
                by_id.remove(&key.id);
            }
            // Its key may be cached by id only: forget them all, to be sure.
            None => by_id.clear(),
        }
        Ok(forgotten)
    }
}

impl KeyLookup for Keys {
    fn key(&self, id: &KeyId) -> Option<DataKey> {
        {
            let cache = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((key, at)) = cache.get(id) {
                if at.elapsed() < KEY_TTL {
                    return *key;
                }
            }
        }
        let key = match self.store()?.key(id) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, "a data key could not be read; the value reads as forgotten");
                return None;
            }
        };
        let mut cache = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(*id, (key, Instant::now()));
        key
    }
}

impl Bus {
    /// `event`'s payload as the store and the wire keep it: every `Personal` value sealed
    /// with its subject's key. An event that holds personal data but has no subject or no
    /// key store to seal with fails to serialize, and so is never written in plain text.
    pub(crate) fn sealed_text(&self, event: &AnyEvent) -> Result<String, serde_json::Error> {
        if !event.info().redacted.is_empty() && self.inner.keys.is_some() {
            return self.sealed_json(event).map(|v| v.to_string());
        }
        let key = self.sealing_key(event)?;
        crate::personal::at_rest(key, crate::personal::NO_KEY, || event.to_json_text())
    }

    /// [`sealed_text`](Self::sealed_text) as a JSON value. `#[event(redact)]` fields are
    /// sealed too, with the bus's redaction key, when the bus keeps keys.
    pub(crate) fn sealed_json(
        &self,
        event: &AnyEvent,
    ) -> Result<serde_json::Value, serde_json::Error> {
        use serde::ser::Error;
        let key = self.sealing_key(event)?;
        let mut json = crate::personal::at_rest(key, crate::personal::NO_KEY, || event.to_json())?;
        let redacted = event.info().redacted;
        if let (false, Some(keys)) = (redacted.is_empty(), &self.inner.keys) {
            let key = keys
                .key_for(crate::personal::REDACTION_SUBJECT)
                .map_err(|e| serde_json::Error::custom(format!("no redaction key: {e}")))?;
            crate::personal::seal_fields(&mut json, redacted, &key)
                .map_err(serde_json::Error::custom)?;
        }
        Ok(json)
    }

    /// The key `event`'s personal data is sealed with, if it has any.
    pub(crate) fn sealing_key(
        &self,
        event: &AnyEvent,
    ) -> Result<Option<DataKey>, serde_json::Error> {
        use serde::ser::Error;
        if !event.info().personal {
            return Ok(None);
        }
        let (Some(keys), Some(subject)) = (&self.inner.keys, event.data_subject()) else {
            return Ok(None);
        };
        keys.key_for(&subject)
            .map(Some)
            .map_err(|e| serde_json::Error::custom(format!("no data key: {e}")))
    }

    /// Runs `f` with sealed values opened by this bus's keys (forgotten ones read as
    /// [`Personal::Forgotten`](crate::personal::Personal::Forgotten)).
    pub(crate) fn unsealed<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.inner.keys {
            Some(keys) => {
                let lookup: Arc<dyn KeyLookup> = Arc::clone(keys) as Arc<dyn KeyLookup>;
                crate::personal::unsealing(&lookup, f)
            }
            None => f(),
        }
    }

    /// Forgets data subject `subject`: deletes its data keys, so that every
    /// [`Personal`](crate::personal::Personal) value sealed with them (in the store, in
    /// dead letters, in outbox entries, on the broker) reads as
    /// [`Personal::Forgotten`](crate::personal::Personal::Forgotten) from now on, in
    /// replay, recovery, queries ([`Bus::decode`]), dead letters and aggregates. How many
    /// keys were deleted (0: the subject had none). The subject's later events get a new key.
    ///
    /// What it does not reach: copies outside the store (backups, logs the application
    /// wrote, data handlers copied elsewhere), and other processes' caches of the key for up
    /// to 30 seconds. See the README's "Security and personal data".
    ///
    /// # Errors
    /// [`StoreError`] from the key store; [`StoreError::Closed`] when the bus keeps no keys.
    pub fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        let keys = self.inner.keys.as_ref().ok_or(StoreError::Closed)?;
        let forgotten = keys.forget(subject)?;
        #[cfg(feature = "macros")]
        self.audit(crate::audit::Forgotten {
            subject: crate::text::clip(subject, 256),
            keys: forgotten as u64,
        });
        Ok(forgotten)
    }

    /// A stored event as its type `E`, its personal data opened with this bus's keys
    /// (forgotten subjects' values read as forgotten), upcast if it was stored as an older
    /// version: how to read what a [`StoreQuery`](crate::store::StoreQuery) found.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the row is not an `E` this bus knows, or does not
    /// deserialize.
    pub fn decode<E: crate::Event>(&self, stored: &StoredEvent) -> Result<E, StoreError> {
        let (event, _) = self
            .decode_stored(stored, Some(E::info()))
            .map_err(StoreError::Backend)?;
        event.into_any().downcast::<E>().map(|e| *e).map_err(|_| {
            StoreError::Backend(format!("stored `{}` is not a `{}`", stored.name, E::NAME))
        })
    }
}

/// A data subject named by an event or by `forget`: 1 to 256 bytes, no control character,
/// not starting with `events:` (reserved for the bus's own keys).
fn check_user_subject(subject: &str) -> Result<(), StoreError> {
    crate::store::check_subject(subject).map_err(StoreError::Backend)?;
    if subject.starts_with("events:") {
        return Err(StoreError::Backend(
            "data subjects starting with `events:` are reserved for the bus's own keys".into(),
        ));
    }
    Ok(())
}

/// A stored payload as it goes on the wire: `#[event(redact)]` fields opened (they are
/// sealed at rest only, and the receiver reads them as the type says), `Personal` values
/// kept sealed. `None`: as it is.
pub(crate) fn wire_payload(
    keys: Option<&Arc<Keys>>,
    info: &crate::EventInfo,
    stored: &str,
) -> Option<String> {
    let keys = keys.filter(|_| !info.redacted.is_empty())?;
    let mut json: serde_json::Value = serde_json::from_str(stored).ok()?;
    let lookup: Arc<dyn KeyLookup> = Arc::clone(keys) as Arc<dyn KeyLookup>;
    crate::personal::unsealing(&lookup, || {
        crate::personal::open_fields(&mut json, info.redacted);
    });
    Some(json.to_string())
}
