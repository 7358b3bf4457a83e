//! `devcluster`: a real single-machine Kubernetes for Ordinal's tests and demos.
//!
//! `up` starts etcd, kube-apiserver and kube-controller-manager (built from the
//! Kubernetes Go modules by `controlplane/build.sh`) plus the node agent, which
//! runs every pod's containers as host processes, on their own loopback IP or
//! (`--network netns`) in their own network namespaces.

mod agent;
mod cluster;
mod net;
mod podexec;
mod procs;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// State directory (certs, etcd data, logs, pod dirs, volumes).
    #[arg(long, global = true, env = "ORDINAL_DEVCLUSTER_DIR", default_value_os_t = default_state_dir())]
    state_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build (if needed) and start the control plane and the node agent.
    Up(cluster::UpArgs),
    /// Stop everything that `up` started, including pod processes.
    Down {
        /// Also delete the state directory (etcd data, volumes, certs).
        #[arg(long)]
        wipe: bool,
    },
    /// Show what runs.
    Status,
    /// Run the node agent in the foreground (`up` starts it for you).
    Agent(agent::AgentArgs),
    /// Run a host command that resolves the cluster's DNS names (pods,
    /// Services) through the agent's hosts file, with KUBECONFIG set, and
    /// (netns network) inside the cluster's node network namespace; e.g.
    /// `devcluster run -- cargo test --test e2e_redis`.
    Run {
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Drop all traffic between two groups (netns network only). A group is a
    /// comma-separated list of pod names (in --namespace, or `ns/pod`),
    /// `operator` (every `devcluster run` process, e.g. the operator) and
    /// `host` (processes in the host's network namespace, also the agent's
    /// probes). E.g. `devcluster partition -n demo redis-demo-0 operator,redis-demo-1`.
    Partition {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        a: String,
        b: String,
    },
    /// Remove all partitions, or (given two groups, as for `partition`)
    /// only the cut between those two groups.
    Heal {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(requires = "b")]
        a: Option<String>,
        b: Option<String>,
    },
    /// Internal: enter a pod's private mount namespace and exec a command.
    #[command(hide = true)]
    PodExec { spec: PathBuf },
}

/// A group of `partition` / `heal`: comma-separated names.
fn split(group: &str) -> Vec<String> {
    group
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn default_state_dir() -> PathBuf {
    cache_dir().join("devcluster")
}

/// `${ORDINAL_CACHE:-$HOME/.cache/ordinal}`
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORDINAL_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/ordinal")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Single-threaded on purpose: unshare(CLONE_NEWNS) needs it.
    match cli.cmd {
        Cmd::PodExec { spec } => return podexec::run(&spec),
        Cmd::Run { command } => return podexec::run_on_host(&cli.state_dir, command),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,hyper=warn,rustls=warn".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Up(args) => cluster::up(&cli.state_dir, &args),
            Cmd::Down { wipe } => cluster::down(&cli.state_dir, wipe),
            Cmd::Status => cluster::status(&cli.state_dir),
            Cmd::Partition { namespace, a, b } => {
                net::partition(&cli.state_dir, &namespace, &split(&a), &split(&b))
            }
            Cmd::Heal {
                namespace,
                a: Some(a),
                b: Some(b),
            } => net::heal_between(&cli.state_dir, &namespace, &split(&a), &split(&b)),
            Cmd::Heal { .. } => net::heal(&cli.state_dir),
            Cmd::Agent(args) => agent::run(&cli.state_dir, args).await,
            Cmd::PodExec { .. } | Cmd::Run { .. } => unreachable!("handled above"),
        }
    })
}
