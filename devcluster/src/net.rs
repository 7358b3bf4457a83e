//! The cluster's network: either the old loopback model (pods are host
//! processes on 127.0.x.y) or, with `--network netns`, a network namespace of
//! its own ("the node") holding a bridge, kube-proxy's nftables rules and one
//! veth per pod, each pod in its own network namespace.
//!
//! Addresses of instance `n` (the `ORDINAL_DEVCLUSTER_IP_BLOCK`, 0–255):
//!
//! | what | address |
//! | --- | --- |
//! | pods | `10.244.n.10` … `10.244.n.250` (in their own namespaces) |
//! | Services (ClusterIPs) | `10.96.n.0/24`, `kubernetes` = `10.96.n.1` |
//!
//! A cluster of `k` blocks (`--ip-blocks`, a power of two up to 16, `n` a
//! multiple of `k`) spans `10.244.n.0/p` and `10.96.n.0/p` with
//! `p = 24 - log2 k`: pods on `.10` … `.250` of each of its /24s, so one
//! cluster holds `241 k` pods and `256 k - 2` Services.
//! | bridge `cbr0` in the node namespace, pods' gateway | `10.244.n.1` — also the source of every `devcluster run` process ("operator") |
//! | API server as seen from pods (a proxy in the node namespace) | `10.244.n.2:<port>` |
//! | link host ↔ node namespace (veth `odh<id>` / `uplink`) | `169.254.n.1` / `169.254.n.2` |
//!
//! The host namespace only gets the `169.254.n.1/30` end of the link and two
//! routes (pod and Service CIDRs via `169.254.n.2`), each shadowed by an
//! `unreachable` route of higher metric, so that if the node namespace (and
//! with it the veth) disappears, nothing for those addresses can ever leave
//! through a real interface. The node namespace has no default route.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Metric of the `unreachable` guard routes in the host namespace.
const GUARD_METRIC: u32 = 4242;
const BRIDGE: &str = "cbr0";
/// nftables table (in the node namespace) that holds partitions.
const PARTITION_TABLE: &str = "devcluster_partition";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Pods are host processes on their own loopback IP (127.0.x.y).
    Loopback,
    /// Pods in their own network namespaces behind a bridge, with kube-proxy.
    Netns,
}

/// Chosen on the first `up` of a state directory and kept in `network.json`
/// (the apiserver's certificate names the `kubernetes` Service IP).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Net {
    pub mode: Mode,
    /// Instance number: the third octet of every cluster address.
    pub index: u8,
    /// Short hash of the state directory: names of namespaces and host links.
    pub id: String,
    /// How many consecutive /24 blocks from `index` the cluster spans.
    #[serde(default = "one_block")]
    pub blocks: u8,
}

fn one_block() -> u8 {
    1
}

/// Whether `blocks` consecutive /24s from `index` make one aligned prefix.
pub fn check_blocks(index: u8, blocks: u8) -> Result<()> {
    if !matches!(blocks, 1 | 2 | 4 | 8 | 16) {
        bail!("--ip-blocks must be 1, 2, 4, 8 or 16, not {blocks}");
    }
    if !index.is_multiple_of(blocks) {
        bail!("--ip-block {index} must be a multiple of --ip-blocks {blocks}");
    }
    Ok(())
}

fn path(state: &Path) -> PathBuf {
    state.join("network.json")
}

fn hash8(s: &str) -> String {
    // FNV-1a: stable across runs and Rust versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h & 0xffff_ffff)
}

impl Net {
    /// The stored network of a state dir, or a new one (not saved).
    pub fn load_or_new(state: &Path, mode: Mode, index: u8, blocks: u8) -> Result<Net> {
        if let Ok(text) = fs::read_to_string(path(state)) {
            return serde_json::from_str(&text).context("parsing network.json");
        }
        let abs = fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
        // A state dir from before network.json ran the loopback model; its
        // certificates and pod IPs belong to it.
        let legacy = state.join("pki").join("admin.crt").exists();
        Ok(Net {
            mode: if legacy { Mode::Loopback } else { mode },
            index,
            id: hash8(&abs.display().to_string()),
            blocks,
        })
    }

