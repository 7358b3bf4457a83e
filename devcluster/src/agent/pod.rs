//! One pod: its directories and volumes, its init containers and containers
//! as host processes (via `devcluster pod-exec`), probes and restarts.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Probe, Secret,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Agent, now};
use crate::podexec::{ExecSpec, Mount};
use crate::procs::{self, ProcRef};

const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the worker reports; the reconcile loop turns it into pod status.
#[derive(Debug, Clone)]
pub struct PodRt {
    pub phase: &'static str,
    pub initialized: bool,
    pub message: Option<String>,
    pub init: Vec<CtrRt>,
    pub ctrs: Vec<CtrRt>,
}

#[derive(Debug, Clone)]
pub struct CtrRt {
    name: String,
    image: String,
    state: Value,
    last_state: Value,
    ready: bool,
    started: bool,
    restarts: i32,
    id: Option<String>,
}

impl CtrRt {
    fn new(c: &Container, reason: &str) -> CtrRt {
        CtrRt {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: json!({"waiting": {"reason": reason}}),
            last_state: json!({}),
            ready: false,
            started: false,
            restarts: 0,
            id: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name, "image": self.image, "imageID": "",
            "state": self.state, "lastState": self.last_state,
            "ready": self.ready, "started": self.started, "restartCount": self.restarts,
        });
        if let Some(id) = &self.id {
            v["containerID"] = json!(id);
        }
        v
    }

    pub fn ready(&self) -> bool {
        self.ready
    }
}

impl PodRt {
    pub fn new(pod: &Pod) -> PodRt {
        let spec = pod.spec.clone().unwrap_or_default();
        let init = spec.init_containers.unwrap_or_default();
        let init_reason = "PodInitializing";
        PodRt {
            phase: "Pending",
            initialized: init.is_empty(),
            message: None,
            init: init
                .iter()
                .map(|c| CtrRt::new(c, "ContainerCreating"))
                .collect(),
            ctrs: spec
                .containers
                .iter()
                .map(|c| {
                    CtrRt::new(
                        c,
                        if init.is_empty() {
                            "ContainerCreating"
                        } else {
                            init_reason
                        },
                    )
                })
                .collect(),
        }
    }
}

pub struct PodCtx {
    pub agent: Arc<Agent>,
    pub pod: Pod,
    pub ns: String,
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    pub rt: Arc<Mutex<PodRt>>,
    pub stop: watch::Receiver<Option<Duration>>,
}

impl PodCtx {
    fn update(&self, f: impl FnOnce(&mut PodRt)) {
        match self.rt.lock() {
            Ok(mut rt) => f(&mut rt),
            Err(p) => f(&mut p.into_inner()),
        }
        self.agent.wake.notify_one();
    }

    fn ctr(&self, init: bool, idx: usize, f: impl FnOnce(&mut CtrRt)) {
        self.update(|rt| {
            let list = if init { &mut rt.init } else { &mut rt.ctrs };
            if let Some(c) = list.get_mut(idx) {
                f(c);
            }
        });
    }

    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Sleep, unless asked to stop first; true when asked to stop.
    async fn sleep_or_stop(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        if stop.borrow().is_some() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping().is_some(),
            _ = stop.changed() => true,
        }
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }
}

