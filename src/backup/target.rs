//! Backup targets: S3-compatible, GCS, Azure and a PVC path, all behind
//! `object_store`. Credentials come from the environment of the Job (set from
//! Secret references by the operator) and never reach logs or status.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, RetryConfig};

use crate::api::backup::BackupTarget;

use super::gcs_upload::{self, GcsJsonUploads};

pub use super::contract::{
    ENV_ACCESS_KEY_ID, ENV_AZURE_KEY, ENV_GCS_KEY, ENV_RETRY_SECONDS, ENV_SECRET_ACCESS_KEY,
    PVC_MOUNT,
};

/// Secret values a target needs. `Debug` never shows them.
#[derive(Clone, Default)]
pub struct TargetCredentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub gcs_service_account_key: Option<String>,
    pub azure_access_key: Option<String>,
}

impl std::fmt::Debug for TargetCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TargetCredentials(<redacted>)")
    }
}

impl TargetCredentials {
    pub fn from_env() -> Self {
        Self::from_env_named(|k| k.to_string())
    }

    /// The binlog archive target's credentials in a restore Job
    /// ([`super::contract::archive_env`] names).
    pub fn from_archive_env() -> Self {
        Self::from_env_named(super::contract::archive_env)
    }

    fn from_env_named(name: impl Fn(&str) -> String) -> Self {
        let var = |k: &str| std::env::var(name(k)).ok().filter(|v| !v.is_empty());
        Self {
            access_key_id: var(ENV_ACCESS_KEY_ID),
            secret_access_key: var(ENV_SECRET_ACCESS_KEY),
            gcs_service_account_key: var(ENV_GCS_KEY),
            azure_access_key: var(ENV_AZURE_KEY),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target {0} needs credential {1}, which is not set")]
    MissingCredential(&'static str, &'static str),
    #[error("target {0} credential {1} is unusable: {2}")]
    BadCredential(&'static str, &'static str, String),
    #[error("target sets none of s3, gcs, azure, pvc")]
    Empty,
    #[error("cannot open {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot create directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An opened target: the store and the prefix every artifact lives under.
#[derive(Clone, Debug)]
pub struct Target {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// Where it is, for status and messages; no credentials.
    pub location: String,
}

fn prefix_of(prefix: Option<&String>) -> Path {
    Path::from(prefix.map(|p| p.trim_matches('/')).unwrap_or_default())
}

/// The key prefix of a target's artifacts (a PVC target's path is part of
/// its root directory instead).
pub fn prefix(target: &BackupTarget) -> Path {
    if let Some(s3) = &target.s3 {
        prefix_of(s3.prefix.as_ref())
    } else if let Some(gcs) = &target.gcs {
        prefix_of(gcs.prefix.as_ref())
    } else if let Some(az) = &target.azure {
        prefix_of(az.prefix.as_ref())
    } else {
        Path::default()
    }
}

/// A human-readable URL of the target (no credentials).
pub fn location(target: &BackupTarget) -> String {
    let join = |scheme: &str, root: &str, prefix: Option<&String>| {
        let p = prefix.map(|p| p.trim_matches('/')).unwrap_or_default();
        if p.is_empty() {
            format!("{scheme}://{root}")
        } else {
            format!("{scheme}://{root}/{p}")
        }
    };
    if let Some(s3) = &target.s3 {
        join("s3", &s3.bucket, s3.prefix.as_ref())
    } else if let Some(gcs) = &target.gcs {
        join("gs", &gcs.bucket, gcs.prefix.as_ref())
    } else if let Some(az) = &target.azure {
        join(
            "azure",
            &format!("{}/{}", az.account, az.container),
            az.prefix.as_ref(),
        )
    } else if let Some(pvc) = &target.pvc {
        join("pvc", &pvc.claim_name, pvc.path.as_ref())
    } else {
        "<none>".into()
    }
}

/// How long a request is retried. object_store's default (10 retries
/// within 3 minutes) is kept except when a test sets
/// `ORDINAL_TARGET_RETRY_SECONDS`, so an unreachable target fails fast there.
fn retry() -> RetryConfig {
    let mut retry = RetryConfig::default();
    if let Some(secs) = std::env::var(ENV_RETRY_SECONDS)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        retry.retry_timeout = std::time::Duration::from_secs(secs);
        retry.max_retries = retry.max_retries.min(secs as usize);
    }
    retry
}

/// Open a target. `pvc_root` is where a PVC target is mounted.
pub fn open(
    target: &BackupTarget,
    creds: &TargetCredentials,
    pvc_root: &std::path::Path,
) -> Result<Target, TargetError> {
    crate::tls::ensure_crypto_provider();
    let loc = location(target);
    let opened = |r: object_store::Result<Arc<dyn ObjectStore>>| {
        r.map_err(|source| TargetError::Open {
            location: loc.clone(),
            source,
        })
    };
    if let Some(s3) = &target.s3 {
        let key = creds
            .access_key_id
            .clone()
            .ok_or(TargetError::MissingCredential("s3", "accessKeyId"))?;
        let secret = creds
            .secret_access_key
            .clone()
            .ok_or(TargetError::MissingCredential("s3", "secretAccessKey"))?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&s3.bucket)
            .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(!s3.force_path_style)
            .with_retry(retry());
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = opened(builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>))?;
        return Ok(Target {
            store,
            prefix: prefix_of(s3.prefix.as_ref()),
            location: loc,
        });
    }
    if let Some(gcs) = &target.gcs {
        let key = creds
            .gcs_service_account_key
            .clone()
            .ok_or(TargetError::MissingCredential("gcs", "serviceAccountKey"))?;
        let parsed = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&key)
        {
            Ok(parsed) => parsed,
            Err(e) => {
                return Err(TargetError::BadCredential(
                    "gcs",
                    "serviceAccountKey",
                    format!("not a service account JSON key ({e})"),
                ));
            }
        };
        // Where the APIs are: the target's endpoint, else the key's
        // `gcs_base_url` (as object_store reads it), else Google's.
        let base_url = gcs
            .endpoint
            .as_deref()
            .or_else(|| parsed.get("gcs_base_url").and_then(|v| v.as_str()))
            .unwrap_or(gcs_upload::DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string();
        let retry = retry();
        let builder = GoogleCloudStorageBuilder::new()
            .with_bucket_name(&gcs.bucket)
            .with_service_account_key(key)
            .with_base_url(&base_url)
            .with_retry(retry.clone());
        // Uploads go through the JSON API (gcs_upload), the rest through
        // object_store's client.
        let store = opened(builder.build().and_then(|inner| {
            GcsJsonUploads::new(inner, &base_url, &gcs.bucket, retry)
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }))?;
        return Ok(Target {
            store,
            prefix: prefix_of(gcs.prefix.as_ref()),
            location: loc,
        });
    }
    if let Some(az) = &target.azure {
        let key = creds
            .azure_access_key
            .clone()
            .ok_or(TargetError::MissingCredential("azure", "accessKey"))?;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&az.account)
            .with_container_name(&az.container)
            .with_access_key(key)
            .with_retry(retry());
        if let Some(endpoint) = &az.endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/').to_string())
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = opened(builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>))?;
        return Ok(Target {
            store,
            prefix: prefix_of(az.prefix.as_ref()),
            location: loc,
        });
    }
    if let Some(pvc) = &target.pvc {
        let dir = pvc_root.join(pvc.path.as_deref().unwrap_or_default().trim_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|source| TargetError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let store = opened(
            LocalFileSystem::new_with_prefix(&dir).map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        )?;
        return Ok(Target {
            store,
            prefix: Path::default(),
            location: loc,
        });
    }
    Err(TargetError::Empty)
}

