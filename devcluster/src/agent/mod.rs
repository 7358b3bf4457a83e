//! The node agent: one Node, no scheduler, pods as host processes.
//!
//! A single reconcile loop (once a second) lists pods, services and endpoint
//! slices, binds unscheduled pods to the node, starts a worker task per pod
//! (see `pod.rs`), rewrites every pod's /etc/hosts, patches pod status,
//! provisions hostPath PVs for pending claims and keeps the node's heartbeat.

mod logs;
mod pod;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::NODE_NAME;
use crate::net::{self, Net};
use crate::procs::{self, ProcRef};
pub use pod::PodRt;

const SHIM_ENTRYPOINT: &str = include_str!("../../shims/docker-entrypoint.sh");
const STORAGE_CLASS: &str = "devcluster";
const PROVISIONER: &str = "devcluster.ordinal.dev/hostpath";

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The operator binary run for `*ordinal*` images and `ordinal` commands.
    #[arg(long, env = "ORDINAL_BIN")]
    pub ordinal_bin: Option<PathBuf>,
    /// Kubeconfig to use (default: `<state>/kubeconfig`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Stable pod-name → loopback-IP map, persisted in `<state>/ips.json`.
struct IpMap {
    path: PathBuf,
    map: BTreeMap<String, String>,
}

impl IpMap {
    fn load(path: PathBuf) -> IpMap {
        let map = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        IpMap { path, map }
    }

    fn get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }

    fn release(&mut self, key: &str) {
        if self.map.remove(key).is_some()
            && let Err(e) = self.save()
        {
            warn!("{e:#}");
        }
    }

    fn save(&self) -> Result<()> {
        std::fs::write(&self.path, serde_json::to_string_pretty(&self.map)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn allocate(&mut self, key: &str, net: &Net) -> Result<String> {
        if let Some(ip) = self.map.get(key) {
            return Ok(ip.clone());
        }
        let used: HashSet<&String> = self.map.values().collect();
        let ip = if net.netns() {
            net.pod_ips()
                .into_iter()
                .find(|ip| !used.contains(ip))
                .with_context(|| format!("out of pod addresses in {}", net.pod_cidr()))?
        } else {
            // Several clusters on one machine (e.g. parallel end-to-end
            // suites) take distinct blocks: 127.0.<block>.10 and up.
            (net.index..=255u8)
                .flat_map(|b| (10..=250u8).map(move |c| format!("127.0.{b}.{c}")))
                .find(|ip| !used.contains(ip))
                .context("out of loopback addresses")?
        };
        self.map.insert(key.to_owned(), ip.clone());
        self.save()?;
        Ok(ip)
    }
}

pub struct Agent {
    pub client: Client,
    pub state: PathBuf,
    pub node: String,
    pub shims: PathBuf,
    pub ordinal_bin: Option<PathBuf>,
    pub api_port: u16,
    pub kubelet_port: u16,
    pub exe: PathBuf,
    pub net: Net,
    ips: Mutex<IpMap>,
    /// The host's own /etc/hosts, kept at the top of `<state>/hosts`.
    host_hosts: String,
    /// Wakes the reconcile loop early (API events, container state changes).
    pub wake: tokio::sync::Notify,
}

/// Wake the reconcile loop on every change of `K` (it still runs every
/// second anyway; this only makes it react at once).
fn spawn_watch<K>(agent: &Arc<Agent>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let agent = agent.clone();
    tokio::spawn(async move {
        let api: Api<K> = Api::all(agent.client.clone());
        let mut events = kube::runtime::watcher(api, kube::runtime::watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(_) => agent.wake.notify_one(),
                Err(e) => tracing::debug!("watch: {e}"),
            }
        }
    });
}

impl Agent {
    pub fn pod_dir(&self, ns: &str, name: &str) -> PathBuf {
        self.state.join("pods").join(format!("{ns}_{name}"))
    }

    /// Where pods reach the API server: `(host, port)`.
    pub fn kubernetes_endpoint(&self) -> (String, u16) {
        if self.net.netns() {
            (self.net.kubernetes_ip(), 443)
        } else {
            ("127.0.0.1".into(), self.api_port)
        }
    }

