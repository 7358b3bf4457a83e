//! A loopback HTTP proxy in front of the API server that delivers every
//! chunk of a watch response a fixed delay after it arrived (other requests
//! pass straight through): the operator's informers see events late, as
//! behind a slow or overloaded API server. Credentials stay in the test's
//! client; the operator talks plain HTTP to 127.0.0.1 only.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{self, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;

pub struct WatchDelay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WatchDelay {
    pub async fn start(client: kube::Client, delay: Duration) -> WatchDelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let app = Router::new().fallback(move |req: Request| forward(client.clone(), delay, req));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WatchDelay { addr, task }
    }

    /// Write a kubeconfig that points at the proxy.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: delayed\n  cluster:\n    server: http://{}\nusers:\n- name: proxy\n  user: {{}}\ncontexts:\n- name: delayed\n  context:\n    cluster: delayed\n    user: proxy\ncurrent-context: delayed\n",
            self.addr
        );
        std::fs::write(path, text).expect("write proxy kubeconfig");
    }
}

impl Drop for WatchDelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

async fn forward(client: kube::Client, delay: Duration, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let watch = is_watch(&parts.uri);
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let mut up = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONTENT_LENGTH && k != header::AUTHORIZATION {
            up = up.header(k, v);
        }
    }
    let Ok(up) = up.body(kube::client::Body::from(bytes.to_vec())) else {
        return error(StatusCode::BAD_REQUEST, "bad request".into());
    };
    let resp = match client.send(up).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let (parts, body) = resp.into_parts();
    let mut upstream = Body::new(body).into_data_stream();
    let body = if watch {
        // Read upstream as it comes, deliver each chunk `delay` after it arrived.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(chunk) = upstream.next().await {
                if tx.send((tokio::time::Instant::now(), chunk)).is_err() {
                    break;
                }
            }
        });
        Body::from_stream(futures::stream::unfold(rx, move |mut rx| async move {
            let (at, chunk) = rx.recv().await?;
            tokio::time::sleep_until(at + delay).await;
            Some((chunk, rx))
        }))
    } else {
        Body::from_stream(upstream)
    };
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    out.body(body)
        .unwrap_or_else(|e| error(StatusCode::BAD_GATEWAY, e.to_string()))
}

fn error(status: StatusCode, message: String) -> Response {
    let mut r = Response::new(Body::from(message));
    *r.status_mut() = status;
    r
}