/// Directory of one backup's objects: `<prefix>/<namespace>/<cluster>/<backup>`.
pub fn backup_dir(prefix: &Path, namespace: &str, cluster: &str, backup: &str) -> Path {
    let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend([
        namespace.to_string(),
        cluster.to_string(),
        backup.to_string(),
    ]);
    Path::from_iter(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{PvcTarget, S3Target, SecretKeyRef};

    fn s3(prefix: Option<&str>) -> BackupTarget {
        BackupTarget {
            s3: Some(S3Target {
                bucket: "b".into(),
                prefix: prefix.map(String::from),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: None,
                force_path_style: true,
                access_key_id: SecretKeyRef {
                    name: "s".into(),
                    key: "id".into(),
                },
                secret_access_key: SecretKeyRef {
                    name: "s".into(),
                    key: "secret".into(),
                },
            }),
            gcs: None,
            azure: None,
            pvc: None,
        }
    }

    #[test]
    fn locations_and_paths_carry_no_credentials() {
        assert_eq!(location(&s3(Some("/team/redis/"))), "s3://b/team/redis");
        let creds = TargetCredentials {
            access_key_id: Some("AKIA".into()),
            secret_access_key: Some("TOPSECRET".into()),
            ..Default::default()
        };
        assert!(!format!("{creds:?}").contains("TOPSECRET"));
        let t = open(
            &s3(Some("team")),
            &creds,
            std::path::Path::new("/nonexistent"),
        )
        .expect("open s3");
        assert!(!format!("{t:?}").contains("TOPSECRET"));
        assert_eq!(
            backup_dir(&t.prefix, "ns", "c", "b1").as_ref(),
            "team/ns/c/b1"
        );
    }

    #[test]
    fn missing_credentials_are_named() {
        let err = open(
            &s3(None),
            &TargetCredentials::default(),
            std::path::Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("accessKeyId"), "{err}");
    }

    #[test]
    fn pvc_target_is_a_directory_under_the_mount() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = BackupTarget {
            s3: None,
            gcs: None,
            azure: None,
            pvc: Some(PvcTarget {
                claim_name: "backups".into(),
                path: Some("redis/".into()),
            }),
        };
        let t = open(&target, &TargetCredentials::default(), dir.path()).expect("open pvc");
        assert_eq!(t.location, "pvc://backups/redis");
        assert!(dir.path().join("redis").is_dir());
    }
}
