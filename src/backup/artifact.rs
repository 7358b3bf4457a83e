//! Artifacts and their manifests. A backup streams its artifact into the
//! store; only after the store confirms the complete upload (and its size
//! matches what was written) is the manifest written. No manifest, no backup.

use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::StreamReader;

use super::target::Target;

pub use super::contract::MANIFEST;
pub const FORMAT_VERSION: i32 = 1;

/// What a backup produced; written next to the artifact and copied into the
/// Backup's status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: i32,
    /// `redis` or `mysql`.
    pub engine: String,
    pub namespace: String,
    pub cluster: String,
    pub backup: String,
    /// Object key of the artifact, relative to the target.
    pub artifact: String,
    /// Where the target is (no credentials).
    pub location: String,
    /// Size of the stored (compressed) artifact.
    pub size_bytes: i64,
    /// Uncompressed size of the dump.
    pub raw_bytes: i64,
    /// sha256 of the stored artifact.
    pub sha256: String,
    /// Redis `<replid>:<offset>` or MySQL/MariaDB GTID set at the snapshot.
    pub position: String,
    /// Member the dump was read from.
    pub source: String,
    /// MySQL/MariaDB: rows in the dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// RFC 3339 time the upload was confirmed.
    pub completed_at: String,
}

/// What the engine's dump function reports about what it wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpReport {
    /// MySQL/MariaDB: rows in the dump.
    pub rows: Option<i64>,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
    pub position: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("dump failed: {0}")]
    Dump(String),
    /// The store's own message already carries its causes.
    #[error("{action} {path}: {failure}: {error}")]
    Store {
        action: &'static str,
        path: String,
        failure: StoreFailure,
        error: object_store::Error,
    },
    #[error("complete upload of {path}: {failure}: {error}")]
    Upload {
        path: String,
        failure: StoreFailure,
        error: std::io::Error,
    },
    #[error(
        "upload of {path} is incomplete: the store holds {stored} bytes, {written} were written"
    )]
    SizeMismatch {
        path: String,
        stored: u64,
        written: u64,
    },
    #[error("no manifest at {0}: the backup never completed")]
    NoManifest(String),
    #[error("manifest {path} is unreadable: {source}")]
    BadManifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a store request failed, in words a person can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    #[error("the target is unreachable (check its endpoint and the network path to it)")]
    Unreachable,
    #[error("the target refused the credentials (check the Secret the target references)")]
    CredentialsRefused,
    #[error("not found (check the bucket or container name)")]
    NotFound,
    #[error("the target failed the request")]
    Other,
}

impl StoreFailure {
    /// Classify an error of the store, looking through the retries for the
    /// transport's reason.
    pub fn of(e: &object_store::Error) -> Self {
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => return Self::CredentialsRefused,
            object_store::Error::NotFound { .. } => return Self::NotFound,
            _ => {}
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cause {
            // The HTTP status of a refused request is only in the retry
            // layer's message (its type is private to object_store).
            let text = err.to_string();
            if text.starts_with("Server returned non-2xx status code: 401")
                || text.starts_with("Server returned non-2xx status code: 403")
            {
                return Self::CredentialsRefused;
            }
            if let Some(http) = err.downcast_ref::<object_store::client::HttpError>()
                && matches!(
                    http.kind(),
                    object_store::client::HttpErrorKind::Connect
                        | object_store::client::HttpErrorKind::Timeout
                )
            {
                return Self::Unreachable;
            }
            cause = err.source();
        }
        Self::Other
    }
}

fn store_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(object_store::Error) -> ArtifactError + 'a {
    move |error| ArtifactError::Store {
        action,
        path: path.to_string(),
        failure: StoreFailure::of(&error),
        error,
    }
}

/// The sink a dump writes into. Shutting it down only flushes: the upload is
/// completed by [`upload`] after the dump reported success, and aborted when
/// it failed, so a failed dump never leaves a complete-looking object.
pub struct Sink<'a>(&'a mut BufWriter);

