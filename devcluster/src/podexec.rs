//! `devcluster pod-exec SPEC`: the tiny "container runtime". Runs as a fresh,
//! single-threaded process that the agent started as a new process group; it
//! enters the pod's network namespace (netns network) and private mount and
//! UTS namespaces, bind-mounts the pod's volumes,
//! /etc/hosts, /tmp and /run, and then execs the container's command.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub hostname: String,
    pub workdir: String,
    /// Applied in order, so parents must come before children.
    pub mounts: Vec<Mount>,
    /// Network namespace to enter first (a pod's, or the node's).
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Mount {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path contains NUL")
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc != 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn run(spec_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: ExecSpec = serde_json::from_str(&text).context("parsing exec spec")?;
    enter_and_exec(&spec)
}

/// `devcluster run -- CMD`: a host command that sees the cluster's DNS names
/// (the agent's `<state>/hosts` on /etc/hosts) and has KUBECONFIG set.
pub fn run_on_host(state: &Path, argv: Vec<String>) -> Result<()> {
    let hosts = state.join("hosts");
    if !hosts.exists() {
        bail!("{} does not exist: is devcluster up?", hosts.display());
    }
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if !env.iter().any(|(k, _)| k == "KUBECONFIG") {
        env.push((
            "KUBECONFIG".into(),
            crate::cluster::kubeconfig_path(state).display().to_string(),
        ));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let workdir = std::env::current_dir()
        .context("current dir")?
        .display()
        .to_string();
    let mounts = vec![Mount {
        src: hosts,
        dst: "/etc/hosts".into(),
        read_only: true,
    }];
    let net = crate::net::Net::load(state);
    // DEVCLUSTER_RUN_HOST_NETWORK=1 keeps the command in the host's network
    // namespace (it reaches pods through the host routes), e.g. an operator
    // whose kubeconfig points at a proxy on the host's loopback.
    let host_network = std::env::var("DEVCLUSTER_RUN_HOST_NETWORK").is_ok_and(|v| v == "1");
    let netns = (net.netns() && !host_network).then(|| net.node_ns_path());
    if let Some(ns) = &netns
        && !ns.exists()
    {
        bail!("{} does not exist: is devcluster up?", ns.display());
    }
    enter_and_exec(&ExecSpec {
        argv,
        env,
        hostname: hostname.trim().to_owned(),
        workdir,
        mounts,
        netns,
    })
}

fn enter_and_exec(spec: &ExecSpec) -> Result<()> {
    if spec.argv.is_empty() {
        bail!("empty command");
    }
    if let Some(ns) = &spec.netns {
        crate::net::enter(ns)?;
    }
    // SAFETY: plain syscalls on valid, NUL-terminated strings; this process is
    // single-threaded (no tokio runtime was started for pod-exec).
    unsafe {
        check(
            libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS),
            "unshare",
        )?;
        let root = cstr(Path::new("/"))?;
        check(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "making / private",
        )?;
        let host = spec.hostname.as_bytes();
        check(
            libc::sethostname(host.as_ptr().cast(), host.len()),
            "sethostname",
        )?;
    }
    for m in &spec.mounts {
        bind(m).with_context(|| format!("mounting {} at {}", m.src.display(), m.dst.display()))?;
    }
    let mut cmd = std::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().cloned());
    if Path::new(&spec.workdir).is_dir() {
        cmd.current_dir(&spec.workdir);
    } else {
        cmd.current_dir("/");
    }
    let err = cmd.exec();
    bail!("exec {:?}: {err}", spec.argv[0])
}

fn bind(m: &Mount) -> Result<()> {
    let src_is_dir = std::fs::metadata(&m.src)
        .with_context(|| format!("source {}", m.src.display()))?
        .is_dir();
    if src_is_dir {
        std::fs::create_dir_all(&m.dst).context("creating mount point")?;
    } else if !m.dst.exists() {
        if let Some(parent) = m.dst.parent() {
            std::fs::create_dir_all(parent).context("creating mount point parent")?;
        }
        std::fs::write(&m.dst, b"").context("creating file mount point")?;
    }
    let (src, dst) = (cstr(&m.src)?, cstr(&m.dst)?);
    // SAFETY: valid NUL-terminated strings, null fs type and data.
    unsafe {
        check(
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ),
            "bind mount",
        )?;
        if m.read_only {
            check(
                libc::mount(
                    std::ptr::null(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                    std::ptr::null(),
                ),
                "read-only remount",
            )?;
        }
    }
    Ok(())
}