    /// The stored network (loopback when the state dir predates it).
    pub fn load(state: &Path) -> Net {
        fs::read_to_string(path(state))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Net {
                mode: Mode::Loopback,
                index: 0,
                id: String::new(),
                blocks: 1,
            })
    }

    pub fn save(&self, state: &Path) -> Result<()> {
        fs::write(path(state), serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path(state).display()))
    }

    pub fn netns(&self) -> bool {
        self.mode == Mode::Netns
    }

    /// The node namespace's name (under /run/netns).
    pub fn node_ns(&self) -> String {
        format!("odc-{}", self.id)
    }

    pub fn node_ns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(self.node_ns())
    }

    pub fn pod_ns(&self, ip: &str) -> String {
        format!("odp-{}-{}", self.id, self.host_number(ip))
    }

    /// A pod's number inside the cluster's range: its last octet in the
    /// first block, `256 * (third octet - index) + last octet` beyond it
    /// (names of its namespace and veth).
    pub fn host_number(&self, ip: &str) -> u32 {
        match ip.parse::<std::net::Ipv4Addr>() {
            Ok(a) => {
                let [_, _, c, d] = a.octets();
                256 * u32::from(c.saturating_sub(self.index)) + u32::from(d)
            }
            Err(_) => last_octet(ip).parse().unwrap_or(0),
        }
    }

    /// Prefix length of the pod and Service ranges.
    pub fn prefix_len(&self) -> u32 {
        24 - u32::from(self.blocks.max(1)).trailing_zeros()
    }

    pub fn pod_ns_path(&self, ip: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(self.pod_ns(ip))
    }

    fn host_link(&self) -> String {
        format!("odh{}", self.id)
    }

    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/{}", self.index, self.prefix_len())
    }

    pub fn service_cidr(&self) -> String {
        match self.mode {
            Mode::Loopback => crate::cluster::SERVICE_CIDR.to_owned(),
            Mode::Netns => format!("10.96.{}.0/{}", self.index, self.prefix_len()),
        }
    }

    /// ClusterIP of the `kubernetes` Service (first address of the range).
    pub fn kubernetes_ip(&self) -> String {
        match self.mode {
            Mode::Loopback => "10.96.0.1".to_owned(),
            Mode::Netns => format!("10.96.{}.1", self.index),
        }
    }

    /// Bridge address: the pods' gateway and the source address of
    /// processes in the node namespace (`devcluster run`, the operator).
    pub fn gateway(&self) -> String {
        format!("10.244.{}.1", self.index)
    }

    /// Where pods reach the API server (the agent's proxy in the node
    /// namespace); the apiserver advertises it for the `kubernetes` Service.
    pub fn api_addr(&self) -> String {
        format!("10.244.{}.2", self.index)
    }

    /// The host's end of the link into the node namespace.
    pub fn host_addr(&self) -> String {
        format!("169.254.{}.1", self.index)
    }

    fn uplink_addr(&self) -> String {
        format!("169.254.{}.2", self.index)
    }

    /// Candidate pod IPs in allocation order.
    pub fn pod_ips(&self) -> Vec<String> {
        let last = self.index.saturating_add(self.blocks.max(1) - 1);
        (self.index..=last)
            .flat_map(|b| (10..=250u8).map(move |c| format!("10.244.{b}.{c}")))
            .collect()
    }
}

fn last_octet(ip: &str) -> &str {
    ip.rsplit('.').next().unwrap_or(ip)
}

/// Run `ip ARGS` (or another program), failing with its stderr.
fn run(prog: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog} (is iproute2/nftables installed?)"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// `nft -f -` inside a namespace.
fn nft_in(ns: &str, script: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed?)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<()> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ],
    )
}

/// Does the host namespace route `cidr` somewhere (another cluster)? Our
/// `unreachable` guards do not count.
fn host_route_exists(cidr: &str) -> bool {
    Command::new("ip")
        .args(["route", "show", "exact", cidr])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with("unreachable"))
        })
        .unwrap_or(false)
}

