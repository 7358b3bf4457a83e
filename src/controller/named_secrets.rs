//! Secrets a user names in `spec.auth.secretName`, kept between passes.
//!
//! They carry no label of this operator, so the shared store of managed
//! Secrets does not hold them. A metadata-only watch of every Secret (see
//! `caches`) tells their current resourceVersion without holding anyone's
//! data; this cache holds the data of the Secrets clusters name, with the
//! resourceVersion it was read at. A pass uses that data while the watch
//! shows the same resourceVersion and reads the Secret from the API server
//! only when it changed, was never read, or the watch does not know it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;

/// Namespace and name of a Secret.
type Key = (String, String);

/// The data of named Secrets, each with the resourceVersion it was read at
/// (in its metadata).
#[derive(Debug, Default)]
pub struct NamedSecrets {
    read: Mutex<HashMap<Key, Arc<Secret>>>,
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl NamedSecrets {
    /// The kept Secret when the watch shows it at the resourceVersion it was
    /// read at (`listed`: the watch's resourceVersion, None when it does not
    /// hold the Secret). None means: read it from the API server. A Secret
    /// the watch does not hold is dropped.
    pub fn fresh(&self, namespace: &str, name: &str, listed: Option<&str>) -> Option<Arc<Secret>> {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(namespace, name);
        let Some(listed) = listed else {
            read.remove(&k);
            return None;
        };
        read.get(&k)
            .filter(|s| s.metadata.resource_version.as_deref() == Some(listed))
            .cloned()
    }

    /// Keep what a read from the API server returned (None: not found).
    pub fn remember(&self, namespace: &str, name: &str, found: Option<&Secret>) {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(namespace, name);
        match found.filter(|s| s.metadata.resource_version.is_some()) {
            Some(s) => read.insert(k, Arc::new(s.clone())),
            None => read.remove(&k),
        };
    }

    /// A Secret was deleted: drop its data.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        read.remove(&key(namespace, name));
    }

    /// How many Secrets are kept.
    pub fn len(&self) -> usize {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(rv: &str, password: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            data: Some([("password".into(), ByteString(password.into()))].into()),
            ..Default::default()
        }
    }

    fn password(s: &Secret) -> Vec<u8> {
        s.data.as_ref().unwrap()["password"].0.clone()
    }

    #[test]
    fn same_version_is_served_a_new_one_is_read_a_deleted_one_is_gone() {
        let named = NamedSecrets::default();
        assert!(
            named.fresh("ns", "creds", Some("7")).is_none(),
            "never read"
        );
        named.remember("ns", "creds", Some(&secret("7", "old")));

        let kept = named.fresh("ns", "creds", Some("7")).expect("same version");
        assert_eq!(password(&kept), b"old");
        assert!(named.fresh("other", "creds", Some("7")).is_none());

        assert!(named.fresh("ns", "creds", Some("8")).is_none(), "changed");
        named.remember("ns", "creds", Some(&secret("8", "new")));
        let kept = named.fresh("ns", "creds", Some("8")).expect("read again");
        assert_eq!(password(&kept), b"new");

        assert!(named.fresh("ns", "creds", None).is_none(), "deleted");
        assert!(named.is_empty(), "a deleted Secret's data is dropped");
        assert!(named.fresh("ns", "creds", Some("8")).is_none());
    }

    #[test]
    fn a_deletion_or_a_failed_read_drops_the_data() {
        let named = NamedSecrets::default();
        named.remember("ns", "creds", Some(&secret("7", "old")));
        named.forget("ns", "creds");
        assert!(named.fresh("ns", "creds", Some("7")).is_none());

        named.remember("ns", "creds", Some(&secret("7", "old")));
        named.remember("ns", "creds", None);
        assert!(named.is_empty(), "not found on a read");
    }
}
