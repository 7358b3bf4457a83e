//! `kubectl ordinal`: day-2 commands for Ordinal clusters, as a kubectl
//! plugin (the `kubectl-ordinal` binary). Follows kubectl's conventions:
//! `-n/--namespace`, `--context`, `--kubeconfig`, `-o json|yaml`; exits
//! non-zero with a one-line reason on failure.

pub mod cluster;
pub mod commands;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use cluster::ClusterArg;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-ordinal",
    bin_name = "kubectl ordinal",
    version,
    about = "Day-2 operations on Ordinal clusters (RedisReplication, MySQLCluster)",
    after_help = "A cluster is NAME, or redis/NAME or mysql/NAME when both kinds could match."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection flags, as kubectl spells them.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Members, roles, lag, term, operation, last failover and last backup.
    Status(StatusArgs),
    /// Move the primary to member N (sets spec.primary) and wait for it.
    Switchover(SwitchoverArgs),
    /// Create a Backup of the cluster and follow it to completion.
    Backup(BackupArgs),
    /// Create a new cluster bootstrapped from a Succeeded Backup (spec.restore).
    Restore(RestoreArgs),
    /// How to connect: the Secret, the write and read Services, a command line.
    Credentials(CredentialsArgs),
    /// Stop the operator from changing the cluster (annotation ordinal.dev/paused).
    Pause(PauseArgs),
    /// Let the operator reconcile the cluster again.
    Resume(PauseArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A tree for people.
    #[default]
    Text,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// NAME, redis/NAME or mysql/NAME.
    pub cluster: ClusterArg,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    /// NAME, redis/NAME or mysql/NAME.
    pub cluster: ClusterArg,
    /// Ordinal of the member to promote.
    #[arg(long)]
    pub to: i32,
    /// How long to wait for the new primary (e.g. 90s, 5m).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Set spec.primary and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// NAME, redis/NAME or mysql/NAME.
    pub cluster: ClusterArg,
    /// Name of the Backup (default: <cluster>-<UTC time>).
    #[arg(long)]
    pub name: Option<String>,
    /// Back up to this PersistentVolumeClaim (in the cluster's namespace).
    #[arg(long, conflicts_with = "target_file")]
    pub pvc: Option<String>,
    /// Directory inside the PVC (with --pvc).
    #[arg(long, requires = "pvc")]
    pub path: Option<String>,
    /// A Backup target as YAML or JSON (`spec.target`: s3, gcs, azure or pvc); `-` reads stdin.
    #[arg(long)]
    pub target_file: Option<PathBuf>,
    /// Verify the backup by restoring it into a throwaway instance.
    #[arg(long)]
    pub verify: bool,
    /// How long to follow the Backup.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Create the Backup and return.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Name of the new cluster.
    pub name: String,
    /// The Succeeded Backup to restore.
    #[arg(long = "from")]
    pub backup: String,
    /// Members of the new cluster (default: as the backed-up cluster, else 1).
    #[arg(long)]
    pub replicas: Option<i32>,
    /// Print the new cluster's manifest and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the restored cluster to be Ready.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Create the cluster and return.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct CredentialsArgs {
    /// NAME, redis/NAME or mysql/NAME.
    pub cluster: ClusterArg,
    /// Print the passwords themselves (by default the commands read them from the Secret).
    #[arg(long)]
    pub show_passwords: bool,
    /// Cluster DNS domain of the Service names.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    /// NAME, redis/NAME or mysql/NAME.
    pub cluster: ClusterArg,
    /// How long to wait for the operator to confirm (condition Paused).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Set the annotation and return.
    #[arg(long)]
    pub no_wait: bool,
}

/// `90s`, `5m`, `1h30m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 90s or 5m: {e}"))
}

