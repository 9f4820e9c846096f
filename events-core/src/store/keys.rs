//! [`KeyStore`]: where the data keys of [`Personal`](crate::personal::Personal) values are
//! kept, one per data subject, and deleted by [`Bus::forget`](crate::Bus::forget).

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;
use crate::personal::{DataKey, KeyId};

/// The longest data subject id, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The keys of data subjects. The SQLite and PostgreSQL stores keep one
/// ([`EventStore::keys`](super::EventStore::keys)), in a table of their own, each secret
/// encrypted by a key management service's master key when given one ([`Kms`]);
/// [`MemoryStore`](super::MemoryStore) keeps one in memory. Implement it to keep keys
/// elsewhere (and give it to [`BusBuilder::keys`](crate::BusBuilder::keys)). Its calls are
/// synchronous and short: a row read or written.
pub trait KeyStore: Send + Sync + 'static {
    /// The current key of `subject`, made and kept now if it has none. Two callers that
    /// race for a new subject get the same key.
    ///
    /// # Errors
    /// [`StoreError`] from the backend.
    fn key_for(&self, subject: &str) -> Result<DataKey, StoreError>;

    /// The key with id `id`; `None` when its subject was forgotten (or it never existed).
    ///
    /// # Errors
    /// [`StoreError`] from the backend.
    fn key(&self, id: &KeyId) -> Result<Option<DataKey>, StoreError>;

    /// Deletes every key of `subject`, for good; how many there were.
    ///
    /// # Errors
    /// [`StoreError`] from the backend.
    fn forget(&self, subject: &str) -> Result<usize, StoreError>;
}

/// Why `subject` cannot name a key, or `Ok`: 1 to 256 bytes, no control character.
pub(crate) fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        Err("the data subject is empty".into())
    } else if subject.len() > MAX_SUBJECT_BYTES {
        Err(format!(
            "the data subject is {} bytes long; the limit is {MAX_SUBJECT_BYTES}",
            subject.len()
        ))
    } else if subject.chars().any(char::is_control) {
        Err("the data subject holds a control character".into())
    } else {
        Ok(())
    }
}

/// Keys in memory: for tests and for [`MemoryStore`](super::MemoryStore).
#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<(HashMap<String, DataKey>, HashMap<KeyId, String>)>,
}

impl MemoryKeys {
    /// No keys.
    pub fn new() -> MemoryKeys {
        MemoryKeys::default()
    }
}

impl std::fmt::Debug for MemoryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeys").finish_non_exhaustive()
    }
}

impl KeyStore for MemoryKeys {
    fn key_for(&self, subject: &str) -> Result<DataKey, StoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = keys.0.get(subject) {
            return Ok(*key);
        }
        let key = DataKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
        keys.0.insert(subject.to_owned(), key);
        keys.1.insert(key.id, subject.to_owned());
        Ok(key)
    }

    fn key(&self, id: &KeyId) -> Result<Option<DataKey>, StoreError> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Ok(keys.1.get(id).and_then(|s| keys.0.get(s)).cloned())
    }

    fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.0.remove(subject) {
            Some(key) => {
                keys.1.remove(&key.id);
                Ok(1)
            }
            None => Ok(0),
        }
    }
}

/// A key management service's master key (AWS KMS, Vault transit, a hardware module):
/// given to the SQLite or PostgreSQL store, it encrypts every data key they keep
/// ("envelope encryption"), so a copy of the database (a backup, a stolen disk) holds no
/// usable key, and revoking the master key forgets every subject at once. The master key
/// never leaves the service.
pub trait Kms: Send + Sync + 'static {
    /// `secret` encrypted with the master key.
    ///
    /// # Errors
    /// What the service said, as text.
    fn wrap(&self, secret: &[u8; 32]) -> Result<Vec<u8>, String>;
    /// A secret [`wrap`](Self::wrap) encrypted, back.
    ///
    /// # Errors
    /// What the service said, as text: a wrong master key, a revoked one.
    fn unwrap(&self, wrapped: &[u8]) -> Result<[u8; 32], String>;
}

impl std::fmt::Debug for dyn Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kms")
    }
}

impl<K: KeyStore + ?Sized> KeyStore for std::sync::Arc<K> {
    fn key_for(&self, subject: &str) -> Result<DataKey, StoreError> {
        (**self).key_for(subject)
    }
    fn key(&self, id: &KeyId) -> Result<Option<DataKey>, StoreError> {
        (**self).key(id)
    }
    fn forget(&self, subject: &str) -> Result<usize, StoreError> {
        (**self).forget(subject)
    }
}

/// A data key's secret as a store keeps it: encrypted by `kms` when given one, else as it
/// is. For the stores' own key tables.
///
/// # Errors
/// [`StoreError::Backend`] with what the KMS said (clipped).
pub fn wrap_secret(kms: Option<&dyn Kms>, secret: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
    match kms {
        Some(kms) => kms.wrap(secret).map_err(|e| {
            StoreError::Backend(format!(
                "the KMS refused to wrap a key: {}",
                crate::text::clip(&e, 200)
            ))
        }),
        None => Ok(secret.to_vec()),
    }
}

/// A secret [`wrap_secret`] kept, back.
///
/// # Errors
/// [`StoreError::Backend`] with what the KMS said (clipped), or when the kept bytes are not
/// a 32-byte key.
pub fn unwrap_secret(kms: Option<&dyn Kms>, stored: &[u8]) -> Result<[u8; 32], StoreError> {
    match kms {
        Some(kms) => kms.unwrap(stored).map_err(|e| {
            StoreError::Backend(format!(
                "the KMS refused to unwrap a key: {}",
                crate::text::clip(&e, 200)
            ))
        }),
        None => stored
            .try_into()
            .map_err(|_| StoreError::Backend("a stored data key is not 32 bytes".into())),
    }
}

/// A data key as a store read it back: its 16-byte id and its kept secret (see
/// [`wrap_secret`]). For the stores' own key tables.
///
/// # Errors
/// [`StoreError::Backend`] when the id is not 16 bytes, or as [`unwrap_secret`].
pub fn stored_key(kms: Option<&dyn Kms>, id: &[u8], secret: &[u8]) -> Result<DataKey, StoreError> {
    let id: [u8; 16] = id
        .try_into()
        .map_err(|_| StoreError::Backend("a stored key id is not 16 bytes".into()))?;
    Ok(DataKey {
        id: KeyId(id),
        secret: unwrap_secret(kms, secret)?,
    })
}
