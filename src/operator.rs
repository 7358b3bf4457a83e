//! The running operator: health/metrics endpoints, leader election, the
//! controllers, and graceful shutdown driven by one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::controller::{self, Scope, Settings};
use crate::metrics::Metrics;

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// Seconds a lease is valid without renewal.
    pub lease_seconds: u64,
}

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub scope: Scope,
    pub settings: Settings,
    pub http_addr: SocketAddr,
    pub leader_election: Option<LeaderElection>,
    /// How long in-flight reconciles may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

#[derive(Clone)]
struct AppState {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        ),
    }
}

/// Run until SIGTERM/SIGINT (exit 0) or until the leader lease is lost (error).
pub async fn run(client: Client, config: OperatorConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("bind {}", config.http_addr))?;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics_text))
        .with_state(AppState {
            ready: ready.clone(),
            metrics: metrics.clone(),
        });
    let http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });

    tokio::spawn(crate::memory::trim_periodically(shutdown.clone()));

    let signals = shutdown.clone();
    tokio::spawn(async move {
        crate::shutdown::wait_for_signal().await;
        info!("shutdown requested");
        signals.cancel();
    });

    let result = match &config.leader_election {
        None => {
            metrics.leader.set(1);
            ready.store(true, Ordering::Relaxed);
            run_controllers(&client, &config, &metrics, shutdown.clone()).await;
            Ok(())
        }
        Some(le) => run_with_lease(&client, &config, le, &metrics, &ready, &shutdown).await,
    };
    shutdown.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "health server stopped with an error"),
        Err(e) => warn!(error = %e, "health server task failed"),
    }
    info!("ordinal stopped");
    result
}

async fn run_controllers(
    client: &Client,
    config: &OperatorConfig,
    metrics: &Arc<Metrics>,
    stop: CancellationToken,
) {
    controller::run(
        client.clone(),
        config.settings.clone(),
        config.scope.clone(),
        stop,
        metrics.clone(),
    )
    .await;
}

async fn run_with_lease(
    client: &Client,
    config: &OperatorConfig,
    le: &LeaderElection,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let grace = (le.lease_seconds / 3).max(1);
    let manager = LeaseManagerBuilder::new(client.clone(), &le.lease_name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.lease_seconds)
        .with_grace(grace)
        .build()
        .await
        .with_context(|| format!("lease {}/{}", le.namespace, le.lease_name))?;
    let (mut leader, lease_task) = manager.watch().await;
    // A standby replica is healthy and ready to take over.
    ready.store(true, Ordering::Relaxed);
    info!(identity = %le.identity, lease = %le.lease_name, "waiting for the leader lease");

    let became_leader = loop {
        if *leader.borrow_and_update() {
            break true;
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { bail!("leader election stopped") },
            _ = shutdown.cancelled() => break false,
        }
    };
    let mut lost = false;
    if became_leader {
        info!(identity = %le.identity, "acquired the leader lease; starting controllers");
        metrics.leader.set(1);
        let stop = shutdown.child_token();
        let controllers = {
            let (client, config, metrics, stop) = (
                client.clone(),
                config.clone(),
                metrics.clone(),
                stop.clone(),
            );
            tokio::spawn(async move { run_controllers(&client, &config, &metrics, stop).await })
        };
        lost = loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() {
                        break true;
                    }
                }
                _ = shutdown.cancelled() => break false,
            }
        };
        if lost {
            error!(identity = %le.identity, "lost the leader lease; stopping reconciles now");
        }
        // No new reconcile starts from here; in-flight ones get a bounded grace.
        stop.cancel();
        metrics.leader.set(0);
        if tokio::time::timeout(config.shutdown_grace, controllers)
            .await
            .is_err()
        {
            warn!(grace = ?config.shutdown_grace, "in-flight reconciles did not finish in time");
        }
    }
    // Closing the channel makes the lease task release the lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("leader lease released"),
        Ok(Ok(Err(e))) => warn!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => warn!(error = %e, "lease task failed"),
        Err(_) => warn!("timed out releasing the leader lease"),
    }
    if lost {
        bail!("lost the leader lease");
    }
    Ok(())
}