/// Create the node namespace, its bridge, the link from the host and the
/// host's routes (with their unreachable guards). Idempotent: a leftover
/// namespace of this state dir is removed first.
pub fn setup(net: &Net) -> Result<()> {
    if !net.netns() {
        return Ok(());
    }
    teardown(net);
    for cidr in [net.pod_cidr(), net.service_cidr()] {
        if host_route_exists(&cidr) {
            bail!(
                "{cidr} is already routed in this network namespace (another devcluster \
                 with ORDINAL_DEVCLUSTER_IP_BLOCK={}?); pick another block",
                net.index
            );
        }
    }
    let ns = net.node_ns();
    let ns = ns.as_str();
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    sysctl_in(ns, "net.ipv4.ip_forward", "1")?;
    sysctl_in(ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
    sysctl_in(ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
    ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/{}", net.gateway(), net.prefix_len()),
        "dev",
        BRIDGE,
    ])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/{}", net.api_addr(), net.prefix_len()),
        "dev",
        BRIDGE,
    ])?;
    ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
    // Locally started connections to ClusterIPs need a route before
    // kube-proxy's output DNAT can rewrite them (there is no default route).
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        &net.service_cidr(),
        "dev",
        BRIDGE,
        "src",
        &net.gateway(),
    ])?;
    // Pod-to-pod traffic is bridged; let it pass the IPv4 hooks (conntrack,
    // kube-proxy's NAT, partitions) like on a real node.
    sysctl_in(ns, "net.bridge.bridge-nf-call-iptables", "1")?;
    // The link from the host namespace.
    let link = net.host_link();
    ip(&[
        "link", "add", &link, "type", "veth", "peer", "name", "uplink", "netns", ns,
    ])?;
    let _ = run(
        "sysctl",
        &["-q", "-w", &format!("net.ipv6.conf.{link}.disable_ipv6=1")],
    );
    ip(&[
        "addr",
        "add",
        &format!("{}/30", net.host_addr()),
        "dev",
        &link,
    ])?;
    ip(&["link", "set", &link, "up"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/30", net.uplink_addr()),
        "dev",
        "uplink",
    ])?;
    ip(&["-n", ns, "link", "set", "uplink", "up"])?;
    for cidr in [net.pod_cidr(), net.service_cidr()] {
        // The guard first, so that there is never a moment without it.
        ip(&[
            "route",
            "replace",
            "unreachable",
            &cidr,
            "metric",
            &GUARD_METRIC.to_string(),
        ])?;
        ip(&[
            "route",
            "add",
            &cidr,
            "via",
            &net.uplink_addr(),
            "dev",
            &link,
        ])?;
    }
    nft_in(
        ns,
        &format!(
            "table inet {PARTITION_TABLE} {{\n\
             set cut {{ type ipv4_addr . ipv4_addr; }}\n\
             chain input {{ type filter hook input priority filter - 10; ip saddr . ip daddr @cut drop; }}\n\
             chain forward {{ type filter hook forward priority filter - 10; ip saddr . ip daddr @cut drop; }}\n\
             chain output {{ type filter hook output priority filter - 10; ip saddr . ip daddr @cut drop; }}\n\
             }}\n"
        ),
    )?;
    Ok(())
}

/// Remove everything `setup` and `pod_up` created; errors are ignored (parts
/// may be gone already).
pub fn teardown(net: &Net) {
    if !net.netns() || net.id.is_empty() {
        return;
    }
    let prefix = format!("odp-{}-", net.id);
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    if net.node_ns_path().exists() {
        // Deleting the namespace destroys the veth pair and the host routes via it.
        let _ = ip(&["netns", "del", &net.node_ns()]);
    }
    let _ = ip(&["link", "del", &net.host_link()]);
    for cidr in [net.pod_cidr(), net.service_cidr()] {
        let _ = ip(&[
            "route",
            "del",
            &cidr,
            "via",
            &net.uplink_addr(),
            "dev",
            &net.host_link(),
        ]);
        if host_route_exists(&cidr) {
            // Another cluster with the same block routes it: its guard stays.
            continue;
        }
        let _ = ip(&[
            "route",
            "del",
            "unreachable",
            &cidr,
            "metric",
            &GUARD_METRIC.to_string(),
        ]);
    }
}