    fn kubernetes_host(&self) -> String {
        self.kubernetes_endpoint().0
    }
}

/// With the netns network, pods and `devcluster run` processes reach the API
/// server through this proxy in the node namespace (on 127.0.0.1 and on the
/// address the `kubernetes` Service points at), which forwards to the API
/// server on the host's 127.0.0.1.
fn spawn_api_proxy(net: &Net, api_port: u16) -> Result<()> {
    for host in ["127.0.0.1".to_owned(), net.api_addr()] {
        let addr: std::net::SocketAddr = format!("{host}:{api_port}")
            .parse()
            .context("proxy address")?;
        let std_listener = net::listen_in(&net.node_ns_path(), addr)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!("API proxy on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                tokio::spawn(async move {
                    match tokio::net::TcpStream::connect(("127.0.0.1", api_port)).await {
                        Ok(mut outbound) => {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        Err(e) => warn!("API proxy: connecting to the API server: {e}"),
                    }
                });
            }
        });
        info!("API proxy on {addr} in {}", net.node_ns());
    }
    Ok(())
}

struct PodHandle {
    ns: String,
    name: String,
    ip: String,
    rt: Arc<Mutex<PodRt>>,
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
    stopping: bool,
    start_time: String,
    conditions: BTreeMap<&'static str, (bool, String)>,
    last_status: Option<Value>,
    last_hosts: String,
    /// StatefulSet pods keep their IP for the next pod of the same name.
    sticky_ip: bool,
}

/// What /etc/hosts files are made of.
#[derive(Default)]
struct DnsView {
    /// (namespace, hostname, subdomain, pod name, ip)
    pods: Vec<(String, String, Option<String>, String, String)>,
    /// (namespace, service, ip)
    services: Vec<(String, String, String)>,
}

fn render_hosts(view: &DnsView, ns: &str, own: &str, kubernetes_ip: &str) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut pods: Vec<_> = view.pods.iter().collect();
    // The pod's own entries first: the first match wins.
    pods.sort_by_key(|p| !(p.0 == ns && p.3 == own));
    for (pns, host, sub, _, ip) in pods {
        let mut names = Vec::new();
        if let Some(sub) = sub {
            names.push(format!("{host}.{sub}.{pns}.svc.cluster.local"));
            names.push(format!("{host}.{sub}.{pns}.svc"));
            names.push(format!("{host}.{sub}.{pns}"));
            if pns == ns {
                names.push(format!("{host}.{sub}"));
            }
        }
        if pns == ns {
            names.push(host.clone());
        }
        if !names.is_empty() {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    out.push_str(&format!(
        "{kubernetes_ip}\tkubernetes.default.svc.cluster.local kubernetes.default.svc kubernetes.default"
    ));
    out.push_str(if ns == "default" {
        " kubernetes\n"
    } else {
        "\n"
    });
    for (sns, svc, ip) in &view.services {
        let mut names = format!("{svc}.{sns}.svc.cluster.local {svc}.{sns}.svc {svc}.{sns}");
        if sns == ns {
            names.push(' ');
            names.push_str(svc);
        }
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading kubeconfig")?;
    Client::try_from(cfg).context("building client")
}

pub async fn run(state: &Path, args: AgentArgs) -> Result<()> {
    let state = std::fs::canonicalize(state).with_context(|| format!("{}", state.display()))?;
    let kubeconfig = args
        .kubeconfig
        .unwrap_or_else(|| crate::cluster::kubeconfig_path(&state));
    let client = client_for(&kubeconfig).await?;
    let ports = crate::cluster::load_ports(&state)?;
    let api_port = ports.apiserver;
    if ports.kubelet != 0 {
        let (state, port) = (state.clone(), ports.kubelet);
        tokio::spawn(async move {
            if let Err(e) = logs::serve(state, port).await {
                warn!("log endpoint (kubectl logs) disabled: {e:#}");
            }
        });
    }
    let shims = state.join("shims");
    std::fs::create_dir_all(&shims)?;
    write_shims(&shims, args.ordinal_bin.as_deref())?;
    for d in ["pods", "pv"] {
        std::fs::create_dir_all(state.join(d))?;
    }
    kill_leftovers(&state);
    let net = Net::load(&state);
    if net.netns() {
        spawn_api_proxy(&net, api_port)?;
    }
    let agent = Arc::new(Agent {
        client,
        node: NODE_NAME.to_owned(),
        shims,
        ordinal_bin: args.ordinal_bin,
        api_port,
        kubelet_port: ports.kubelet,
        exe: std::env::current_exe().context("locating devcluster binary")?,
        net,
        ips: Mutex::new(IpMap::load(state.join("ips.json"))),
        host_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        wake: tokio::sync::Notify::new(),
        state,
    });
    register_node(&agent).await?;
    ensure_storage_class(&agent).await?;
    info!("node {} registered; reconciling pods", agent.node);

    let mut pods: HashMap<String, PodHandle> = HashMap::new();
    let mut last_heartbeat = Instant::now();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    spawn_watch::<Pod>(&agent);
    spawn_watch::<PersistentVolumeClaim>(&agent);
    spawn_watch::<Service>(&agent);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_pass = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = agent.wake.notified() => {
                // Let a burst of events settle into one pass, at most 5/s.
                let wait = Duration::from_millis(200).saturating_sub(last_pass.elapsed());
                tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
            }
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        last_pass = Instant::now();
        if let Err(e) = reconcile(&agent, &mut pods).await {
            warn!("reconcile: {e:#}");
        }
        if let Err(e) = provision_volumes(&agent).await {
            warn!("provisioning volumes: {e:#}");
        }
        if let Err(e) = resize_volumes(&agent).await {
            warn!("resizing volumes: {e:#}");
        }
        if last_heartbeat.elapsed() >= Duration::from_secs(10) {
            match heartbeat(&agent).await {
                Ok(()) => last_heartbeat = Instant::now(),
                Err(e) => warn!("heartbeat: {e:#}"),
            }
        }
    }
    info!("stopping {} pods", pods.len());
    for h in pods.values() {
        let _ = h.stop.send(Some(Duration::from_secs(5)));
    }
    for (_, h) in pods.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(8), h.task).await;
    }
    Ok(())
}