/// Fresh per-pod directories when the pod object is new (a StatefulSet pod
/// recreated under the same name starts with empty emptyDirs, /tmp and /run).
pub fn prepare_dir(agent: &Agent, pod: &Pod) -> Result<()> {
    let dir = agent.pod_dir(&pod.namespace().unwrap_or_default(), &pod.name_any());
    let uid = pod.uid().unwrap_or_default();
    let uid_file = dir.join("uid");
    if std::fs::read_to_string(&uid_file).ok().as_deref() != Some(uid.as_str()) {
        for sub in ["tmp", "run", "volumes"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    for sub in ["tmp", "run/mysqld", "volumes"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}/{sub}", dir.display()))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    if !dir.join("hosts").exists() {
        std::fs::write(dir.join("hosts"), "127.0.0.1\tlocalhost\n")?;
    }
    // netns: there is no DNS server (names come from /etc/hosts), and the
    // host's resolver is out of reach; a lookup must fail at once instead of
    // timing out (MariaDB resolves every client's address on connect).
    std::fs::write(
        dir.join("resolv.conf"),
        "# devcluster: no DNS server, names are in /etc/hosts\n\
         nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )?;
    std::fs::write(&uid_file, &uid)?;
    Ok(())
}

pub async fn run_pod(ctx: Arc<PodCtx>) {
    if let Err(e) = run_pod_inner(&ctx).await {
        warn!("pod {}/{}: {e:#}", ctx.ns, ctx.name);
        ctx.update(|rt| rt.message = Some(format!("{e:#}")));
    }
}

async fn run_pod_inner(ctx: &Arc<PodCtx>) -> Result<()> {
    let spec = ctx.pod.spec.clone().unwrap_or_default();
    let vols = loop {
        match prepare_volumes(ctx).await {
            Ok(v) => break Arc::new(v),
            Err(e) => {
                ctx.update(|rt| rt.message = Some(format!("{e:#}")));
                if ctx.sleep_or_stop(Duration::from_secs(2)).await {
                    return Ok(());
                }
            }
        }
    };
    ctx.update(|rt| rt.message = None);
    info!("pod {}/{}: volumes ready", ctx.ns, ctx.name);
    // Like the kubelet, follow ConfigMap/Secret changes while the pod runs.
    let refresher = {
        let (ctx, vols) = (ctx.clone(), vols.clone());
        tokio::spawn(async move {
            while !ctx.sleep_or_stop(Duration::from_secs(5)).await {
                refresh_volumes(&ctx, &vols).await;
            }
        })
    };
    let res = run_containers(ctx, &spec, &vols).await;
    refresher.abort();
    res
}

async fn run_containers(
    ctx: &Arc<PodCtx>,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    vols: &Arc<Volumes>,
) -> Result<()> {
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let mut backoff = Duration::from_secs(1);
        loop {
            match run_process(ctx, c, true, i, vols).await {
                Outcome::Stopped => return Ok(()),
                Outcome::Exited(0, _) => break,
                Outcome::Exited(code, _) => {
                    if ctx.restart_policy() == "Never" {
                        ctx.update(|rt| {
                            rt.phase = "Failed";
                            rt.message =
                                Some(format!("init container {} exited with {code}", c.name));
                        });
                        return Ok(());
                    }
                    ctx.ctr(true, i, |s| s.restarts += 1);
                    if ctx.sleep_or_stop(backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(20));
                }
            }
        }
    }
    ctx.update(|rt| rt.initialized = true);

    let tasks: Vec<_> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(container_loop(ctx.clone(), i, c.clone(), vols.clone())))
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap_or(Some(1)));
    }
    if ctx.stopping().is_none() {
        let ok = codes.iter().all(|c| *c == Some(0));
        ctx.update(|rt| rt.phase = if ok { "Succeeded" } else { "Failed" });
    }
    Ok(())
}

/// Runs one container with restarts; its final exit code, or None if stopped.
async fn container_loop(
    ctx: Arc<PodCtx>,
    idx: usize,
    c: Container,
    vols: Arc<Volumes>,
) -> Option<i32> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match run_process(&ctx, &c, false, idx, &vols).await {
            Outcome::Stopped => return None,
            Outcome::Exited(code, ran) => {
                let restart = match ctx.restart_policy() {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => true,
                };
                if !restart {
                    return Some(code);
                }
                if ran > Duration::from_secs(10) {
                    backoff = Duration::from_secs(1);
                }
                ctx.ctr(false, idx, |s| {
                    s.restarts += 1;
                    s.last_state = std::mem::replace(&mut s.state, json!({}));
                    let reason = if backoff > Duration::from_secs(1) {
                        "CrashLoopBackOff"
                    } else {
                        "ContainerCreating"
                    };
                    s.state = json!({"waiting": {"reason": reason}});
                });
                info!(
                    "pod {}/{}: container {} exited with {code}; restarting in {backoff:?}",
                    ctx.ns, ctx.name, c.name
                );
                if ctx.sleep_or_stop(backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(Duration::from_secs(20));
            }
        }
    }
}

