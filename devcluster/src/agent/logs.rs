//! A tiny "kubelet" HTTPS endpoint so that `kubectl logs` works: the API
//! server proxies `pods/log` to `https://<node InternalIP>:<kubelet port>/containerLogs/<ns>/<pod>/<container>`,
//! and we answer with the container's log file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

pub async fn serve(state: PathBuf, port: u16) -> Result<()> {
    let pki = state.join("pki");
    let certs = CertificateDer::pem_file_iter(pki.join("kubelet.crt"))
        .context("reading kubelet.crt")?
        .collect::<Result<Vec<_>, _>>()
        .context("parsing kubelet.crt")?;
    let key =
        PrivateKeyDer::from_pem_file(pki.join("kubelet.key")).context("reading kubelet.key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS config")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding kubelet port {port}"))?;
    loop {
        let (tcp, _) = listener.accept().await.context("accept")?;
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    if let Err(e) = handle(tls, &state).await {
                        debug!("kubelet endpoint: {e:#}");
                    }
                }
                Err(e) => warn!("kubelet endpoint TLS: {e}"),
            }
        });
    }
}

async fn handle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    state: &Path,
) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            bail!("bad request");
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let file = match parts.as_slice() {
        ["containerLogs", ns, pod, ctr]
            if [ns, pod, ctr]
                .iter()
                .all(|p| !p.is_empty() && !p.contains("..")) =>
        {
            state
                .join("pods")
                .join(format!("{ns}_{pod}"))
                .join(format!("{ctr}.log"))
        }
        _ => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 10\r\n\r\nnot found\n").await?;
            return Ok(());
        }
    };
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
    };
    let follow = param("follow") == Some("true");
    let tail: Option<usize> = param("tailLines").and_then(|v| v.parse().ok());
    let Ok(mut f) = tokio::fs::File::open(&file).await else {
        s.write_all(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 13\r\n\r\nno log file\r\n").await?;
        return Ok(());
    };
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        .await?;
    let mut content = Vec::new();
    f.read_to_end(&mut content).await?;
    let start = match tail {
        Some(n) => {
            let newlines: Vec<usize> = content
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect();
            // The last line ends with '\n': skip it when counting back.
            let ends = newlines.len();
            if n == 0 {
                content.len()
            } else if ends > n {
                newlines[ends - n - 1] + 1
            } else {
                0
            }
        }
        None => 0,
    };
    s.write_all(&content[start..]).await?;
    s.flush().await?;
    if follow {
        let mut pos = content.len() as u64;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let len = tokio::fs::metadata(&file)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            if len < pos {
                pos = 0;
            }
            if len > pos {
                f.seek(std::io::SeekFrom::Start(pos)).await?;
                let mut more = Vec::new();
                f.read_to_end(&mut more).await?;
                pos += more.len() as u64;
                s.write_all(&more).await?;
                s.flush().await?;
            }
        }
    }
    s.shutdown().await?;
    Ok(())
}