fn write_shims(dir: &Path, ordinal_bin: Option<&Path>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let ep = dir.join("docker-entrypoint.sh");
    std::fs::write(&ep, SHIM_ENTRYPOINT).context("writing shim")?;
    std::fs::set_permissions(&ep, std::fs::Permissions::from_mode(0o755))?;
    let link = dir.join("ordinal");
    let _ = std::fs::remove_file(&link);
    if let Some(bin) = ordinal_bin {
        let bin = std::fs::canonicalize(bin)
            .with_context(|| format!("ordinal binary {}", bin.display()))?;
        std::os::unix::fs::symlink(bin, &link).context("linking ordinal")?;
    }
    Ok(())
}

/// Pod processes of an agent that died without stopping them.
fn kill_leftovers(state: &Path) {
    let Ok(pods) = std::fs::read_dir(state.join("pods")) else {
        return;
    };
    let mut left = Vec::new();
    for pod in pods.flatten() {
        let Ok(files) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_some_and(|e| e == "pid") {
                if let Some(p) = ProcRef::load(&path)
                    && p.alive()
                {
                    warn!(
                        "killing leftover pod process {} ({})",
                        p.pid,
                        path.display()
                    );
                    left.push(p);
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    procs::stop_groups(&left, Duration::from_secs(3));
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn node_status(agent: &Agent) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(8 * 1024 * 1024);
    let pods = if agent.net.netns() {
        agent.net.pod_ips().len()
    } else {
        250
    };
    let capacity = json!({"cpu": cpus.to_string(), "memory": format!("{mem_kib}Ki"), "pods": pods.to_string(),
        "ephemeral-storage": "100Gi"});
    let t = now();
    let cond = |ty: &str, status: &str, reason: &str| {
        json!({"type": ty, "status": status, "reason": reason,
        "message": reason, "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({
        "capacity": capacity, "allocatable": capacity,
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": agent.node}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.kubelet_port}},
        "nodeInfo": {"machineID": "devcluster", "systemUUID": "devcluster", "bootID": "devcluster",
            "kernelVersion": kernel_version(), "osImage": "devcluster host processes", "containerRuntimeVersion": "devcluster://0.1.0",
            "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    })
}

async fn register_node(agent: &Agent) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    if nodes.get_opt(&agent.node).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": agent.node, "labels": {
                "kubernetes.io/hostname": agent.node, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/devcluster": ""}},
            "spec": {},
        }))?;
        nodes
            .create(&PostParams::default(), &node)
            .await
            .context("creating node")?;
    }
    heartbeat(agent).await
}

async fn heartbeat(agent: &Agent) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    nodes
        .patch_status(
            &agent.node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": node_status(agent)})),
        )
        .await
        .context("updating node status")?;
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), "kube-node-lease");
    let spec =
        json!({"holderIdentity": agent.node, "leaseDurationSeconds": 40, "renewTime": now_micro()});
    if leases.get_opt(&agent.node).await?.is_some() {
        leases
            .patch(
                &agent.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await?;
    } else {
        let lease: Lease =
            serde_json::from_value(json!({"metadata": {"name": agent.node}, "spec": spec}))?;
        leases
            .create(&PostParams::default(), &lease)
            .await
            .context("creating node lease")?;
    }
    Ok(())
}