/// A pod's network namespace with `eth0` on the bridge; recreated if left over.
pub fn pod_up(net: &Net, pod_ip: &str) -> Result<()> {
    let pns = net.pod_ns(pod_ip);
    if net.pod_ns_path(pod_ip).exists() {
        let _ = ip(&["netns", "del", &pns]);
    }
    let ns = net.node_ns();
    let veth = format!("vp{}", net.host_number(pod_ip));
    let _ = ip(&["-n", &ns, "link", "del", &veth]);
    ip(&["netns", "add", &pns])?;
    let res = (|| {
        ip(&["-n", &pns, "link", "set", "lo", "up"])?;
        sysctl_in(&pns, "net.ipv6.conf.all.disable_ipv6", "1")?;
        ip(&[
            "-n", &ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pns,
        ])?;
        ip(&["-n", &ns, "link", "set", &veth, "master", BRIDGE])?;
        // A pod reaching itself through a Service goes out and back in here.
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            &veth,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        ip(&["-n", &ns, "link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &pns,
            "addr",
            "add",
            &format!("{pod_ip}/{}", net.prefix_len()),
            "dev",
            "eth0",
        ])?;
        // The address a pod IP has always had: a re-created pod gets a new
        // veth, and with a random MAC every neighbour cache that still holds
        // the old one (the node's, the other pods') would send its traffic
        // nowhere until the entry ages out (~30 s).
        ip(&[
            "-n",
            &pns,
            "link",
            "set",
            "eth0",
            "address",
            &pod_mac(pod_ip)?,
        ])?;
        ip(&["-n", &pns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &pns, "route", "add", "default", "via", &net.gateway()])
    })();
    if res.is_err() {
        let _ = ip(&["netns", "del", &pns]);
    }
    res.with_context(|| format!("network namespace of pod {pod_ip}"))
}

/// A locally administered unicast MAC made of the pod's IPv4 address.
fn pod_mac(pod_ip: &str) -> Result<String> {
    let ip: std::net::Ipv4Addr = pod_ip
        .parse()
        .with_context(|| format!("pod address {pod_ip}"))?;
    let [a, b, c, d] = ip.octets();
    Ok(format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}"))
}

pub fn pod_down(net: &Net, pod_ip: &str) {
    if net.netns() {
        let _ = ip(&["netns", "del", &net.pod_ns(pod_ip)]);
    }
}

/// Enter the network namespace at `path` (this thread only).
pub fn enter(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "entering network namespace {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// A TCP listener bound inside the network namespace at `ns` (created on a
/// short-lived thread, so the caller's namespace is untouched).
pub fn listen_in(ns: &Path, addr: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || -> Result<std::net::TcpListener> {
        enter(&ns)?;
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("listening on {addr} in {}", ns.display()))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("listener thread panicked"))?
}