/// A client and the namespace to use, from the kubeconfig (or in-cluster).
pub async fn connect(global: &Global) -> anyhow::Result<(Client, String)> {
    crate::tls::ensure_crypto_provider();
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("use kubeconfig {}", path.display()))?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(kubeconfig_error) if global.context.is_none() => Config::incluster()
                .map_err(|_| kubeconfig_error)
                .context("no usable kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod")?,
            Err(e) => return Err(e).context("read the kubeconfig"),
        },
    };
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("build the Kubernetes client")?;
    Ok((client, namespace))
}

/// Run one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (client, ns) = connect(&cli.global).await?;
    let ctx = commands::Ctx {
        client,
        ns,
        global: cli.global,
    };
    match cli.command {
        Command::Status(a) => commands::status(&ctx, a).await,
        Command::Switchover(a) => commands::switchover(&ctx, a).await,
        Command::Backup(a) => commands::backup(&ctx, a).await,
        Command::Restore(a) => commands::restore(&ctx, a).await,
        Command::Credentials(a) => commands::credentials(&ctx, a).await,
        Command::Pause(a) => commands::pause(&ctx, a, true).await,
        Command::Resume(a) => commands::pause(&ctx, a, false).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-ordinal").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_flags_go_anywhere() {
        let cli = parse(&[
            "-n",
            "shop",
            "status",
            "redis/cache",
            "-o",
            "yaml",
            "--context",
            "prod",
        ])
        .expect("parse");
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        let Command::Status(s) = cli.command else {
            panic!("status expected");
        };
        assert_eq!(s.output, Output::Yaml);
        assert_eq!(s.cluster.kind, Some(cluster::Kind::Redis));
        let cli =
            parse(&["status", "db", "--namespace=x", "--kubeconfig", "/tmp/kc"]).expect("parse");
        assert_eq!(cli.global.namespace.as_deref(), Some("x"));
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert!(
            parse(&["status", "db", "-o", "wide"]).is_err(),
            "only text, json, yaml"
        );
    }

    #[test]
    fn switchover_needs_a_numeric_target() {
        let cli = parse(&["switchover", "cache", "--to", "2", "--timeout", "90s"]).expect("parse");
        let Command::Switchover(s) = cli.command else {
            panic!("switchover expected");
        };
        assert_eq!(
            (s.to, s.timeout, s.no_wait),
            (2, Duration::from_secs(90), false)
        );
        assert!(parse(&["switchover", "cache"]).is_err(), "--to is required");
        assert!(parse(&["switchover", "cache", "--to", "two"]).is_err());
        assert!(parse(&["switchover", "postgres/cache", "--to", "1"]).is_err());
    }

    #[test]
    fn backup_target_flags_exclude_each_other() {
        assert!(parse(&["backup", "cache", "--pvc", "b", "--target-file", "t.yaml"]).is_err());
        assert!(
            parse(&["backup", "cache", "--path", "x"]).is_err(),
            "--path needs --pvc"
        );
        let cli =
            parse(&["backup", "cache", "--pvc", "b", "--path", "x", "--verify"]).expect("parse");
        let Command::Backup(b) = cli.command else {
            panic!("backup expected");
        };
        assert_eq!(
            (b.pvc.as_deref(), b.path.as_deref(), b.verify),
            (Some("b"), Some("x"), true)
        );
        assert_eq!(b.timeout, Duration::from_secs(30 * 60));
    }

    #[test]
    fn restore_and_pause_arguments() {
        let cli = parse(&[
            "restore",
            "cache2",
            "--from",
            "cache-1",
            "--replicas",
            "2",
            "--dry-run",
        ])
        .expect("parse");
        let Command::Restore(r) = cli.command else {
            panic!("restore expected");
        };
        assert_eq!(
            (r.name.as_str(), r.backup.as_str(), r.replicas, r.dry_run),
            ("cache2", "cache-1", Some(2), true)
        );
        assert!(parse(&["restore", "cache2"]).is_err(), "--from is required");
        assert!(matches!(
            parse(&["pause", "mysql/db"]).expect("pause").command,
            Command::Pause(_)
        ));
        assert!(
            matches!(parse(&["resume", "db", "--no-wait"]).expect("resume").command, Command::Resume(p) if p.no_wait)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