async fn ensure_storage_class(agent: &Agent) -> Result<()> {
    let api: Api<StorageClass> = Api::all(agent.client.clone());
    let existing = api.get_opt(STORAGE_CLASS).await?;
    // Older state dirs had Retain; the field is immutable.
    if existing
        .as_ref()
        .is_some_and(|sc| sc.reclaim_policy.as_deref() != Some("Delete"))
    {
        api.delete(STORAGE_CLASS, &DeleteParams::default()).await?;
    }
    if existing.is_none_or(|sc| sc.reclaim_policy.as_deref() != Some("Delete")) {
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": true,
        }))?;
        api.create(&PostParams::default(), &sc)
            .await
            .context("creating storage class")?;
    }
    Ok(())
}

/// Like a dynamic provisioner with reclaim policy Delete: when the claim of
/// one of our PVs is gone, remove its directory (unless another live PV uses
/// it, e.g. a new claim of the same name) and the PV.
async fn delete_released_volumes(agent: &Agent, pvs: &Api<PersistentVolume>) -> Result<()> {
    let all = pvs.list(&ListParams::default()).await?.items;
    let path_of = |pv: &PersistentVolume| {
        pv.spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
    };
    let phase_of = |pv: &PersistentVolume| {
        pv.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    for pv in &all {
        let ours = pv
            .annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str)
            == Some(PROVISIONER);
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        if !ours
            || policy != Some("Delete")
            || phase_of(pv) != "Released"
            || pv.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(path) = path_of(pv) {
            let shared = all.iter().any(|o| {
                o.name_any() != pv.name_any()
                    && path_of(o).as_ref() == Some(&path)
                    && phase_of(o) != "Released"
            });
            let p = PathBuf::from(&path);
            if !shared && p.starts_with(agent.state.join("pv")) && p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("deleting {path}"))?;
            }
        }
        pvs.delete(&pv.name_any(), &DeleteParams::default())
            .await
            .with_context(|| format!("deleting PV {}", pv.name_any()))?;
        info!("deleted released volume {}", pv.name_any());
    }
    Ok(())
}

/// Host directory backing a claim; the PV we create points at the same place.
pub fn claim_dir(state: &Path, ns: &str, claim: &str) -> PathBuf {
    state.join("pv").join(ns).join(claim)
}

async fn provision_volumes(agent: &Agent) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(agent.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(agent.client.clone());
    delete_released_volumes(agent, &pvs).await?;
    for pvc in claims.list(&ListParams::default()).await? {
        let pending = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending");
        let spec = pvc.spec.clone().unwrap_or_default();
        if !pending || spec.volume_name.is_some() || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (ns, name, uid) = (
            pvc.namespace().unwrap_or_default(),
            pvc.name_any(),
            pvc.uid().unwrap_or_default(),
        );
        let pv_name = format!("pvc-{uid}");
        if pvs.get_opt(&pv_name).await?.is_some() {
            continue;
        }
        let dir = claim_dir(&agent.state, &ns, &name);
        // A claim re-created under the same name (e.g. a member replaced)
        // starts empty: wait until the old claim's volume and directory are
        // deleted instead of sharing its data.
        if dir_in_use(&pvs, &dir).await? {
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".into());
        let modes = spec
            .access_modes
            .clone()
            .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size}, "accessModes": modes,
                "hostPath": {"path": dir.display().to_string(), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
                "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
                "persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Filesystem",
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [agent.node]}]}]}},
            },
        }))?;
        pvs.create(&PostParams::default(), &pv)
            .await
            .with_context(|| format!("creating PV for {ns}/{name}"))?;
        info!(
            "provisioned {pv_name} for claim {ns}/{name} at {}",
            dir.display()
        );
    }
    Ok(())
}