impl AsyncWrite for Sink<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
}

/// Stream a dump into `dir/<name>` and, once the store confirms it, write the
/// manifest. `dump` writes into the sink and reports what it wrote; the
/// upload is completed only when it succeeded.
pub async fn upload(
    target: &Target,
    dir: &Path,
    name: &str,
    dump: impl AsyncFnOnce(Sink<'_>) -> Result<DumpReport, String>,
    describe: impl FnOnce(&DumpReport, &Path) -> Manifest,
) -> Result<Manifest, ArtifactError> {
    let path = dir.clone().join(name);
    // Reach the target before the database is read, so an unreachable
    // endpoint, refused credentials or a missing bucket are named as such.
    let _: Vec<_> = target
        .store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(store_err("reach the target to list", dir))?;
    let mut writer = BufWriter::with_capacity(target.store.clone(), path.clone(), 8 * 1024 * 1024);
    let report = match dump(Sink(&mut writer)).await {
        Ok(report) => report,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(ArtifactError::Dump(e));
        }
    };
    writer
        .shutdown()
        .await
        .map_err(|error| ArtifactError::Upload {
            path: path.to_string(),
            failure: error
                .get_ref()
                .and_then(|e| e.downcast_ref::<object_store::Error>())
                .map_or(StoreFailure::Other, StoreFailure::of),
            error,
        })?;
    let meta = target
        .store
        .head(&path)
        .await
        .map_err(store_err("confirm", &path))?;
    if meta.size != report.compressed_bytes {
        return Err(ArtifactError::SizeMismatch {
            path: path.to_string(),
            stored: meta.size,
            written: report.compressed_bytes,
        });
    }
    let manifest = describe(&report, &path);
    let manifest_path = dir.clone().join(MANIFEST);
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|source| ArtifactError::BadManifest {
            path: manifest_path.to_string(),
            source,
        })?;
    target
        .store
        .put(&manifest_path, PutPayload::from(body))
        .await
        .map_err(store_err("write", &manifest_path))?;
    Ok(manifest)
}

/// Read the manifest of one backup.
pub async fn read_manifest(target: &Target, dir: &Path) -> Result<Manifest, ArtifactError> {
    let path = dir.clone().join(MANIFEST);
    let got = match target.store.get(&path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ArtifactError::NoManifest(path.to_string()));
        }
        Err(source) => return Err(store_err("read", &path)(source)),
    };
    let bytes = got.bytes().await.map_err(store_err("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|source| ArtifactError::BadManifest {
        path: path.to_string(),
        source,
    })
}

/// A streaming reader of an artifact.
pub async fn open_artifact(
    target: &Target,
    path: &Path,
) -> Result<impl AsyncRead + Unpin + use<>, ArtifactError> {
    let got = target
        .store
        .get(path)
        .await
        .map_err(store_err("read", path))?;
    let stream = got.into_stream().map_err(std::io::Error::other);
    Ok(StreamReader::new(stream))
}

