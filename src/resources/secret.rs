//! The credentials Secret: generated once when the user names none, never
//! overwritten, never rendered into a ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::distr::{Alphanumeric, SampleString};

use super::{ClusterView, labels};

pub const REDIS_PASSWORD: &str = "password";
pub const MYSQL_ROOT: &str = "root-password";
pub const MYSQL_REPLICATION: &str = "replication-password";
pub const MYSQL_OPERATOR: &str = "operator-password";

/// Length of generated passwords (alphanumeric: safe in every config syntax).
pub const PASSWORD_LEN: usize = 32;

/// A random alphanumeric password.
pub fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN)
}

/// The generated Secret, with one password per key from `password`.
pub fn generated(view: &ClusterView, mut password: impl FnMut() -> String) -> Secret {
    let data = view
        .kind
        .secret_keys()
        .iter()
        .map(|key| (key.to_string(), ByteString(password().into_bytes())))
        .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: ObjectMeta {
            name: Some(view.secret_name.clone()),
            namespace: Some(view.namespace.clone()),
            labels: Some(labels::common(view)),
            owner_references: Some(vec![view.owner.clone()]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

/// Why a Secret's content cannot be used, if it cannot: a missing key, or a
/// password with characters that config files or shells would mangle.
pub fn check(view: &ClusterView, secret: &Secret) -> Result<BTreeMap<String, String>, String> {
    let data = secret.data.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for key in view.kind.secret_keys() {
        let value = data
            .get(*key)
            .ok_or_else(|| format!("Secret {} has no key {key}", view.secret_name))?;
        let text = String::from_utf8(value.0.clone())
            .map_err(|_| format!("Secret {} key {key} is not UTF-8", view.secret_name))?;
        if text.is_empty() {
            return Err(format!("Secret {} key {key} is empty", view.secret_name));
        }
        if text
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '`' | '$' | ' '))
        {
            return Err(format!(
                "Secret {} key {key} contains whitespace, quotes, backslashes, backticks or '$'; use letters, digits and other punctuation",
                view.secret_name
            ));
        }
        out.insert(key.to_string(), text);
    }
    // Other keys (e.g. `previous-password` during a rotation) pass through.
    for (key, value) in data {
        if let (false, Ok(text)) = (out.contains_key(&key), String::from_utf8(value.0)) {
            out.insert(key, text);
        }
    }
    Ok(out)
}