/// One side of a partition: a pod (by name) or a well-known address.
fn endpoint_ip(state: &Path, net: &Net, namespace: &str, name: &str) -> Result<String> {
    match name {
        "operator" | "node" => return Ok(net.gateway()),
        "host" => return Ok(net.host_addr()),
        _ => {}
    }
    let ips: std::collections::BTreeMap<String, String> =
        fs::read_to_string(state.join("ips.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
    let key = if name.contains('/') {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    };
    ips.get(&key)
        .cloned()
        .with_context(|| format!("no pod {key} with an IP (see {}/ips.json)", state.display()))
}

/// Drop all traffic, both ways, between every member of `a` and every member
/// of `b` (pod names in `namespace`, `ns/pod`, `operator` or `host`).
pub fn partition(state: &Path, namespace: &str, a: &[String], b: &[String]) -> Result<()> {
    let Cut { net, a, b, elems } = pairs(state, namespace, a, b)?;
    nft_in(
        &net.node_ns(),
        &format!(
            "add element inet {PARTITION_TABLE} cut {{ {} }}\n",
            elems.join(", ")
        ),
    )?;
    println!("partitioned {a:?} from {b:?}");
    Ok(())
}

/// Remove the cut between `a` and `b` only (other partitions stay).
pub fn heal_between(state: &Path, namespace: &str, a: &[String], b: &[String]) -> Result<()> {
    let Cut { net, a, b, elems } = pairs(state, namespace, a, b)?;
    // `add` first so `delete` never fails on a pair that was not cut.
    nft_in(
        &net.node_ns(),
        &format!(
            "add element inet {PARTITION_TABLE} cut {{ {0} }}\ndelete element inet {PARTITION_TABLE} cut {{ {0} }}\n",
            elems.join(", ")
        ),
    )?;
    println!("healed {a:?} from {b:?}");
    Ok(())
}

/// The cut between two groups: their addresses and the address pairs (both
/// directions) as elements of the partition set.
struct Cut {
    net: Net,
    a: Vec<String>,
    b: Vec<String>,
    elems: Vec<String>,
}

fn pairs(state: &Path, namespace: &str, a: &[String], b: &[String]) -> Result<Cut> {
    let net = Net::load(state);
    if !net.netns() {
        bail!("partitions need the netns network model (devcluster up --network netns)");
    }
    let resolve = |names: &[String]| -> Result<Vec<String>> {
        names
            .iter()
            .map(|n| endpoint_ip(state, &net, namespace, n))
            .collect()
    };
    let (a, b) = (resolve(a)?, resolve(b)?);
    let mut elems = Vec::new();
    for x in &a {
        for y in &b {
            if x != y {
                elems.push(format!("{x} . {y}"));
                elems.push(format!("{y} . {x}"));
            }
        }
    }
    if elems.is_empty() {
        bail!("nothing to partition");
    }
    Ok(Cut { net, a, b, elems })
}

/// Remove every partition.
pub fn heal(state: &Path) -> Result<()> {
    let net = Net::load(state);
    if !net.netns() {
        bail!("partitions need the netns network model (devcluster up --network netns)");
    }
    nft_in(
        &net.node_ns(),
        &format!("flush set inet {PARTITION_TABLE} cut\n"),
    )?;
    println!("healed all partitions");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_macs_are_fixed_per_address_and_locally_administered() {
        assert_eq!(pod_mac("10.244.141.15").unwrap(), "02:42:0a:f4:8d:0f");
        assert_ne!(
            pod_mac("10.244.141.15").unwrap(),
            pod_mac("10.244.141.16").unwrap()
        );
        assert!(pod_mac("not an address").is_err());
    }

    #[test]
    fn names_fit_interface_limits_and_addresses_follow_the_index() {
        let net = Net {
            mode: Mode::Netns,
            index: 101,
            id: hash8("/var/tmp/x"),
            blocks: 1,
        };
        assert_eq!(net.id.len(), 8);
        assert!(net.host_link().len() <= 15);
        assert_eq!(net.pod_cidr(), "10.244.101.0/24");
        assert_eq!(net.service_cidr(), "10.96.101.0/24");
        assert_eq!(net.kubernetes_ip(), "10.96.101.1");
        assert_eq!(net.pod_ips()[0], "10.244.101.10");
        assert_eq!(net.pod_ns("10.244.101.17"), format!("odp-{}-17", net.id));
        assert_ne!(hash8("/var/tmp/x"), hash8("/var/tmp/y"));
    }

    #[test]
    fn a_cluster_of_several_blocks_spans_one_wider_prefix() {
        let net = Net {
            mode: Mode::Netns,
            index: 144,
            id: hash8("/var/tmp/x"),
            blocks: 8,
        };
        assert_eq!(net.pod_cidr(), "10.244.144.0/21");
        assert_eq!(net.service_cidr(), "10.96.144.0/21");
        assert_eq!(net.kubernetes_ip(), "10.96.144.1");
        let ips = net.pod_ips();
        assert_eq!(ips.len(), 8 * 241);
        assert_eq!(ips[0], "10.244.144.10");
        assert_eq!(ips[241], "10.244.145.10");
        assert_eq!(ips.last().map(String::as_str), Some("10.244.151.250"));
        assert_eq!(net.pod_ns("10.244.144.17"), format!("odp-{}-17", net.id));
        assert_eq!(net.pod_ns("10.244.151.250"), format!("odp-{}-2042", net.id));
        assert!(format!("vp{}", net.host_number("10.244.151.250")).len() <= 15);
        assert!(check_blocks(144, 8).is_ok());
        assert!(check_blocks(148, 8).is_err(), "not aligned");
        assert!(check_blocks(0, 3).is_err(), "not a power of two");
    }
}
