//! End-to-end harness: a private devcluster (real kube-apiserver, etcd,
//! controller-manager and the node agent), the operator as a host process
//! against it, and helpers to watch what happens. Everything is torn down on
//! drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use ordinal::api::{ClusterPhase, ClusterStatus};
use ordinal::controller::kinds::ClusterResource;

#[path = "patience.rs"]
#[allow(clippy::duplicate_mod)] // included by several support modules of one test
mod patience;
pub use patience::patient;

/// Directory of the built binaries (the test executable lives in `<dir>/deps`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub struct DevCluster {
    pub state: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    devcluster: PathBuf,
    operator: Option<Child>,
    operator_log: PathBuf,
    operator_runs: u32,
}

impl DevCluster {
    /// Bring up a fresh cluster with the CRDs installed and the operator
    /// running; its pods get addresses 127.0.<ip_block>.10 and up (loopback
    /// network) or 10.244.<ip_block>.10 and up (netns network), so suites
    /// (and a demo cluster) do not collide.
    pub fn up(ip_block: u8) -> DevCluster {
        let mut cluster = Self::up_without_operator(ip_block);
        cluster.start_operator();
        cluster
    }

    /// A fresh cluster with the CRDs installed and no operator.
    pub fn up_without_operator(ip_block: u8) -> DevCluster {
        Self::up_on(ip_block, None)
    }

    /// A fresh cluster on the netns network (pods in their own network
    /// namespaces, kube-proxy, ClusterIPs, partitions), whatever the default.
    pub fn up_netns_without_operator(ip_block: u8) -> DevCluster {
        Self::up_on(ip_block, Some("netns"))
    }