/// Whether a PV still points at a host directory.
async fn dir_in_use(pvs: &Api<PersistentVolume>, dir: &Path) -> Result<bool> {
    let dir = dir.display().to_string();
    Ok(pvs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.host_path.as_ref())
                .is_some_and(|h| h.path == dir)
        }))
}

/// The resizer of an expandable StorageClass: a bound claim asking for more
/// than its capacity gets it at once (a hostPath directory has no size), on
/// its PV and in the claim's `status.capacity`.
async fn resize_volumes(agent: &Agent) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(agent.client.clone());
    let pvs: Api<PersistentVolume> = Api::all(agent.client.clone());
    for pvc in claims.list(&ListParams::default()).await? {
        let requested = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .cloned();
        let status = pvc.status.clone().unwrap_or_default();
        let capacity = status
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .cloned();
        let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
        let (Some(requested), Some(capacity), Some(volume)) = (requested, capacity, volume) else {
            continue;
        };
        if status.phase.as_deref() != Some("Bound")
            || quantity_bytes(&requested.0) <= quantity_bytes(&capacity.0)
        {
            continue;
        }
        let size = json!({"storage": requested.0});
        pvs.patch(
            &volume,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"capacity": size}})),
        )
        .await
        .with_context(|| format!("resizing PV {volume}"))?;
        let ns = pvc.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(agent.client.clone(), &ns);
        api.patch_status(
            &pvc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"capacity": size}})),
        )
        .await
        .with_context(|| format!("resizing claim {ns}/{}", pvc.name_any()))?;
        info!("resized claim {ns}/{} to {}", pvc.name_any(), requested.0);
    }
    Ok(())
}

/// Bytes of a Kubernetes quantity (binary and decimal suffixes; enough for sizes).
fn quantity_bytes(q: &str) -> u128 {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().unwrap_or(0.0);
    let mult: f64 = match suffix {
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => 1.0,
    };
    (num * mult) as u128
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn dns_view(
    agent: &Agent,
    pods: &[Pod],
    services: &[Service],
    slices: &[EndpointSlice],
) -> DnsView {
    let mut view = DnsView::default();
    let Ok(ips) = agent.ips.lock() else {
        return view;
    };
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if p.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Succeeded" | "Failed"))
        {
            continue;
        }
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        let Some(ip) = ips.get(&format!("{ns}/{name}")) else {
            continue;
        };
        let spec = p.spec.as_ref();
        let host = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.clone());
        let sub = spec.and_then(|s| s.subdomain.clone());
        view.pods.push((ns, host, sub, name, ip));
    }
    // The API server rejects loopback addresses in Endpoints and
    // EndpointSlices, so the endpoints of Services with a selector are
    // computed here, from the pods' labels and Ready conditions.
    for svc in services {
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        if ns == "default" && name == "kubernetes" {
            continue;
        }
        let spec = svc.spec.clone().unwrap_or_default();
        // A real ClusterIP (kube-proxy routes it) when there is one.
        if agent.net.netns()
            && let Some(cip) = spec
                .cluster_ip
                .as_ref()
                .filter(|c| !c.is_empty() && *c != "None")
        {
            view.services.push((ns, name, cip.clone()));
            continue;
        }
        let mut ips: Vec<(String, String)> = match spec.selector.filter(|s| !s.is_empty()) {
            Some(sel) => {
                let not_ready_ok = spec.publish_not_ready_addresses == Some(true);
                pods.iter()
                    .filter(|p| {
                        p.namespace().as_deref() == Some(&ns)
                            && p.metadata.deletion_timestamp.is_none()
                    })
                    .filter(|p| sel.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
                    .filter(|p| not_ready_ok || pod_ready(p))
                    .filter_map(|p| {
                        Some((p.name_any(), ips.get(&format!("{ns}/{}", p.name_any()))?))
                    })
                    .collect()
            }
            None => slices
                .iter()
                .filter(|s| {
                    s.namespace().as_deref() == Some(&ns)
                        && s.labels().get("kubernetes.io/service-name") == Some(&name)
                })
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                .flat_map(|e| e.addresses.iter().map(|a| (a.clone(), a.clone())))
                .collect(),
        };
        ips.sort();
        if let Some((_, ip)) = ips.into_iter().next() {
            view.services.push((ns, name, ip));
        }
    }
    view
}