enum Outcome {
    /// Exit code (128+signal when killed) and how long it ran.
    Exited(i32, Duration),
    Stopped,
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn run_process(
    ctx: &Arc<PodCtx>,
    c: &Container,
    init: bool,
    idx: usize,
    vols: &Volumes,
) -> Outcome {
    match run_process_inner(ctx, c, init, idx, vols).await {
        Ok(o) => o,
        Err(e) => {
            warn!("pod {}/{}: container {}: {e:#}", ctx.ns, ctx.name, c.name);
            let t = now();
            ctx.ctr(init, idx, |s| {
                s.state = json!({"terminated": {"exitCode": 128, "reason": "StartError",
                    "message": format!("{e:#}"), "startedAt": t, "finishedAt": t}});
            });
            Outcome::Exited(128, Duration::ZERO)
        }
    }
}

async fn run_process_inner(
    ctx: &Arc<PodCtx>,
    c: &Container,
    init: bool,
    idx: usize,
    vols: &Volumes,
) -> Result<Outcome> {
    if ctx.stopping().is_some() {
        return Ok(Outcome::Stopped);
    }
    refresh_volumes(ctx, vols).await;
    let env = build_env(ctx, c).await?;
    let argv = resolve_command(ctx, c, &env)?;
    let spec = exec_spec(ctx, c, vols, argv.clone(), env.clone())?;
    // A fresh termination log per run, read back when the process exits.
    std::fs::write(termination_log(ctx, c), b"")?;
    let spec_path = ctx.dir.join(format!("{}.exec.json", c.name));
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    let log_path = ctx.dir.join(format!("{}.log", c.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = tokio::process::Command::new(&ctx.agent.exe)
        .arg("pod-exec")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("spawning pod-exec")?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .context("child pid")?;
    let pid_file = ctx.dir.join(format!("{}.pid", c.name));
    if let Some(p) = ProcRef::of(pid) {
        p.save(&pid_file)?;
    }
    let started_at = now();
    let start = Instant::now();
    info!(
        "pod {}/{}: started {} (pid {pid}): {}",
        ctx.ns,
        ctx.name,
        c.name,
        argv.join(" ")
    );
    let has_startup = !init && c.startup_probe.is_some();
    let has_readiness = !init && c.readiness_probe.is_some();
    ctx.ctr(init, idx, |s| {
        s.state = json!({"running": {"startedAt": started_at}});
        s.id = Some(format!("devcluster://{pid}"));
        s.started = !has_startup;
        s.ready = !init && !has_readiness && !has_startup;
    });
    ctx.update(|rt| {
        if !init && rt.phase == "Pending" {
            rt.phase = "Running";
        }
    });

    let mut startup = (!init)
        .then(|| c.startup_probe.clone())
        .flatten()
        .map(ProbeState::new);
    let mut readiness = (!init)
        .then(|| c.readiness_probe.clone())
        .flatten()
        .map(ProbeState::new);
    let mut liveness = (!init)
        .then(|| c.liveness_probe.clone())
        .flatten()
        .map(ProbeState::new);
    let mut stop = ctx.stop.clone();
    let mut killed_by_probe = false;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.context("waiting for container")?,
            _ = stop.changed() => {
                let grace = ctx.stopping().unwrap_or(Duration::ZERO);
                terminate(&mut child, pid, grace).await;
                let _ = std::fs::remove_file(&pid_file);
                let t = now();
                ctx.ctr(init, idx, |s| {
                    s.ready = false;
                    s.state = json!({"terminated": {"exitCode": 143, "reason": "Killed",
                        "startedAt": started_at, "finishedAt": t}});
                });
                return Ok(Outcome::Stopped);
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let started = startup.as_ref().is_none_or(|p| p.ok);
                if let Some(p) = startup.as_mut().filter(|p| !p.ok)
                    && let Some(res) = p.run_if_due(ctx, c, vols, &env, start).await {
                        if res { ctx.ctr(init, idx, |s| { s.started = true; s.ready = readiness.is_none(); }); }
                        else if p.failures >= p.failure_threshold {
                            warn!("pod {}/{}: {} failed its startup probe", ctx.ns, ctx.name, c.name);
                            killed_by_probe = true;
                        }
                    }
                if started {
                    if let Some(p) = readiness.as_mut()
                        && p.run_if_due(ctx, c, vols, &env, start).await.is_some() {
                            let ready = p.ok;
                            ctx.ctr(init, idx, |s| s.ready = ready);
                        }
                    if let Some(p) = liveness.as_mut()
                        && p.run_if_due(ctx, c, vols, &env, start).await == Some(false) && p.failures >= p.failure_threshold {
                            warn!("pod {}/{}: {} failed its liveness probe", ctx.ns, ctx.name, c.name);
                            killed_by_probe = true;
                        }
                }
                if killed_by_probe {
                    ctx.ctr(init, idx, |s| s.ready = false);
                    terminate(&mut child, pid, ctx.grace()).await;
                    // child.wait() in the next round returns at once.
                }
            }
        }
    };
    // Leftovers of the container's process group (e.g. a shim's helpers).
    procs::signal_group(pid, libc::SIGKILL);
    let _ = std::fs::remove_file(&pid_file);
    let code = exit_code(status);
    let t = now();
    let reason = if code == 0 { "Completed" } else { "Error" };
    info!("pod {}/{}: {} exited with {code}", ctx.ns, ctx.name, c.name);
    let message = termination_message(ctx, c, code);
    ctx.ctr(init, idx, |s| {
        s.ready = false;
        let mut state = json!({"exitCode": code, "reason": reason, "startedAt": started_at,
            "finishedAt": t, "containerID": format!("devcluster://{pid}")});
        if let Some(m) = &message {
            state["message"] = json!(m);
        }
        s.state = json!({"terminated": state});
    });
    Ok(Outcome::Exited(code, start.elapsed()))
}

/// SIGTERM the container's process group, SIGKILL it after `grace`.
async fn terminate(child: &mut tokio::process::Child, pid: i32, grace: Duration) {
    procs::signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        procs::signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    procs::signal_group(pid, libc::SIGKILL);
}

struct ProbeState {
    probe: Probe,
    next: Duration,
    ok: bool,
    successes: i32,
    failures: i32,
    failure_threshold: i32,
}

impl ProbeState {
    fn new(probe: Probe) -> ProbeState {
        let delay = probe.initial_delay_seconds.unwrap_or(0);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        ProbeState {
            next: Duration::from_secs(u64::try_from(delay).unwrap_or(0)),
            probe,
            ok: false,
            successes: 0,
            failures: 0,
            failure_threshold,
        }
    }

