//! `up`, `down`, `status`: certificates, the control-plane processes and the
//! node agent, each recorded by PID under `<state>/pids/`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::net::{self, Mode, Net};
use crate::procs::{self, ProcRef};

/// Order of start; `down` stops them in reverse. kube-proxy runs only with
/// the netns network (inside the node namespace).
const COMPONENTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "agent",
    "kube-proxy",
];

fn components(net: &Net) -> Vec<&'static str> {
    COMPONENTS
        .iter()
        .copied()
        .filter(|c| net.netns() || *c != "kube-proxy")
        .collect()
}
pub const NODE_NAME: &str = "devcluster";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Directory with etcd, kube-apiserver and kube-controller-manager.
    #[arg(long, env = "ORDINAL_DEVCLUSTER_BIN", default_value_os_t = crate::cache_dir().join("bin"))]
    pub bin_dir: PathBuf,
    /// Secure port of kube-apiserver on 127.0.0.1 (a free one if taken).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Do not run controlplane/build.sh when binaries are missing.
    #[arg(long)]
    pub no_build: bool,
    /// The operator binary used for `*ordinal*` images (passed to the agent).
    #[arg(long, env = "ORDINAL_BIN")]
    pub ordinal_bin: Option<PathBuf>,
    /// Network model of a new state dir: `loopback` (pods on 127.0.<block>.x
    /// in the host's network) or `netns` (pods in network namespaces behind a
    /// bridge in the cluster's own namespace, kube-proxy, ClusterIPs).
    #[arg(long, env = "ORDINAL_DEVCLUSTER_NETWORK", value_enum, default_value_t = Mode::Netns)]
    pub network: Mode,
    /// Instance number: pods on 127.0.<block>.10+ (loopback) or
    /// 10.244.<block>.10+ with Services in 10.96.<block>.0/24 (netns), so
    /// clusters beside each other do not collide.
    #[arg(long, env = "ORDINAL_DEVCLUSTER_IP_BLOCK", default_value_t = 0)]
    pub ip_block: u8,
    /// Consecutive /24 blocks from `--ip-block` one cluster spans (netns: 1,
    /// 2, 4, 8 or 16, the block a multiple of it): 241 pods and 254 Services
    /// per block, for runs of hundreds of clusters.
    #[arg(long, env = "ORDINAL_DEVCLUSTER_IP_BLOCKS", default_value_t = 1)]
    pub ip_blocks: u8,
}

/// Ports chosen on the first `up`, kept so that a restart reuses them.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct Ports {
    pub apiserver: u16,
    /// The agent's log endpoint (for `kubectl logs`).
    #[serde(default)]
    pub kubelet: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub controller_manager: u16,
}