async fn reconcile(agent: &Arc<Agent>, handles: &mut HashMap<String, PodHandle>) -> Result<()> {
    let client = agent.client.clone();
    let all_pods: Api<Pod> = Api::all(client.clone());
    let pods = all_pods
        .list(&ListParams::default())
        .await
        .context("listing pods")?
        .items;
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let slices = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;

    // Like kube-scheduler's volume binding: a pod whose claim is being
    // deleted is not scheduled (the StatefulSet controller then creates a
    // fresh claim once the old one is gone).
    let deleting_claims: HashSet<String> = Api::<PersistentVolumeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    let claim_deleting = |p: &Pod| {
        let ns = p.namespace().unwrap_or_default();
        p.spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .any(|c| deleting_claims.contains(&format!("{ns}/{}", c.claim_name)))
    };
    // No scheduler: every pending pod goes to our node.
    for p in &pods {
        let spec = p.spec.as_ref();
        let unbound = spec.is_some_and(|s| s.node_name.is_none()) && !claim_deleting(p);
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if unbound && p.metadata.deletion_timestamp.is_none() && phase == "Pending" {
            let ns = p.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": p.name_any(), "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": agent.node}});
            match api
                .create_subresource::<_, Value>(
                    "binding",
                    &p.name_any(),
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => info!("bound {ns}/{} to {}", p.name_any(), agent.node),
                Err(e) => warn!("binding {ns}/{}: {e}", p.name_any()),
            }
        }
    }

    let ours: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(agent.node.as_str())
        })
        .collect();
    let live_uids: HashSet<String> = ours.iter().filter_map(|p| p.uid()).collect();

    // Start workers for new pods, allocating their IPs first, so that their
    // /etc/hosts is complete before their first process starts.
    let mut to_start = Vec::new();
    for p in &ours {
        let uid = p.uid().unwrap_or_default();
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if handles.contains_key(&uid)
            || p.metadata.deletion_timestamp.is_some()
            || phase == "Succeeded"
            || phase == "Failed"
        {
            continue;
        }
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        let ip = agent
            .ips
            .lock()
            .map_err(|_| anyhow::anyhow!("ip map lock poisoned"))?
            .allocate(&format!("{ns}/{name}"), &agent.net)?;
        // A new pod with the same name as an old one (StatefulSet) must not
        // start before the old one's processes are gone.
        if handles.values().any(|h| h.ns == ns && h.name == name) {
            continue;
        }
        to_start.push((*p, ns, name, ip));
    }
    let view = dns_view(agent, &pods, &services, &slices);
    for (p, ns, name, ip) in to_start {
        let uid = p.uid().unwrap_or_default();
        match pod::prepare_dir(agent, p) {
            Ok(()) => {}
            Err(e) => {
                warn!("preparing {ns}/{name}: {e:#}");
                continue;
            }
        }
        let hosts = render_hosts(&view, &ns, &name, &agent.kubernetes_host());
        if agent.net.netns()
            && let Err(e) = net::pod_up(&agent.net, &ip)
        {
            warn!("network of {ns}/{name}: {e:#}");
            continue;
        }
        let hosts_path = agent.pod_dir(&ns, &name).join("hosts");
        if let Err(e) = std::fs::write(&hosts_path, &hosts) {
            warn!("writing {}: {e}", hosts_path.display());
            continue;
        }
        let rt = Arc::new(Mutex::new(PodRt::new(p)));
        let (stop_tx, stop_rx) = watch::channel(None);
        let ctx = Arc::new(pod::PodCtx {
            agent: agent.clone(),
            pod: (*p).clone(),
            ns: ns.clone(),
            name: name.clone(),
            ip: ip.clone(),
            dir: agent.pod_dir(&ns, &name),
            rt: rt.clone(),
            stop: stop_rx,
        });
        info!("starting pod {ns}/{name} on {ip}");
        let task = tokio::spawn(pod::run_pod(ctx));
        let sticky_ip = p.owner_references().iter().any(|o| o.kind == "StatefulSet");
        handles.insert(
            uid,
            PodHandle {
                ns,
                name,
                ip,
                rt,
                stop: stop_tx,
                task,
                stopping: false,
                start_time: now(),
                conditions: BTreeMap::new(),
                last_status: None,
                last_hosts: hosts,
                sticky_ip,
            },
        );
    }

    // The host's view, for `devcluster run` (no namespace: full names only).
    let host_hosts = format!(
        "{}\n# devcluster\n{}",
        agent.host_hosts,
        render_hosts(&view, "", "", &agent.kubernetes_host())
    );
    let host_hosts_path = agent.state.join("hosts");
    if std::fs::read_to_string(&host_hosts_path).ok().as_deref() != Some(host_hosts.as_str())
        && let Err(e) = std::fs::write(&host_hosts_path, &host_hosts)
    {
        warn!("writing {}: {e}", host_hosts_path.display());
    }
    // /etc/hosts of every running pod.
    for h in handles.values_mut() {
        let hosts = render_hosts(&view, &h.ns, &h.name, &agent.kubernetes_host());
        if hosts != h.last_hosts {
            let path = agent.pod_dir(&h.ns, &h.name).join("hosts");
            // In place: the file is bind-mounted, a rename would not be seen.
            match std::fs::write(&path, &hosts) {
                Ok(()) => h.last_hosts = hosts,
                Err(e) => warn!("writing {}: {e}", path.display()),
            }
        }
    }

    // Deletions: graceful stop, then remove the object.
    let by_uid: HashMap<String, &Pod> = ours
        .iter()
        .filter_map(|p| p.uid().map(|u| (u, *p)))
        .collect();
    let mut finished = Vec::new();
    for (uid, h) in handles.iter_mut() {
        let pod = by_uid.get(uid);
        let deleting = pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        if !deleting {
            continue;
        }
        if !h.stopping {
            let grace = pod
                .and_then(|p| p.metadata.deletion_grace_period_seconds)
                .or_else(|| pod.and_then(|p| p.spec.as_ref()?.termination_grace_period_seconds))
                .unwrap_or(30);
            let grace = if pod.is_none() { 2 } else { grace.max(0) };
            info!("stopping pod {}/{} (grace {grace}s)", h.ns, h.name);
            let _ = h
                .stop
                .send(Some(Duration::from_secs(u64::try_from(grace).unwrap_or(0))));
            h.stopping = true;
        }
        if h.task.is_finished() {
            finished.push(uid.clone());
        }
    }
    let mut deleted = HashSet::new();
    for uid in finished {
        let Some(h) = handles.remove(&uid) else {
            continue;
        };
        deleted.insert(uid.clone());
        net::pod_down(&agent.net, &h.ip);
        if !h.sticky_ip
            && let Ok(mut ips) = agent.ips.lock()
        {
            ips.release(&format!("{}/{}", h.ns, h.name));
        }
        if live_uids.contains(&uid) {
            let api: Api<Pod> = Api::namespaced(client.clone(), &h.ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&h.name, &dp).await {
                Ok(_) => info!("deleted pod {}/{}", h.ns, h.name),
                Err(e) => warn!("deleting pod {}/{}: {e}", h.ns, h.name),
            }
        }
    }
    // Pods being deleted that we never ran.
    for p in &ours {
        let uid = p.uid().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some()
            && !handles.contains_key(&uid)
            && !deleted.contains(&uid)
        {
            let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&p.name_any(), &dp).await {
                warn!("deleting pod {}: {e}", p.name_any());
            }
        }
    }

    // Status.
    for (uid, h) in handles.iter_mut() {
        if h.stopping || !live_uids.contains(uid) {
            continue;
        }
        let status = pod_status(h);
        if h.last_status.as_ref() == Some(&status) {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &h.ns);
        match api
            .patch_status(
                &h.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => h.last_status = Some(status),
            Err(e) => warn!("status of {}/{}: {e}", h.ns, h.name),
        }
    }
    Ok(())
}