    /// Runs the probe when due; Some(result of this run).
    async fn run_if_due(
        &mut self,
        ctx: &Arc<PodCtx>,
        c: &Container,
        vols: &Volumes,
        env: &[(String, String)],
        start: Instant,
    ) -> Option<bool> {
        if start.elapsed() < self.next {
            return None;
        }
        let period = u64::try_from(self.probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10);
        self.next = start.elapsed() + Duration::from_secs(period);
        let timeout = Duration::from_secs(
            u64::try_from(self.probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1),
        );
        let res =
            match tokio::time::timeout(timeout, probe_once(ctx, c, vols, env, &self.probe)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!("probe of {}: {e:#}", c.name);
                    false
                }
                Err(_) => false,
            };
        if res {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.ok = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold {
                self.ok = false;
            }
        }
        Some(res)
    }
}

fn probe_port(c: &Container, port: &IntOrString) -> Result<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).context("port out of range"),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .with_context(|| format!("no port named {name}")),
    }
}

async fn probe_once(
    ctx: &Arc<PodCtx>,
    c: &Container,
    vols: &Volumes,
    env: &[(String, String)],
    probe: &Probe,
) -> Result<bool> {
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        let argv = host_argv(ctx, argv, env);
        let env = env.to_vec();
        let spec = exec_spec(ctx, c, vols, argv, env)?;
        let path = ctx.dir.join(format!("{}.probe.json", c.name));
        std::fs::write(&path, serde_json::to_vec(&spec)?)?;
        let log_path = ctx.dir.join(format!("{}.probe.log", c.name));
        let log = std::fs::File::create(&log_path)?;
        let mut child = tokio::process::Command::new(&ctx.agent.exe)
            .arg("pod-exec")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        // Dropped on timeout: kill_on_drop kills the leader, this the group.
        let _guard = GroupGuard(pid);
        return Ok(child.wait().await?.success());
    }
    let host = |h: &Option<String>| {
        h.clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| ctx.ip.clone())
    };
    if let Some(tcp) = &probe.tcp_socket {
        let port = probe_port(c, &tcp.port)?;
        tokio::net::TcpStream::connect((host(&tcp.host).as_str(), port)).await?;
        return Ok(true);
    }
    if let Some(http) = &probe.http_get {
        let port = probe_port(c, &http.port)?;
        let mut s = tokio::net::TcpStream::connect((host(&http.host).as_str(), port)).await?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", ctx.ip).as_bytes())
            .await?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await?;
        let line = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        return Ok((200..400).contains(&code));
    }
    if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port).context("port")?;
        tokio::net::TcpStream::connect((ctx.ip.as_str(), port)).await?;
        return Ok(true);
    }
    bail!("probe without a handler")
}

