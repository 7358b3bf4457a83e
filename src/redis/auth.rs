//! Password rotation without downtime, with Redis ACL dual passwords.
//!
//! The Secret carries the new `password` and, during a rotation, the old one
//! as `previous-password`. A member that still only knows the old password is
//! reached with it and given the new one next to it (`ACL SETUSER default
//! >new`) and the new `masterauth`; both passwords work meanwhile. Once every
//! member is reachable with the new password and uses it as `masterauth`, the
//! old password is dropped everywhere (`ACL SETUSER default resetpass >new`).

use redis::Value;
use sha2::{Digest, Sha256};

use super::RedisError;
use super::conn::Conn;

/// Secret key holding the password being rotated away from.
pub const PREVIOUS_PASSWORD_KEY: &str = "previous-password";

/// What one member's authentication looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthState {
    /// `masterauth` equals the current password.
    pub masterauth_current: bool,
    /// sha256 (hex) of each password the default user accepts.
    pub password_hashes: Vec<String>,
}

/// sha256 hex of a password, as `ACL GETUSER` lists them.
pub fn password_hash(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

/// What to do about authentication this pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthPlan {
    /// Members whose `masterauth` must be set to the current password.
    pub set_masterauth: Vec<i32>,
    /// Members whose other passwords can be dropped now.
    pub drop_old: Vec<i32>,
}

/// Decide from every member's auth state (None when unreachable). Old
/// passwords are only dropped once every member is reachable and replicates
/// with the current password, so no replica loses its link.
pub fn plan_auth(members: &[(i32, Option<AuthState>)], current: &str) -> AuthPlan {
    let hash = password_hash(current);
    let mut plan = AuthPlan::default();
    for (o, st) in members {
        if let Some(st) = st
            && !st.masterauth_current
        {
            plan.set_masterauth.push(*o);
        }
    }
    let all_ready = members
        .iter()
        .all(|(_, st)| st.as_ref().is_some_and(|s| s.masterauth_current));
    if all_ready {
        plan.drop_old = members
            .iter()
            .filter_map(|(o, st)| st.as_ref().map(|s| (o, s)))
            .filter(|(_, s)| s.password_hashes.iter().any(|h| *h != hash))
            .map(|(o, _)| *o)
            .collect();
    }
    plan
}

/// Parse the `passwords` field of an `ACL GETUSER` reply.
pub fn parse_acl_passwords(v: &Value) -> Vec<String> {
    let items: &[Value] = match v {
        Value::Array(items) => items,
        Value::Map(pairs) => {
            return pairs
                .iter()
                .find(|(k, _)| as_str(k).as_deref() == Some("passwords"))
                .map(|(_, v)| strings(v))
                .unwrap_or_default();
        }
        _ => return Vec::new(),
    };
    items
        .chunks(2)
        .find(|kv| as_str(&kv[0]).as_deref() == Some("passwords"))
        .and_then(|kv| kv.get(1))
        .map(strings)
        .unwrap_or_default()
}

fn as_str(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).to_string()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(as_str).collect(),
        _ => Vec::new(),
    }
}

/// Read a member's auth state.
pub async fn observe_auth(c: &mut Conn, current: &str) -> Result<AuthState, RedisError> {
    let (masterauth, acl): (Vec<String>, Value) = redis::pipe()
        .cmd("CONFIG")
        .arg("GET")
        .arg("masterauth")
        .cmd("ACL")
        .arg("GETUSER")
        .arg("default")
        .query_async(c)
        .await
        .map_err(|e| RedisError::command("reading the authentication settings", e))?;
    Ok(AuthState {
        masterauth_current: masterauth.get(1).map(String::as_str) == Some(current),
        password_hashes: parse_acl_passwords(&acl),
    })
}

/// Accept `new` next to the passwords already accepted.
pub async fn add_password(c: &mut Conn, new: &str) -> Result<(), RedisError> {
    let _: Value = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("on")
        .arg(format!(">{new}"))
        .query_async(c)
        .await
        .map_err(|e| RedisError::command("ACL SETUSER default (add password)", e))?;
    Ok(())
}

/// Use `current` to authenticate to the primary.
pub async fn set_masterauth(c: &mut Conn, current: &str) -> Result<(), RedisError> {
    let _: Value = redis::cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg(current)
        .query_async(c)
        .await
        .map_err(|e| RedisError::command("CONFIG SET masterauth", e))?;
    Ok(())
}

/// Accept only `current` from now on.
pub async fn drop_other_passwords(c: &mut Conn, current: &str) -> Result<(), RedisError> {
    let _: Value = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetpass")
        .arg(format!(">{current}"))
        .query_async(c)
        .await
        .map_err(|e| RedisError::command("ACL SETUSER default (drop old password)", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(masterauth: bool, pws: &[&str]) -> Option<AuthState> {
        Some(AuthState {
            masterauth_current: masterauth,
            password_hashes: pws.iter().map(|p| password_hash(p)).collect(),
        })
    }

    #[test]
    fn old_password_is_dropped_only_when_everyone_uses_the_new_one() {
        let members = vec![
            (0, st(true, &["new", "old"])),
            (1, st(false, &["new", "old"])),
        ];
        let p = plan_auth(&members, "new");
        assert_eq!(p.set_masterauth, [1]);
        assert!(p.drop_old.is_empty());

        let members = vec![(0, st(true, &["new", "old"])), (1, None)];
        assert!(plan_auth(&members, "new").drop_old.is_empty());

        let members = vec![(0, st(true, &["new", "old"])), (1, st(true, &["new"]))];
        let p = plan_auth(&members, "new");
        assert!(p.set_masterauth.is_empty());
        assert_eq!(p.drop_old, [0]);

        let members = vec![(0, st(true, &["new"])), (1, st(true, &["new"]))];
        assert_eq!(plan_auth(&members, "new"), AuthPlan::default());
    }

    #[test]
    fn parses_acl_getuser_passwords() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let v = Value::Array(vec![
            b("flags"),
            Value::Array(vec![b("on")]),
            b("passwords"),
            Value::Array(vec![b("aa"), b("bb")]),
            b("commands"),
            b("+@all"),
        ]);
        assert_eq!(parse_acl_passwords(&v), ["aa", "bb"]);
        assert!(parse_acl_passwords(&Value::Nil).is_empty());
    }
}