fn pod_status(h: &mut PodHandle) -> Value {
    let rt = match h.rt.lock() {
        Ok(rt) => rt.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let all_ready = !rt.ctrs.is_empty() && rt.ctrs.iter().all(pod::CtrRt::ready);
    let t = now();
    let mut conds = Vec::new();
    for (ty, ok) in [
        ("PodScheduled", true),
        ("Initialized", rt.initialized),
        ("ContainersReady", all_ready),
        ("Ready", all_ready),
    ] {
        let entry = h.conditions.entry(ty).or_insert_with(|| (ok, t.clone()));
        if entry.0 != ok {
            *entry = (ok, t.clone());
        }
        conds.push(
            json!({"type": ty, "status": if ok { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": entry.1}),
        );
    }
    let mut status = json!({
        "phase": rt.phase,
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": h.ip, "podIPs": [{"ip": h.ip}],
        "startTime": h.start_time,
        "conditions": conds,
        "containerStatuses": rt.ctrs.iter().map(pod::CtrRt::to_json).collect::<Vec<_>>(),
    });
    if !rt.init.is_empty() {
        status["initContainerStatuses"] = rt.init.iter().map(pod::CtrRt::to_json).collect();
    }
    if let Some(m) = &rt.message {
        status["message"] = json!(m);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_across_suffixes() {
        assert_eq!(quantity_bytes("1Gi"), 1 << 30);
        assert!(quantity_bytes("2Gi") > quantity_bytes("1Gi"));
        assert!(quantity_bytes("1500Mi") > quantity_bytes("1Gi"));
        assert!(quantity_bytes("1G") < quantity_bytes("1Gi"));
        assert_eq!(quantity_bytes("512"), 512);
    }

    #[test]
    fn hosts_put_own_pod_first_and_add_short_names() {
        let view = DnsView {
            pods: vec![
                (
                    "db".into(),
                    "r-0".into(),
                    Some("r".into()),
                    "r-0".into(),
                    "127.0.0.10".into(),
                ),
                (
                    "db".into(),
                    "r-1".into(),
                    Some("r".into()),
                    "r-1".into(),
                    "127.0.0.11".into(),
                ),
                (
                    "other".into(),
                    "x".into(),
                    None,
                    "x".into(),
                    "127.0.0.12".into(),
                ),
            ],
            services: vec![("db".into(), "r-primary".into(), "127.0.0.11".into())],
        };
        let hosts = render_hosts(&view, "db", "r-1", "127.0.0.1");
        let lines: Vec<&str> = hosts.lines().collect();
        assert!(
            lines[2].starts_with("127.0.0.11\tr-1.r.db.svc.cluster.local"),
            "{hosts}"
        );
        assert!(
            hosts.contains(
                "127.0.0.10\tr-0.r.db.svc.cluster.local r-0.r.db.svc r-0.r.db r-0.r r-0\n"
            )
        );
        assert!(
            hosts.contains(
                "r-primary.db.svc.cluster.local r-primary.db.svc r-primary.db r-primary\n"
            )
        );
        assert!(
            !hosts.contains("127.0.0.12"),
            "pods of other namespaces without subdomain have no name"
        );
    }

    #[test]
    fn ip_map_is_stable() {
        let dir = std::env::temp_dir().join(format!("devcluster-ipmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = IpMap::load(dir.join("ips.json"));
        let net = Net::load(&dir);
        let a = m.allocate("ns/a", &net).unwrap();
        let b = m.allocate("ns/b", &net).unwrap();
        assert_eq!(a, "127.0.0.10");
        assert_eq!(b, "127.0.0.11");
        let m2 = IpMap::load(dir.join("ips.json"));
        assert_eq!(m2.get("ns/b").as_deref(), Some("127.0.0.11"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