struct GroupGuard(i32);
impl Drop for GroupGuard {
    fn drop(&mut self) {
        procs::signal_group(self.0, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------- volumes

/// Host directory (or file) of each volume, by volume name.
#[derive(Debug, Default)]
pub struct Volumes {
    dirs: HashMap<String, PathBuf>,
    /// Volumes whose content comes from the API and is refreshed.
    generated: Vec<String>,
}

type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Write `files` into `dir` in place (the directory may be bind-mounted into
/// running processes, so it is never replaced), removing stale files.
fn sync_dir(dir: &Path, files: &Files) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut wanted = std::collections::HashSet::new();
    for (rel, (data, mode)) in files {
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            bail!("bad volume path {rel}");
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&path).ok().as_deref() != Some(data.as_slice()) {
            std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
        wanted.insert(path);
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let p = entry.path();
        if p.is_file() && !wanted.contains(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

fn key_items(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    default_mode: u32,
    what: &str,
) -> Result<Files> {
    let mut out = Files::new();
    match items {
        Some(items) => {
            for it in items {
                let v = data
                    .get(&it.key)
                    .with_context(|| format!("{what} has no key {}", it.key))?;
                let mode = it
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode);
                out.insert(it.path.clone(), (v.clone(), mode));
            }
        }
        None => {
            for (k, v) in data {
                out.insert(k, (v, default_mode));
            }
        }
    }
    Ok(out)
}

async fn configmap_data(ctx: &PodCtx, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.agent.client.clone(), &ctx.ns);
    Ok(api.get_opt(name).await?.map(|cm| {
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        out.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        out
    }))
}

async fn secret_data(ctx: &PodCtx, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(ctx.agent.client.clone(), &ctx.ns);
    Ok(api.get_opt(name).await?.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}

fn field_value(ctx: &PodCtx, path: &str) -> Result<String> {
    let m = &ctx.pod.metadata;
    let spec = ctx.pod.spec.as_ref();
    let map_line = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    let sub = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']"));
    Ok(match path {
        "metadata.name" => ctx.name.clone(),
        "metadata.namespace" => ctx.ns.clone(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_line(m.labels.as_ref().unwrap_or(&BTreeMap::new())),
        "metadata.annotations" => map_line(m.annotations.as_ref().unwrap_or(&BTreeMap::new())),
        "spec.nodeName" => ctx.agent.node.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ctx.ip.clone(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".into(),
        _ => {
            if let Some(k) = sub("metadata.labels['") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = sub("metadata.annotations['") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                bail!("unsupported fieldRef {path}")
            }
        }
    })
}

/// A resource quantity ("64Mi", "100m", "1.5", "2G") as a number.
fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

/// `resourceFieldRef`: the container's request or limit divided by `divisor`,
/// rounded up like the kubelet does; node capacity when unset.
fn resource_value(c: Option<&Container>, resource: &str, divisor: Option<&str>) -> String {
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let r = c.and_then(|c| c.resources.as_ref());
    let set = match kind {
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => r.and_then(|r| r.limits.as_ref()),
    }
    .and_then(|m| m.get(name))
    .and_then(|q| parse_quantity(&q.0));
    let fallback = match name {
        "cpu" => std::thread::available_parallelism().map_or(2.0, |n| n.get() as f64),
        _ => 8.0 * 1024f64.powi(3),
    };
    let value = set.unwrap_or(fallback);
    let divisor = divisor
        .and_then(parse_quantity)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    format!("{}", (value / divisor).ceil() as i64)
}

async fn service_account_token(
    ctx: &PodCtx,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String> {
    let sa = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.agent.client.clone(), &ctx.ns);
    let req: TokenRequest = serde_json::from_value(json!({
        "spec": {
            "audiences": audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            "expirationSeconds": expiration.unwrap_or(3600).max(86400),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": ctx.name, "uid": ctx.pod.uid()},
        }
    }))?;
    let tr = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for service account {sa}"))?;
    Ok(tr.status.map(|s| s.token).unwrap_or_default())
}

/// Content of an API-backed volume; None for other kinds.
async fn generated_files(
    ctx: &PodCtx,
    v: &k8s_openapi::api::core::v1::Volume,
    with_tokens: bool,
) -> Result<Option<Files>> {
    let mode = |m: Option<i32>| m.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644);
    if let Some(cm) = &v.config_map {
        let data = configmap_data(ctx, &cm.name).await?;
        let Some(data) = data else {
            if cm.optional == Some(true) {
                return Ok(Some(Files::new()));
            }
            bail!("configmap {} not found", cm.name);
        };
        return key_items(data, cm.items.as_ref(), mode(cm.default_mode), "configmap").map(Some);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let Some(data) = secret_data(ctx, &name).await? else {
            if s.optional == Some(true) {
                return Ok(Some(Files::new()));
            }
            bail!("secret {name} not found");
        };
        return key_items(data, s.items.as_ref(), mode(s.default_mode), "secret").map(Some);
    }
    if let Some(d) = &v.downward_api {
        let mut out = Files::new();
        for it in d.items.iter().flatten() {
            let val = if let Some(f) = &it.field_ref {
                field_value(ctx, &f.field_path)?
            } else if let Some(r) = &it.resource_field_ref {
                let c = ctx.pod.spec.as_ref().and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| Some(&c.name) == r.container_name.as_ref())
                });
                resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))
            } else {
                continue;
            };
            out.insert(
                it.path.clone(),
                (val.into_bytes(), mode(it.mode.or(d.default_mode))),
            );
        }
        return Ok(Some(out));
    }
    if let Some(p) = &v.projected {
        let dm = mode(p.default_mode);
        let mut out = Files::new();
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                match configmap_data(ctx, &cm.name).await? {
                    Some(d) => out.extend(key_items(d, cm.items.as_ref(), dm, "configmap")?),
                    None if cm.optional == Some(true) => {}
                    None => bail!("configmap {} not found", cm.name),
                }
            }
            if let Some(s) = &src.secret {
                match secret_data(ctx, &s.name).await? {
                    Some(d) => out.extend(key_items(d, s.items.as_ref(), dm, "secret")?),
                    None if s.optional == Some(true) => {}
                    None => bail!("secret {} not found", s.name),
                }
            }
            if let Some(d) = &src.downward_api {
                for it in d.items.iter().flatten() {
                    if let Some(f) = &it.field_ref {
                        out.insert(
                            it.path.clone(),
                            (field_value(ctx, &f.field_path)?.into_bytes(), dm),
                        );
                    }
                }
            }
            if let Some(t) = &src.service_account_token {
                if with_tokens {
                    let tok =
                        service_account_token(ctx, t.audience.as_deref(), t.expiration_seconds)
                            .await?;
                    out.insert(t.path.clone(), (tok.into_bytes(), dm));
                } else {
                    // Keep the token written at pod start.
                    let existing = ctx.dir.join("volumes").join(&v.name).join(&t.path);
                    out.insert(
                        t.path.clone(),
                        (std::fs::read(existing).unwrap_or_default(), dm),
                    );
                }
            }
        }
        return Ok(Some(out));
    }
    Ok(None)
}