/// Delete every object of one backup (artifact first, manifest last, so a
/// half-deleted backup is never mistaken for a complete one).
pub async fn delete(target: &Target, dir: &Path) -> Result<usize, ArtifactError> {
    let objects: Vec<_> = target
        .store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(store_err("list", dir))?;
    let manifest = dir.clone().join(MANIFEST);
    let mut deleted = 0;
    for meta in objects.iter().filter(|m| m.location != manifest) {
        target
            .store
            .delete(&meta.location)
            .await
            .map_err(store_err("delete", &meta.location))?;
        deleted += 1;
    }
    if objects.iter().any(|m| m.location == manifest) {
        target
            .store
            .delete(&manifest)
            .await
            .map_err(store_err("delete", &manifest))?;
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{BackupTarget, PvcTarget};
    use crate::backup::target::{TargetCredentials, backup_dir, open};
    use sha2::{Digest, Sha256};

    fn pvc_target(root: &std::path::Path) -> Target {
        let t = BackupTarget {
            s3: None,
            gcs: None,
            azure: None,
            pvc: Some(PvcTarget {
                claim_name: "b".into(),
                path: None,
            }),
        };
        open(&t, &TargetCredentials::default(), root).expect("open")
    }

    fn describe(r: &DumpReport, p: &Path) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            engine: "redis".into(),
            namespace: "ns".into(),
            cluster: "c".into(),
            backup: "b1".into(),
            artifact: p.to_string(),
            location: "pvc://b".into(),
            size_bytes: r.compressed_bytes as i64,
            raw_bytes: r.raw_bytes as i64,
            sha256: r.sha256.clone(),
            position: r.position.clone(),
            source: "c-1".into(),
            rows: r.rows,
            completed_at: "2026-11-24T00:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn upload_confirms_then_writes_manifest_and_delete_removes_all() {
        let root = tempfile::tempdir().expect("tmp");
        let target = pvc_target(root.path());
        let dir = backup_dir(&target.prefix, "ns", "c", "b1");
        // Larger than one multipart chunk, so the streaming path is exercised.
        let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let sha = hex::encode(Sha256::digest(&data));
        let payload = data.clone();
        let dump = async move |mut w: Sink<'_>| {
            for chunk in payload.chunks(1 << 20) {
                w.write_all(chunk).await.map_err(|e| e.to_string())?;
            }
            w.shutdown().await.map_err(|e| e.to_string())?;
            let n = payload.len() as u64;
            Ok(DumpReport {
                rows: None,
                raw_bytes: n,
                compressed_bytes: n,
                sha256: sha,
                position: "r:42".into(),
            })
        };
        let manifest = upload(&target, &dir, "data.bin", dump, describe)
            .await
            .expect("upload");
        assert_eq!(manifest.size_bytes, data.len() as i64);
        assert_eq!(
            read_manifest(&target, &dir).await.expect("manifest"),
            manifest
        );
        let mut back = Vec::new();
        let mut reader = open_artifact(&target, &dir.clone().join("data.bin"))
            .await
            .expect("open");
        tokio::io::copy(&mut reader, &mut back).await.expect("read");
        assert_eq!(back, data);
        assert_eq!(delete(&target, &dir).await.expect("delete"), 2);
        assert!(matches!(
            read_manifest(&target, &dir).await,
            Err(ArtifactError::NoManifest(_))
        ));
    }

    #[tokio::test]
    async fn a_short_or_failed_upload_writes_no_manifest() {
        let root = tempfile::tempdir().expect("tmp");
        let target = pvc_target(root.path());
        let dir = backup_dir(&target.prefix, "ns", "c", "b2");
        let short = async |mut w: Sink<'_>| {
            w.write_all(b"partial").await.map_err(|e| e.to_string())?;
            w.shutdown().await.map_err(|e| e.to_string())?;
            // The dump claims more than it wrote: the size check must catch it.
            Ok(DumpReport {
                rows: None,
                raw_bytes: 100,
                compressed_bytes: 100,
                sha256: "x".into(),
                position: "p".into(),
            })
        };
        let err = upload(&target, &dir, "data.bin", short, describe)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ArtifactError::SizeMismatch {
                    stored: 7,
                    written: 100,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            read_manifest(&target, &dir).await,
            Err(ArtifactError::NoManifest(_))
        ));

        let failing = async |mut w: Sink<'_>| {
            w.write_all(b"some bytes")
                .await
                .map_err(|e| e.to_string())?;
            Err("source went away".to_string())
        };
        let err = upload(&target, &dir, "other.bin", failing, describe)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("source went away"), "{err}");
        assert!(matches!(
            read_manifest(&target, &dir).await,
            Err(ArtifactError::NoManifest(_))
        ));
        assert!(
            target
                .store
                .head(&dir.clone().join("other.bin"))
                .await
                .is_err(),
            "aborted upload left no object"
        );
    }
}
