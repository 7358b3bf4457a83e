//! Command line: `ordinal run` and `ordinal crd`.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::controller::{Scope, Settings};
use crate::operator::{self, LeaderElection, OperatorConfig};

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
    /// Backup steps run by backup Jobs.
    #[command(subcommand)]
    Backup(crate::backup::contract::BackupCommand),
    /// Restore steps run before or next to a database.
    #[command(subcommand)]
    Restore(crate::backup::contract::RestoreCommand),
    /// Binlog archiving for point-in-time recovery (the archiver Deployment).
    #[command(subcommand)]
    Binlog(crate::backup::contract::BinlogCommand),
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
    /// Address of the HTTP endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "ORDINAL_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Cluster DNS domain used in member names.
    #[arg(long, env = "ORDINAL_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Image of the operator, run by backup Jobs and restore steps.
    #[arg(long, env = "ORDINAL_IMAGE")]
    pub image: Option<String>,
    /// Reconcile only while holding a Lease, so several replicas can run.
    #[arg(long, env = "ORDINAL_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "ORDINAL_LEASE_NAME", default_value = "ordinal-leader")]
    pub lease_name: String,
    /// Identity in the Lease (default: pod name and process id).
    #[arg(long, env = "ORDINAL_IDENTITY")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "ORDINAL_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_seconds: u64,
    /// Seconds in-flight reconciles get to finish at shutdown.
    #[arg(long, env = "ORDINAL_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

impl RunArgs {
    /// Reconciler settings from the command line: `--image`/`ORDINAL_IMAGE`
    /// (set by the Helm chart) names the image that backup, verify and
    /// restore Jobs run; without it, `ordinal/ordinal:<version>`.
    pub fn settings(&self) -> Settings {
        let defaults = Settings::default();
        Settings {
            cluster_domain: self.cluster_domain.clone(),
            image: self.image.clone().unwrap_or(defaults.image.clone()),
            ..defaults
        }
    }
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
    crate::tls::ensure_crypto_provider();
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crds_yaml().context("render CRDs")?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
        Command::Backup(cmd) => {
            init_tracing(LogFormat::Text);
            crate::backup::run::backup(cmd).await
        }
        Command::Restore(cmd) => {
            init_tracing(LogFormat::Text);
            crate::backup::run::restore(cmd).await
        }
        Command::Binlog(crate::backup::contract::BinlogCommand::Archive(args)) => {
            init_tracing(LogFormat::Text);
            crate::backup::archiver::run(args).await
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API")?;
    let scope = if args.namespaces.is_empty() {
        Scope::All
    } else {
        Scope::Namespaces(args.namespaces.clone())
    };
    let leader_election = args.leader_election.then(|| LeaderElection {
        namespace: args.leader_election_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity: args.identity.clone().unwrap_or_else(default_identity),
        lease_seconds: args.lease_seconds,
    });
    info!(namespaces = ?args.namespaces, leader_election = leader_election.is_some(), "ordinal starting");
    let config = OperatorConfig {
        scope,
        settings: args.settings(),
        http_addr: args.http_addr,
        leader_election,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
    };
    operator::run(client, config).await
}

fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "ordinal".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn run_args(argv: &[&str]) -> super::RunArgs {
        match Cli::try_parse_from(argv).expect("parse").command {
            Command::Run(args) => args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn image_flag_reaches_the_settings_jobs_use() {
        let args = run_args(&[
            "ordinal",
            "run",
            "--image",
            "registry.example/ops/ordinal:1.2.3",
        ]);
        assert_eq!(args.settings().image, "registry.example/ops/ordinal:1.2.3");
        assert_eq!(args.settings().cluster_domain, "cluster.local");
    }

    #[test]
    fn without_image_flag_the_default_image_is_used() {
        let args = run_args(&["ordinal", "run", "--cluster-domain", "corp.local"]);
        let settings = args.settings();
        assert_eq!(
            settings.image,
            format!("ordinal/ordinal:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(settings.cluster_domain, "corp.local");
    }
}