async fn prepare_volumes(ctx: &PodCtx) -> Result<Volumes> {
    let mut vols = Volumes::default();
    let base = ctx.dir.join("volumes");
    for v in ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let dir = base.join(&v.name);
        if let Some(files) = generated_files(ctx, &v, true)
            .await
            .with_context(|| format!("volume {}", v.name))?
        {
            sync_dir(&dir, &files)?;
            vols.generated.push(v.name.clone());
            vols.dirs.insert(v.name.clone(), dir);
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir)?;
            vols.dirs.insert(v.name.clone(), dir);
        } else if let Some(pvc) = &v.persistent_volume_claim {
            vols.dirs
                .insert(v.name.clone(), claim_path(ctx, &pvc.claim_name).await?);
        } else if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            if !p.exists()
                && hp
                    .type_
                    .as_deref()
                    .is_none_or(|t| t == "DirectoryOrCreate" || t.is_empty())
            {
                std::fs::create_dir_all(&p)?;
            }
            vols.dirs.insert(v.name.clone(), p);
        } else {
            warn!(
                "pod {}/{}: volume {} has an unsupported type; using an empty dir",
                ctx.ns, ctx.name, v.name
            );
            std::fs::create_dir_all(&dir)?;
            vols.dirs.insert(v.name.clone(), dir);
        }
    }
    Ok(vols)
}

/// Re-read ConfigMaps/Secrets before each container (re)start.
async fn refresh_volumes(ctx: &PodCtx, vols: &Volumes) {
    for v in ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if !vols.generated.contains(&v.name) {
            continue;
        }
        match generated_files(ctx, v, false).await {
            Ok(Some(files)) => {
                if let Err(e) = sync_dir(&ctx.dir.join("volumes").join(&v.name), &files) {
                    warn!("refreshing volume {}: {e:#}", v.name);
                }
            }
            Ok(None) => {}
            Err(e) => warn!("refreshing volume {}: {e:#}", v.name),
        }
    }
}

async fn claim_path(ctx: &PodCtx, claim: &str) -> Result<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.agent.client.clone(), &ctx.ns);
    let pvc = pvcs
        .get_opt(claim)
        .await?
        .with_context(|| format!("persistentvolumeclaim {claim} not found"))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
    let Some(volume) = volume.filter(|_| bound) else {
        bail!("waiting for persistentvolumeclaim {claim} to be bound");
    };
    let pvs: Api<PersistentVolume> = Api::all(ctx.agent.client.clone());
    let path = pvs
        .get_opt(&volume)
        .await?
        .and_then(|pv| pv.spec?.host_path.map(|h| PathBuf::from(h.path)))
        .unwrap_or_else(|| super::claim_dir(&ctx.agent.state, &ctx.ns, claim));
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

// ------------------------------------------------------- env and commands