    /// `network`: `loopback` / `netns`, or None for devcluster's default
    /// (`ORDINAL_DEVCLUSTER_NETWORK`).
    fn up_on(ip_block: u8, network: Option<&str>) -> DevCluster {
        assert!(
            nix_is_root(),
            "the end-to-end tests run the devcluster, which needs root (mount namespaces)"
        );
        let devcluster = bin_dir().join("devcluster");
        if !devcluster.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "devcluster"])
                .status()
                .expect("cargo build -p devcluster");
            assert!(status.success(), "building devcluster failed");
        }
        let state = tempfile::Builder::new()
            .prefix("ordinal-e2e-")
            .tempdir_in("/var/tmp")
            .expect("state dir");
        let ordinal = env!("CARGO_BIN_EXE_ordinal");
        let mut up = Command::new(&devcluster);
        up.arg("up")
            .env("ORDINAL_DEVCLUSTER_DIR", state.path())
            .env("ORDINAL_BIN", ordinal)
            .env("ORDINAL_DEVCLUSTER_IP_BLOCK", ip_block.to_string())
            .stdin(Stdio::null());
        if let Some(n) = network {
            up.env("ORDINAL_DEVCLUSTER_NETWORK", n);
        }
        let out = up.output().expect("run devcluster up");
        assert!(
            out.status.success(),
            "devcluster up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = state.path().join("kubeconfig");
        let cluster = DevCluster {
            operator_log: state.path().join("operator.log"),
            state,
            kubeconfig,
            devcluster,
            operator: None,
            operator_runs: 0,
        };
        let crds = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/ordinal.dev.yaml"
        ))
        .expect("crds");
        cluster
            .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &crds)
            .expect("install CRDs");
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ])
            .expect("CRDs established");
        cluster
    }

    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// Does this cluster run the netns network (see devcluster/README.md)?
    pub fn netns(&self) -> bool {
        std::fs::read_to_string(self.state.path().join("network.json"))
            .is_ok_and(|t| t.contains("\"netns\""))
    }

    /// Run a `devcluster` subcommand against this cluster.
    pub fn devcluster(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.devcluster)
            .args(args)
            .env("ORDINAL_DEVCLUSTER_DIR", self.state.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .expect("run devcluster");
        result(out)
    }

    /// Run a command where the operator runs: in the cluster's node network
    /// namespace (netns network) with the cluster's DNS names in /etc/hosts
    /// and KUBECONFIG set (`devcluster run`).
    pub fn exec_in_netns(&self, argv: &[&str]) -> Result<String, String> {
        let mut args = vec!["run", "--"];
        args.extend_from_slice(argv);
        self.devcluster(&args)
    }

    /// Drop all traffic, both ways, between every member of `a` and every
    /// member of `b`: pod names in `ns`, `"operator"` (the operator process
    /// and everything else started through `devcluster run`) or `"host"`
    /// (this test process and the agent's probes). Established connections
    /// stall like in a real partition. Needs the netns network.
    pub fn partition(&self, ns: &str, a: &[&str], b: &[&str]) {
        let (a, b) = (a.join(","), b.join(","));
        if let Err(e) = self.devcluster(&["partition", "-n", ns, &a, &b]) {
            panic!("devcluster partition {a} {b}: {e}");
        }
    }

    /// Remove only the cut between `a` and `b` made by `partition(ns, a, b)`;
    /// other partitions stay.
    pub fn heal_between(&self, ns: &str, a: &[&str], b: &[&str]) {
        let (a, b) = (a.join(","), b.join(","));
        if let Err(e) = self.devcluster(&["heal", "-n", ns, &a, &b]) {
            panic!("devcluster heal {a} {b}: {e}");
        }
    }

    /// Remove every partition.
    pub fn heal(&self) {
        if let Err(e) = self.devcluster(&["heal"]) {
            panic!("devcluster heal: {e}");
        }
    }

    /// Start the operator as a host process that resolves cluster DNS names
    /// (through `devcluster run`, so with the netns network it runs in the
    /// cluster's node namespace and `partition(.., ["operator"], ..)` cuts it).
    pub fn start_operator(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        self.start_operator_with(&kubeconfig);
    }

    /// Start the operator against another kubeconfig (e.g. a proxy in front
    /// of the API server). Such a kubeconfig points at the host's loopback,
    /// which the cluster's network namespace does not share: the operator
    /// then stays in the host's network namespace (pods are reachable from it
    /// through the host routes).
    pub fn start_operator_with(&mut self, kubeconfig: &Path) {
        let host_network = if kubeconfig == self.kubeconfig {
            "0"
        } else {
            "1"
        };
        assert!(self.operator.is_none(), "operator already running");
        self.operator_runs += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.operator_log)
            .expect("operator log");
        let child = Command::new(&self.devcluster)
            .args(["run", "--"])
            .arg(env!("CARGO_BIN_EXE_ordinal"))
            .args(["run", "--http-addr", "127.0.0.1:0"])
            .env("ORDINAL_DEVCLUSTER_DIR", self.state.path())
            .env("KUBECONFIG", kubeconfig)
            .env("DEVCLUSTER_RUN_HOST_NETWORK", host_network)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start operator");
        self.operator = Some(child);
    }

    /// SIGKILL the operator (a crash), reaping it.
    pub fn kill_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            // `devcluster run` execs the operator in place, so this is the operator.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(&self.operator_log).unwrap_or_default()
    }

    pub async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("client config");
        ordinal::tls::ensure_crypto_provider();
        Client::try_from(config).expect("client")
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl");
        result(out)
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        result(child.wait_with_output().expect("kubectl output"))
    }

    /// PID of the process running a pod's database (listening on the pod IP).
    pub fn db_pid(&self, pattern: &str) -> Option<i32> {
        let out = Command::new("pgrep").args(["-f", pattern]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn signal(&self, pid: i32, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGCONT a process stopped with SIGSTOP, if it still runs: a hung
    /// primary is usually isolated by the operator before the failover (its
    /// pod deleted and gone, the process killed). True when it was running.
    pub fn resume_if_running(&self, pid: i32) -> bool {
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if alive {
            self.signal(pid, "CONT");
        }
        alive
    }

    /// What to print when a step fails.
    pub fn diagnostics(&self, ns: &str) -> String {
        let pods = self
            .kubectl(&[
                "-n",
                ns,
                "get",
                "pods",
                "-o",
                "wide",
                "-L",
                "ordinal.dev/role",
            ])
            .unwrap_or_else(|e| e);
        let events = self
            .kubectl(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"])
            .unwrap_or_else(|e| e);
        let events: String = events
            .lines()
            .filter(|l| !l.contains("EndpointSlice") && !l.contains("FailedToUpdateEndpoint"))
            .collect::<Vec<_>>()
            .join("\n");
        let log = self.operator_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!(
            "--- pods\n{pods}\n--- events\n{events}\n--- operator log (last 40 lines, newest first)\n{}",
            tail.join("\n")
        )
    }
}

fn result(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("ORDINAL_E2E_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.state, tempfile::tempdir().expect("tmp")).keep();
            eprintln!(
                "ORDINAL_E2E_KEEP: cluster left running, state in {}",
                kept.display()
            );
            return;
        }
        self.kill_operator();
        let _ = Command::new(&self.devcluster)
            .args(["down", "--wipe"])
            .env("ORDINAL_DEVCLUSTER_DIR", self.state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Poll `f` every 250 ms until it returns Some, or panic after `timeout`
/// (scaled by [`patient`]).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let timeout = patient(timeout);
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pods of a cluster with their role label and IP, by name.
pub async fn members(
    client: &Client,
    ns: &str,
    cluster: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out: Vec<_> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let role = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("ordinal.dev/role").cloned());
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
            (p.metadata.name.unwrap_or_default(), role, ip)
        })
        .collect();
    out.sort();
    out
}

pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> String {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api.get(name).await.expect("secret");
    String::from_utf8(s.data.expect("data")[key].0.clone()).expect("utf8")
}

/// Status of a cluster resource, when it has one.
pub async fn cluster_status<K: ClusterResource>(api: &Api<K>, name: &str) -> Option<ClusterStatus> {
    api.get(name)
        .await
        .ok()
        .and_then(|c| c.cluster_status().cloned())
}

/// Wait until a cluster is Running and Ready.
pub async fn wait_ready<K: ClusterResource>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
) -> ClusterStatus {
    eventually(what, timeout, || async {
        cluster_status(api, name).await.filter(|s| {
            s.phase == ClusterPhase::Running
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                && s.observed_generation.is_some()
        })
    })
    .await
}

/// The pod labelled primary (name, IP), when exactly one is and it is the
/// recorded primary.
pub async fn labelled_primary<K: ClusterResource>(
    client: &Client,
    api: &Api<K>,
    ns: &str,
    name: &str,
) -> Option<(String, String)> {
    let pods = members(client, ns, name).await;
    let primaries: Vec<_> = pods
        .iter()
        .filter(|(_, r, _)| r.as_deref() == Some("primary"))
        .collect();
    let recorded = cluster_status(api, name).await?.replication.primary?;
    match primaries.as_slice() {
        [(pod, _, Some(ip))] if *pod == format!("{name}-{recorded}") => {
            Some((pod.clone(), ip.clone()))
        }
        _ => None,
    }
}
