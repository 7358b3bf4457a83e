//! Command line: `ordinal run` and `ordinal crd`.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::controller::{self, Scope, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "ordinal",
    version,
    about = "Kubernetes operator for replicated Redis and MySQL/MariaDB"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (in-cluster config, or KUBECONFIG / ~/.kube/config).
    Run(RunArgs),
    /// Print every CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(long, env = "ORDINAL_WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Log format.
    #[arg(long, env = "ORDINAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "ORDINAL_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Cluster DNS domain used in member names.
    #[arg(long, env = "ORDINAL_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Run a parsed command line.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crds_yaml().context("render CRDs")?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API")?;
    let shutdown = CancellationToken::new();
    let scope = if args.namespaces.is_empty() {
        Scope::All
    } else {
        Scope::Namespaces(args.namespaces.clone())
    };
    let settings = Settings {
        cluster_domain: args.cluster_domain.clone(),
        ..Settings::default()
    };

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("bind {}", args.http_addr))?;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        signals.cancel();
    });
    info!(namespaces = ?args.namespaces, "ordinal starting");
    controller::run(client, settings, scope, shutdown.clone()).await;
    shutdown.cancel();
    http.await
        .context("health server task")?
        .context("health server")?;
    info!("ordinal stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