async fn build_env(ctx: &PodCtx, c: &Container) -> Result<Vec<(String, String)>> {
    let (api_host, port) = ctx.agent.kubernetes_endpoint();
    let port = port.to_string();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!("{}:{HOST_PATH}", ctx.agent.shims.display()),
        ),
        ("HOME".into(), "/root".into()),
        (
            "HOSTNAME".into(),
            ctx.pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| ctx.name.clone()),
        ),
        ("KUBERNETES_SERVICE_HOST".into(), api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
        ("KUBERNETES_PORT".into(), format!("tcp://{api_host}:{port}")),
        ("DEVCLUSTER_POD_IP".into(), ctx.ip.clone()),
        // The entrypoint shim picks the host binary standing in for the image
        // (mysql:8* → MySQL 8.0.31 from the tool cache, else MariaDB).
        (
            "DEVCLUSTER_IMAGE".into(),
            c.image.clone().unwrap_or_default(),
        ),
    ];
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(n, _)| *n != k);
        env.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match configmap_data(ctx, &r.name).await? {
                Some(d) => d,
                None if r.optional == Some(true) => BTreeMap::new(),
                None => bail!("configmap {} not found", r.name),
            }
        } else if let Some(r) = &from.secret_ref {
            match secret_data(ctx, &r.name).await? {
                Some(d) => d,
                None if r.optional == Some(true) => BTreeMap::new(),
                None => bail!("secret {} not found", r.name),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &env)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(ctx, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(
                    Some(c),
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )
            } else if let Some(r) = &from.secret_key_ref {
                let data = secret_data(ctx, &r.name).await?;
                match data.and_then(|d| d.get(&r.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => bail!("secret {} key {} not found (env {})", r.name, r.key, e.name),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let data = configmap_data(ctx, &r.name).await?;
                match data.and_then(|d| d.get(&r.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => bail!(
                        "configmap {} key {} not found (env {})",
                        r.name,
                        r.key,
                        e.name
                    ),
                }
            } else {
                continue;
            }
        } else {
            String::new()
        };
        set(&mut env, e.name.clone(), value);
    }
    // Our shims must stay first on PATH even if the container sets PATH.
    if let Some(p) = env.iter_mut().find(|(k, _)| k == "PATH") {
        let shims = ctx.agent.shims.display().to_string();
        if !p.1.starts_with(&shims) {
            p.1 = format!("{shims}:{}", p.1);
        }
    }
    Ok(env)
}

/// Kubernetes' `$(VAR)` references in env values, command and args.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[i..i + end + 3]),
            }
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Absolute image paths that do not exist on the host fall back to a PATH
/// lookup of their basename (e.g. /usr/local/bin/docker-entrypoint.sh).
fn host_argv(ctx: &PodCtx, mut argv: Vec<String>, env: &[(String, String)]) -> Vec<String> {
    for a in argv.iter_mut() {
        *a = expand(a, env);
    }
    if let Some(first) = argv.first_mut()
        && first.contains('/')
        && !Path::new(first.as_str()).exists()
        && let Some(base) = Path::new(first.as_str())
            .file_name()
            .and_then(|b| b.to_str())
    {
        *first = if base == "ordinal" {
            ctx.agent.shims.join("ordinal").display().to_string()
        } else {
            base.to_owned()
        };
    }
    argv
}

/// `redis:7` → `redis`, `registry.example/ns/mariadb:11@sha256:..` → `mariadb`.
fn image_base(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_lowercase()
}

fn on_path(bin: &str) -> bool {
    HOST_PATH
        .split(':')
        .any(|d| Path::new(d).join(bin).exists())
}

fn resolve_command(ctx: &PodCtx, c: &Container, env: &[(String, String)]) -> Result<Vec<String>> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    if !command.is_empty() {
        let mut argv = command;
        argv.extend(args);
        return Ok(host_argv(ctx, argv, env));
    }
    let image = c.image.clone().unwrap_or_default();
    let base = image_base(&image);
    let args = host_argv(ctx, args, env);
    let mut argv: Vec<String> = if base.starts_with("redis") || base.starts_with("valkey") {
        let server = if base.starts_with("valkey") && on_path("valkey-server") {
            "valkey-server"
        } else {
            "redis-server"
        };
        let mut argv = vec![server.to_owned()];
        argv.extend(args.iter().cloned());
        if !args.iter().any(|a| a == "--bind") {
            argv.extend(["--bind".to_owned(), ctx.ip.clone()]);
        }
        // Like the official image: clients come from other addresses.
        if ctx.agent.net.netns() && !args.iter().any(|a| a == "--protected-mode") {
            argv.extend(["--protected-mode".to_owned(), "no".to_owned()]);
        }
        argv
    } else if base.starts_with("mariadb")
        || base.starts_with("mysql")
        || base.starts_with("percona")
    {
        let mut argv = vec!["docker-entrypoint.sh".to_owned()];
        if args.is_empty() {
            argv.push(
                if base.starts_with("mysql") {
                    "mysqld"
                } else {
                    "mariadbd"
                }
                .into(),
            );
        }
        argv.extend(args.iter().cloned());
        argv
    } else if base.contains("ordinal") {
        if ctx.agent.ordinal_bin.is_none() {
            bail!(
                "image {image} needs the operator binary: start the agent with --ordinal-bin or ORDINAL_BIN"
            );
        }
        let mut argv = vec![ctx.agent.shims.join("ordinal").display().to_string()];
        argv.extend(args.iter().cloned());
        argv
    } else if !args.is_empty() {
        args.clone()
    } else {
        bail!("image {image} has no host entrypoint; give the container a command")
    };
    if argv.is_empty() {
        argv.push("true".into());
    }
    Ok(argv)
}

