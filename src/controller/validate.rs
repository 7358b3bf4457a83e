//! Checks the API server's schema cannot express (CEL covers the rest):
//! case variants of owned keys, and config values that would inject lines.

use std::collections::BTreeMap;

/// Refuse `spec.config` entries that would override operator-owned settings
/// or break the rendered file. The message names the key.
pub fn config(config: &BTreeMap<String, String>, owned: &[&str]) -> Result<(), String> {
    for (key, value) in config {
        let normal = key.to_ascii_lowercase().replace('_', "-");
        if owned.iter().any(|o| o.replace('_', "-") == normal) {
            return Err(format!(
                "config key {key} is managed by Ordinal and cannot be set in spec.config"
            ));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "config key {key:?} must consist of letters, digits, '-', '_' and '.'"
            ));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(format!(
                "config value of {key} must be a single line without control characters"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{mysql::MYSQL_OWNED_KEYS, redis::REDIS_OWNED_KEYS};

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn case_and_spelling_variants_of_owned_keys_are_refused() {
        let err = config(&cfg(&[("Port", "7000")]), REDIS_OWNED_KEYS).unwrap_err();
        assert!(
            err.contains("config key Port is managed by Ordinal"),
            "{err}"
        );
        let err = config(&cfg(&[("Server_Id", "1")]), MYSQL_OWNED_KEYS).unwrap_err();
        assert!(err.contains("Server_Id"), "{err}");
        assert!(config(&cfg(&[("log-slave-updates", "OFF")]), MYSQL_OWNED_KEYS).is_err());
    }

    #[test]
    fn injected_lines_and_odd_keys_are_refused() {
        let err = config(
            &cfg(&[("maxmemory", "1gb\nreplicaof evil 6379")]),
            REDIS_OWNED_KEYS,
        )
        .unwrap_err();
        assert!(err.contains("single line"), "{err}");
        assert!(config(&cfg(&[("max memory", "1")]), REDIS_OWNED_KEYS).is_err());
        assert!(
            config(
                &cfg(&[("maxmemory", "1gb"), ("innodb_buffer_pool_size", "1G")]),
                REDIS_OWNED_KEYS
            )
            .is_ok()
        );
    }
}