fn free_port(preferred: u16) -> Result<u16> {
    if preferred != 0 && TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    let l = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

pub fn kubeconfig_path(state: &Path) -> PathBuf {
    state.join("kubeconfig")
}

pub fn load_ports(state: &Path) -> Result<Ports> {
    let path = state.join("ports.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context("parsing ports.json")
}

fn pid_file(state: &Path, name: &str) -> PathBuf {
    state.join("pids").join(format!("{name}.pid"))
}

fn running(state: &Path, name: &str) -> Option<ProcRef> {
    ProcRef::load(&pid_file(state, name)).filter(ProcRef::alive)
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// CA, apiserver serving cert, admin client cert (O=system:masters) and the
/// service-account signing key pair, created once per state directory.
fn ensure_pki(pki: &Path, kubernetes_ip: &str) -> Result<()> {
    fs::create_dir_all(pki)?;
    if !pki.join("admin.crt").exists() {
        create_pki(pki, kubernetes_ip)?;
    }
    if !pki.join("kubelet.crt").exists() {
        // The agent's endpoint for `kubectl logs` (added later than the rest).
        sign_cert(
            pki,
            "kubelet",
            "/CN=devcluster",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:devcluster\n\
             extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
        )?;
    }
    Ok(())
}

fn sign_cert(pki: &Path, name: &str, subj: &str, ext: &str) -> Result<()> {
    fs::write(pki.join(format!("{name}.ext")), ext)?;
    openssl(
        pki,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subj,
        ],
    )?;
    openssl(
        pki,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    )
}

fn create_pki(pki: &Path, kubernetes_ip: &str) -> Result<()> {
    println!("generating certificates in {}", pki.display());
    openssl(
        pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=devcluster-ca",
        ],
    )?;
    let sign = |name: &str, subj: &str, ext: &str| sign_cert(pki, name, subj, ext);
    sign(
        "apiserver",
        "/CN=kube-apiserver",
        &format!(
            "subjectAltName=IP:127.0.0.1,IP:{kubernetes_ip},DNS:localhost,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local\n\
             extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
        ),
    )?;
    openssl(pki, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(pki, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    // Last, so that its presence means the whole set is there.
    sign(
        "admin",
        "/O=system:masters/CN=devcluster-admin",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    Ok(())
}

fn write_kubeconfig(state: &Path, port: u16) -> Result<()> {
    let pki = state.join("pki");
    let p = |f: &str| pki.join(f).display().to_string();
    let cfg = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "devcluster",
        "clusters": [{"name": "devcluster", "cluster": {
            "server": format!("https://127.0.0.1:{port}"), "certificate-authority": p("ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": p("admin.crt"), "client-key": p("admin.key")}}],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": "admin"}}],
    });
    fs::write(kubeconfig_path(state), serde_yaml::to_string(&cfg)?).context("writing kubeconfig")
}

fn spawn(state: &Path, name: &str, program: &Path, args: &[String]) -> Result<ProcRef> {
    let log_path = state.join("logs").join(format!("{name}.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let child = std::os::unix::process::CommandExt::process_group(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
        0,
    )
    .spawn()
    .with_context(|| format!("starting {}", program.display()))?;
    let pid = i32::try_from(child.id()).context("pid")?;
    let p = ProcRef::of(pid)
        .with_context(|| format!("{name} exited at once; see {}", log_path.display()))?;
    p.save(&pid_file(state, name))?;
    println!("started {name} (pid {pid}), log {}", log_path.display());
    Ok(p)
}

fn kubectl(state: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig_path(state))
        .args(args)
        .output()
        .context("running kubectl")
}

/// Poll `ok` until it holds; fail early when `proc` (the process that should
/// make it hold) has died.
fn wait_for(
    what: &str,
    proc: Option<(ProcRef, &Path)>,
    timeout: Duration,
    mut ok: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some((p, log)) = proc
            && !p.alive()
        {
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{what}: process {} exited; end of {}:\n{}",
                p.pid,
                log.display(),
                tail.join("\n")
            );
        }
        if ok()? {
            println!("{what}: ok after {:.1}s", start.elapsed().as_secs_f32());
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{what}: not ready after {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ensure_binaries(args: &UpArgs) -> Result<()> {
    let missing = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-proxy",
    ]
    .iter()
    .any(|b| !args.bin_dir.join(b).exists());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("controlplane/build.sh");
    if args.no_build {
        if missing {
            bail!(
                "control-plane binaries missing in {}; run {}",
                args.bin_dir.display(),
                script.display()
            );
        }
        return Ok(());
    }
    // build.sh is a no-op when the stamp matches, so always run it.
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if args.bin_dir.file_name().is_some_and(|n| n == "bin")
        && let Some(parent) = args.bin_dir.parent()
    {
        cmd.env("ORDINAL_CACHE", parent);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed", script.display());
    }
    Ok(())
}

pub fn up(state: &Path, args: &UpArgs) -> Result<()> {
    let res = up_inner(state, args);
    if res.is_err() && ProcRef::load(&pid_file(state, "etcd")).is_some() {
        eprintln!(
            "devcluster up failed; stopping what it started (logs stay in {})",
            state.join("logs").display()
        );
        let _ = down(state, false);
    }
    res
}

fn up_inner(state: &Path, args: &UpArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("devcluster must run as root (the agent uses mount namespaces for pods)");
    }
    fs::create_dir_all(state)?;
    crate::net::check_blocks(args.ip_block, args.ip_blocks)?;
    let net = Net::load_or_new(state, args.network, args.ip_block, args.ip_blocks)?;
    if net.mode != args.network || net.index != args.ip_block || net.blocks != args.ip_blocks {
        println!(
            "note: {} keeps the network it was created with ({:?}, block {}); \
             `down --wipe` to change it",
            state.display(),
            net.mode,
            net.index
        );
    }
    let comps = components(&net);
    let alive: Vec<_> = comps
        .iter()
        .filter(|c| running(state, c).is_some())
        .collect();
    if alive.len() == comps.len() {
        println!(
            "devcluster is already up; export KUBECONFIG={}",
            kubeconfig_path(state).display()
        );
        return Ok(());
    }
    if !alive.is_empty() {
        println!("devcluster is partly up ({alive:?}); restarting it");
        down(state, false)?;
    }
    ensure_binaries(args)?;
    for d in ["logs", "pids", "pods", "pv", "etcd"] {
        fs::create_dir_all(state.join(d))?;
    }
    let state = &fs::canonicalize(state)?;
    let pki = state.join("pki");
    ensure_pki(&pki, &net.kubernetes_ip())?;
    net.save(state)?;
    net::setup(&net)?;
    let ports = match load_ports(state) {
        Ok(p) => Ports {
            apiserver: free_port(p.apiserver)?,
            kubelet: free_port(p.kubelet)?,
            etcd_client: free_port(p.etcd_client)?,
            etcd_peer: free_port(p.etcd_peer)?,
            controller_manager: free_port(p.controller_manager)?,
        },
        Err(_) => Ports {
            apiserver: free_port(args.port)?,
            kubelet: free_port(0)?,
            etcd_client: free_port(0)?,
            etcd_peer: free_port(0)?,
            controller_manager: free_port(0)?,
        },
    };
    fs::write(
        state.join("ports.json"),
        serde_json::to_string_pretty(&ports)?,
    )?;
    write_kubeconfig(state, ports.apiserver)?;
    let s = |p: &Path| p.display().to_string();
    let bin = |b: &str| args.bin_dir.join(b);

    let etcd_url = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let etcd = spawn(
        state,
        "etcd",
        &bin("etcd"),
        &[
            "--name=devcluster".into(),
            format!("--data-dir={}", s(&state.join("etcd"))),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=devcluster={peer_url}"),
            "--listen-metrics-urls=".into(),
            "--unsafe-no-fsync".into(),
        ],
    )?;
    let log = |n: &str| state.join("logs").join(format!("{n}.log"));
    wait_for(
        "etcd",
        Some((etcd, &log("etcd"))),
        Duration::from_secs(30),
        || Ok(std::net::TcpStream::connect(("127.0.0.1", ports.etcd_client)).is_ok()),
    )?;

    let apiserver = spawn(
        state,
        "kube-apiserver",
        &bin("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            // Loopback is not allowed with an endpoint reconciler: with the
            // loopback network pods reach the API through
            // KUBERNETES_SERVICE_HOST=127.0.0.1; with netns the `kubernetes`
            // Service points at the agent's proxy in the node namespace.
            format!(
                "--advertise-address={}",
                if net.netns() {
                    net.api_addr()
                } else {
                    "127.0.0.1".into()
                }
            ),
            format!(
                "--endpoint-reconciler-type={}",
                if net.netns() { "lease" } else { "none" }
            ),
            format!("--secure-port={}", ports.apiserver),
            format!("--cert-dir={}", s(&pki)),
            format!("--tls-cert-file={}", s(&pki.join("apiserver.crt"))),
            format!("--tls-private-key-file={}", s(&pki.join("apiserver.key"))),
            format!("--client-ca-file={}", s(&pki.join("ca.crt"))),
            // `kubectl logs` goes to the agent's endpoint on the node address.
            format!("--kubelet-certificate-authority={}", s(&pki.join("ca.crt"))),
            format!("--kubelet-client-certificate={}", s(&pki.join("admin.crt"))),
            format!("--kubelet-client-key={}", s(&pki.join("admin.key"))),
            "--kubelet-preferred-address-types=InternalIP".into(),
            // Only to give extension-apiserver-authentication a CA bundle.
            format!("--requestheader-client-ca-file={}", s(&pki.join("ca.crt"))),
            "--requestheader-allowed-names=front-proxy-client".into(),
            format!("--service-account-key-file={}", s(&pki.join("sa.pub"))),
            format!(
                "--service-account-signing-key-file={}",
                s(&pki.join("sa.key"))
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-cluster-ip-range={}", net.service_cidr()),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ],
    )?;
    wait_for(
        "kube-apiserver /readyz",
        Some((apiserver, &log("kube-apiserver"))),
        Duration::from_secs(120),
        || {
            let out = kubectl(state, &["get", "--raw", "/readyz"])?;
            Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
        },
    )?;

    let kc = s(&kubeconfig_path(state));
    spawn(
        state,
        "kube-controller-manager",
        &bin("kube-controller-manager"),
        &[
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.controller_manager),
            "--controllers=*".into(),
            "--leader-elect=false".into(),
            format!(
                "--service-account-private-key-file={}",
                s(&pki.join("sa.key"))
            ),
            format!("--root-ca-file={}", s(&pki.join("ca.crt"))),
            format!("--cluster-signing-cert-file={}", s(&pki.join("ca.crt"))),
            format!("--cluster-signing-key-file={}", s(&pki.join("ca.key"))),
            format!("--service-cluster-ip-range={}", net.service_cidr()),
            "--profiling=false".into(),
        ],
    )?;

    let exe = std::env::current_exe().context("locating the devcluster binary")?;
    let mut agent_args = vec![format!("--state-dir={}", s(state)), "agent".into()];
    if let Some(b) = &args.ordinal_bin {
        agent_args.push(format!("--ordinal-bin={}", s(b)));
    }
    let agent = spawn(state, "agent", &exe, &agent_args)?;
    if net.netns() {
        // In the node namespace; it reaches the API server through the
        // agent's proxy on 127.0.0.1 there.
        let node_ns = net.node_ns();
        let kp = bin("kube-proxy");
        spawn(
            state,
            "kube-proxy",
            Path::new("ip"),
            &[
                "netns".into(),
                "exec".into(),
                node_ns,
                s(&kp),
                format!("--kubeconfig={kc}"),
                "--proxy-mode=nftables".into(),
                format!("--hostname-override={NODE_NAME}"),
                // Leave host-wide conntrack settings alone.
                "--conntrack-max-per-core=0".into(),
                "--conntrack-min=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
    }
    wait_for(
        "node devcluster Ready",
        Some((agent, &log("agent"))),
        Duration::from_secs(60),
        || {
            let out = kubectl(
                state,
                &[
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            )?;
            Ok(String::from_utf8_lossy(&out.stdout).trim() == "True")
        },
    )?;
    wait_for(
        "default service account",
        None,
        Duration::from_secs(60),
        || {
            Ok(kubectl(
                state,
                &["-n", "default", "get", "serviceaccount", "default"],
            )?
            .status
            .success())
        },
    )?;
    println!("devcluster is up: export KUBECONFIG={kc}");
    Ok(())
}

/// Pod process groups recorded by the agent: `<state>/pods/*/*.pid`.
fn pod_processes(state: &Path) -> Vec<(PathBuf, ProcRef)> {
    let mut out = Vec::new();
    let Ok(pods) = fs::read_dir(state.join("pods")) else {
        return out;
    };
    for pod in pods.flatten() {
        let Ok(files) = fs::read_dir(pod.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Some(p) = ProcRef::load(&path)
            {
                out.push((path, p));
            }
        }
    }
    out
}

pub fn down(state: &Path, wipe: bool) -> Result<()> {
    let net = Net::load(state);
    for name in COMPONENTS.iter().rev() {
        let path = pid_file(state, name);
        if let Some(p) = ProcRef::load(&path) {
            if p.alive() {
                println!("stopping {name} (pid {})", p.pid);
                procs::stop_group(p, Duration::from_secs(10));
            }
            let _ = fs::remove_file(&path);
        }
        // The agent stops its pods on SIGTERM; whatever is left goes here.
        if *name == "agent" {
            let pods = pod_processes(state);
            let running: Vec<ProcRef> = pods
                .iter()
                .map(|(_, p)| *p)
                .filter(|p| p.alive() || procs::group_alive(p.pid))
                .collect();
            if !running.is_empty() {
                println!("stopping {} pod processes", running.len());
                procs::stop_groups(&running, Duration::from_secs(5));
            }
            for (path, _) in pods {
                let _ = fs::remove_file(&path);
            }
        }
    }
    unmount_under(state)?;
    net::teardown(&net);
    if wipe && state.exists() {
        fs::remove_dir_all(state).with_context(|| format!("deleting {}", state.display()))?;
        println!("deleted {}", state.display());
    }
    println!("devcluster is down");
    Ok(())
}

/// Pod mounts live in private namespaces and vanish with their processes;
/// this catches anything that leaked into the host namespace anyway.
fn unmount_under(state: &Path) -> Result<()> {
    let Ok(state) = fs::canonicalize(state) else {
        return Ok(());
    };
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| Path::new(t).starts_with(&state))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        println!("unmounting {t}");
        let _ = Command::new("umount").arg("-l").arg(t).status();
    }
    Ok(())
}

pub fn status(state: &Path) -> Result<()> {
    println!("state dir: {}", state.display());
    let net = Net::load(state);
    let comps = components(&net);
    let mut up = 0;
    for name in comps.iter().copied() {
        match running(state, name) {
            Some(p) => {
                up += 1;
                println!("  {name:<24} running  pid {}", p.pid);
            }
            None => println!("  {name:<24} stopped"),
        }
    }
    let pods: Vec<_> = pod_processes(state)
        .into_iter()
        .filter(|(_, p)| p.alive())
        .collect();
    println!("  pod processes: {}", pods.len());
    for (path, p) in &pods {
        let cmd = fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let name = path.strip_prefix(state.join("pods")).unwrap_or(path);
        println!("    {:<40} pid {:<7} {}", name.display(), p.pid, cmd.trim());
    }
    if let Ok(ports) = load_ports(state) {
        println!("  apiserver: https://127.0.0.1:{}", ports.apiserver);
    }
    if net.netns() {
        println!(
            "  network: netns {} (pods {}, services {}, host link {})",
            net.node_ns(),
            net.pod_cidr(),
            net.service_cidr(),
            net.host_addr()
        );
    } else {
        println!("  network: loopback (pods on 127.0.x.y)");
    }
    if up == comps.len() {
        println!(
            "devcluster is up: export KUBECONFIG={}",
            kubeconfig_path(state).display()
        );
    } else if up == 0 {
        println!("devcluster is down");
    } else {
        println!("devcluster is partly up; run `devcluster down` then `devcluster up`");
    }
    Ok(())
}