/// Host file behind a container's `terminationMessagePath`.
fn termination_log(ctx: &PodCtx, c: &Container) -> std::path::PathBuf {
    ctx.dir.join(format!("{}.termination-log", c.name))
}

/// The message a kubelet reports: the termination log (at most 4096 bytes),
/// or with `FallbackToLogsOnError` the log's tail when the container failed.
fn termination_message(ctx: &PodCtx, c: &Container, code: i32) -> Option<String> {
    const MAX: usize = 4096;
    let tail = |bytes: Vec<u8>| {
        let start = bytes.len().saturating_sub(MAX);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    };
    let written = std::fs::read(termination_log(ctx, c)).unwrap_or_default();
    if !written.is_empty() {
        return Some(tail(written));
    }
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if fallback && code != 0 {
        let log = std::fs::read(ctx.dir.join(format!("{}.log", c.name))).unwrap_or_default();
        let text = tail(log);
        let lines: Vec<&str> = text.lines().collect();
        return Some(lines[lines.len().saturating_sub(80)..].join("\n"));
    }
    None
}

fn exec_spec(
    ctx: &PodCtx,
    c: &Container,
    vols: &Volumes,
    argv: Vec<String>,
    env: Vec<(String, String)>,
) -> Result<ExecSpec> {
    let hostname = env
        .iter()
        .find(|(k, _)| k == "HOSTNAME")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut mounts = vec![
        Mount {
            src: ctx.dir.join("tmp"),
            dst: "/tmp".into(),
            read_only: false,
        },
        Mount {
            src: ctx.dir.join("run"),
            dst: "/run".into(),
            read_only: false,
        },
        Mount {
            src: ctx.dir.join("hosts"),
            dst: "/etc/hosts".into(),
            read_only: false,
        },
    ];
    if ctx.agent.net.netns() {
        mounts.push(Mount {
            src: ctx.dir.join("resolv.conf"),
            dst: "/etc/resolv.conf".into(),
            read_only: true,
        });
    }
    let mut vm: Vec<_> = c.volume_mounts.iter().flatten().collect();
    vm.sort_by_key(|m| m.mount_path.len());
    for m in vm {
        let base = vols
            .dirs
            .get(&m.name)
            .with_context(|| format!("no volume named {}", m.name))?;
        let sub = m
            .sub_path
            .clone()
            .filter(|s| !s.is_empty())
            .map(|s| expand(&s, &env));
        let src = match sub {
            Some(s) => {
                if s.split('/').any(|c| c == "..") {
                    bail!("bad subPath {s}");
                }
                let p = base.join(s);
                if !p.exists() {
                    std::fs::create_dir_all(&p)?;
                }
                p
            }
            None => base.clone(),
        };
        mounts.push(Mount {
            src,
            dst: m.mount_path.clone().into(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    mounts.push(Mount {
        src: termination_log(ctx, c),
        dst: c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into())
            .into(),
        read_only: false,
    });
    let workdir = c.working_dir.clone().unwrap_or_else(|| "/".into());
    let net = &ctx.agent.net;
    Ok(ExecSpec {
        argv,
        env,
        hostname,
        workdir,
        mounts,
        netns: net.netns().then(|| net.pod_ns_path(&ctx.ip)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_dependent_vars() {
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("64Mi"), Some(67108864.0));
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("x"), None);
    }

    #[test]
    fn image_names() {
        assert_eq!(image_base("docker.io/library/redis:7.2"), "redis");
        assert_eq!(image_base("mariadb:11.4@sha256:abc"), "mariadb");
        assert_eq!(image_base("ghcr.io/x/ordinal"), "ordinal");
    }
}
