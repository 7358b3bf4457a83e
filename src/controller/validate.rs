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
