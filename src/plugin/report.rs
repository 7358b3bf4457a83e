//! `kubectl ordinal status`: what a person needs at a glance, built from the
//! cluster's status, its pods and its Backups (pure; no I/O), printed as a
//! tree or as JSON/YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::cluster::Cluster;
use crate::api::backup::{Backup, BackupPhase};
use crate::api::{ClusterPhase, FailoverRecord, MemberRole, Operation};
use crate::resources::{DbKind, labels};

/// Everything `status` shows; also its `-o json|yaml` form.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `redis`, `mariadb` or `mysql`.
    pub engine: String,
    pub phase: ClusterPhase,
    /// Annotation `ordinal.dev/paused: "true"` is set.
    pub paused: bool,
    /// The operator confirmed the pause (condition `Paused=True`).
    pub pause_confirmed: bool,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// Confirmed primary (status), by ordinal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<i32>,
    /// `spec.primary`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_primary: Option<i32>,
    pub term: i64,
    pub members: Vec<MemberReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// The newest Backup of this cluster, whatever its phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupReport>,
    /// The newest Succeeded Backup, when the newest one is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<BackupReport>,
    pub conditions: Vec<ConditionReport>,
}

/// One member: the operator's observation and its pod as Kubernetes has it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    pub ordinal: i32,
    pub pod: String,
    /// Role confirmed through the database protocol (status).
    pub role: MemberRole,
    pub reachable: bool,
    /// The pod exists and is Ready.
    pub pod_ready: bool,
    /// Value of the pod's `ordinal.dev/role` label (what the Services select).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// Bytes (Redis) or seconds (MySQL/MariaDB) behind the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub name: String,
    pub phase: BackupPhase,
    /// Completion time, else start time, else creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionReport {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

fn engine_name(kind: DbKind) -> &'static str {
    match kind {
        DbKind::Redis => "redis",
        DbKind::MySql(crate::api::MySqlFlavor::MariaDB) => "mariadb",
        DbKind::MySql(crate::api::MySqlFlavor::MySQL) => "mysql",
    }
}

fn pod_ready(pod: &Pod) -> bool {
    crate::controller::common::pod_ready(pod)
}

fn backup_report(b: &Backup) -> BackupReport {
    let status = b.status.clone().unwrap_or_default();
    BackupReport {
        name: b.metadata.name.clone().unwrap_or_default(),
        phase: status.phase,
        time: status
            .completion_time
            .or(status.start_time)
            .or_else(|| b.metadata.creation_timestamp.clone()),
        size_bytes: status.size_bytes,
        artifact: status.artifact,
        message: status.message,
    }
}

fn created(b: &Backup) -> i64 {
    b.metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_millisecond())
}

/// Build the report from the cluster, its pods and the namespace's Backups
/// (those of other clusters are ignored).
pub fn build(cluster: &Cluster, pods: &[Pod], backups: &[Backup]) -> StatusReport {
    let status = cluster.status().cloned().unwrap_or_default();
    let name = cluster.name();
    let pods: BTreeMap<String, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p)))
        .collect();
    let observed: BTreeMap<i32, _> = status.members.iter().map(|m| (m.ordinal, m)).collect();
    let count = cluster.replicas().max(status.members.len() as i32);
    let members = (0..count)
        .map(|ordinal| {
            let pod_name = format!("{name}-{ordinal}");
            let pod = pods.get(&pod_name);
            let seen = observed.get(&ordinal);
            MemberReport {
                ordinal,
                pod: pod_name,
                role: seen.map_or(MemberRole::Unknown, |m| m.role),
                reachable: seen.is_some_and(|m| m.reachable),
                pod_ready: pod.is_some_and(|p| pod_ready(p)),
                role_label: pod
                    .and_then(|p| p.metadata.labels.as_ref())
                    .and_then(|l| l.get(labels::ROLE).cloned()),
                source: seen.and_then(|m| m.source),
                link_up: seen.and_then(|m| m.link_up),
                lag: seen.and_then(|m| m.lag),
                offset: seen.and_then(|m| m.offset),
                gtid: seen.and_then(|m| m.gtid.clone()),
                message: seen.and_then(|m| m.message.clone()),
            }
        })
        .collect();
    let mut mine: Vec<&Backup> = backups
        .iter()
        .filter(|b| {
            b.spec.cluster.name == name && b.spec.cluster.kind == cluster.kind().backup_kind()
        })
        .collect();
    mine.sort_by_key(|b| std::cmp::Reverse(created(b)));
    let last_backup = mine.first().map(|b| backup_report(b));
    let last_successful_backup = mine
        .iter()
        .find(|b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.phase == BackupPhase::Succeeded)
        })
        .map(|b| backup_report(b))
        .filter(|s| last_backup.as_ref().is_some_and(|l| l.name != s.name));
    let conditions = status
        .conditions
        .iter()
        .map(|c| ConditionReport {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect::<Vec<_>>();
    StatusReport {
        kind: cluster.kind().as_str().to_string(),
        namespace: cluster.namespace(),
        name: name.clone(),
        engine: engine_name(cluster.db_kind()).to_string(),
        phase: status.phase,
        paused: cluster.paused(),
        pause_confirmed: conditions
            .iter()
            .any(|c| c.type_ == crate::api::condition::PAUSED && c.status == "True"),
        replicas: cluster.replicas(),
        ready_replicas: status.ready_replicas,
        primary: status.replication.primary,
        desired_primary: cluster.desired_primary(),
        term: status.replication.term,
        members,
        operation: status.replication.operation.clone(),
        last_failover: status.replication.last_failover.clone(),
        last_backup,
        last_successful_backup,
        conditions,
    }
}

/// `45s`, `3m`, `2h5m`, `4d` — as kubectl prints ages.
pub fn age(then: &Time, now: DateTime<Utc>) -> String {
    let secs = (now.timestamp_millis() - then.0.as_millisecond()).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 10 * 3600 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        },
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn role_word(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Primary => "primary",
        MemberRole::Replica => "replica",
        MemberRole::Quarantined => "QUARANTINED",
        MemberRole::Unknown => "unknown",
    }
}

fn member_line(r: &StatusReport, m: &MemberReport) -> String {
    let mut parts = vec![format!("{:<9}", role_word(m.role))];
    if !m.reachable {
        parts.push("unreachable".into());
    }
    if !m.pod_ready {
        parts.push("pod not ready".into());
    }
    let expected_label = m.role.label();
    if m.role_label.as_deref() != expected_label {
        parts.push(format!(
            "label {}",
            m.role_label.as_deref().unwrap_or("(none)")
        ));
    }
    if m.role == MemberRole::Replica || m.source.is_some() {
        if let Some(src) = m.source {
            parts.push(format!("from {}-{src}", r.name));
        }
        match m.link_up {
            Some(true) => parts.push("link up".into()),
            Some(false) => parts.push("LINK DOWN".into()),
            None => {}
        }
        if let Some(lag) = m.lag {
            parts.push(match r.engine.as_str() {
                "redis" => format!("lag {}", bytes(lag)),
                _ => format!("lag {lag}s"),
            });
        }
    }
    if let Some(o) = m.offset {
        parts.push(format!("offset {o}"));
    }
    if let Some(g) = &m.gtid {
        parts.push(format!("gtid {g}"));
    }
    if let Some(msg) = &m.message {
        parts.push(format!("— {msg}"));
    }
    format!("{}  {}", m.pod, parts.join("  "))
}

fn operation_line(r: &StatusReport, op: &Operation, now: DateTime<Utc>) -> String {
    let to = op
        .to
        .map(|t| format!("{}-{t}", r.name))
        .unwrap_or_else(|| "(choosing)".into());
    format!(
        "{:?} {}-{} → {to}, step {}, term {}, started {} ago: {}",
        op.kind,
        r.name,
        op.from,
        op.step,
        op.term,
        age(&op.started_at, now),
        op.reason
    )
}

fn failover_line(r: &StatusReport, f: &FailoverRecord, now: DateTime<Utc>) -> String {
    format!(
        "{:?} {}-{} → {}-{}, {} ago: {}",
        f.kind,
        r.name,
        f.from,
        r.name,
        f.to,
        age(&f.time, now),
        f.reason
    )
}

fn backup_line(b: &BackupReport, now: DateTime<Utc>) -> String {
    let mut line = format!("{} {:?}", b.name, b.phase);
    if let Some(t) = &b.time {
        let _ = write!(line, ", {} ago", age(t, now));
    }
    if let Some(size) = b.size_bytes {
        let _ = write!(line, ", {}", bytes(size));
    }
    if let Some(a) = &b.artifact {
        let _ = write!(line, ", {a}");
    }
    if b.phase == BackupPhase::Failed
        && let Some(m) = &b.message
    {
        let _ = write!(line, ": {m}");
    }
    line
}

/// A tree: the root line, then branches whose children are indented lines.
struct Tree {
    out: String,
}

impl Tree {
    fn branch(&mut self, last: bool, head: &str, children: &[String]) {
        let (stem, pad) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let _ = writeln!(self.out, "{stem}{head}");
        for (i, child) in children.iter().enumerate() {
            let twig = if i + 1 == children.len() {
                "└── "
            } else {
                "├── "
            };
            let _ = writeln!(self.out, "{pad}{twig}{child}");
        }
    }
}

/// The tree a person reads.
pub fn render(r: &StatusReport, now: DateTime<Utc>) -> String {
    let primary = match r.primary {
        Some(p) => format!("primary {}-{p}", r.name),
        None => "no confirmed primary".to_string(),
    };
    let mut tree = Tree {
        out: format!(
            "{} {}/{} ({}): {:?}, {primary}, term {}\n",
            r.kind, r.namespace, r.name, r.engine, r.phase, r.term
        ),
    };
    let mut branches: Vec<(String, Vec<String>)> = Vec::new();
    if r.paused {
        let state = if r.pause_confirmed {
            "the operator changes nothing"
        } else {
            "not yet confirmed by the operator"
        };
        branches.push((
            format!("PAUSED (annotation ordinal.dev/paused=true): {state}"),
            vec![],
        ));
    }
    if let Some(d) = r.desired_primary.filter(|d| Some(*d) != r.primary) {
        branches.push((
            format!("spec.primary asks for {}-{d}: switchover pending", r.name),
            vec![],
        ));
    }
    branches.push((
        format!("Members ({}/{} ready)", r.ready_replicas, r.replicas),
        r.members.iter().map(|m| member_line(r, m)).collect(),
    ));
    branches.push((
        match &r.operation {
            Some(op) => format!("Operation: {}", operation_line(r, op, now)),
            None => "Operation: none".to_string(),
        },
        vec![],
    ));
    branches.push((
        match &r.last_failover {
            Some(f) => format!("Last failover: {}", failover_line(r, f, now)),
            None => "Last failover: none".to_string(),
        },
        vec![],
    ));
    let mut backup = vec![];
    if let Some(s) = &r.last_successful_backup {
        backup.push(format!("last Succeeded: {}", backup_line(s, now)));
    }
    branches.push((
        match &r.last_backup {
            Some(b) => format!("Last backup: {}", backup_line(b, now)),
            None => "Last backup: none".to_string(),
        },
        backup,
    ));
    branches.push((
        "Conditions".to_string(),
        r.conditions
            .iter()
            .map(|c| {
                let mut line = format!("{}={} {}", c.type_, c.status, c.reason);
                if !c.message.is_empty() {
                    let _ = write!(line, ": {}", c.message);
                }
                line
            })
            .collect(),
    ));
    let n = branches.len();
    for (i, (head, children)) in branches.iter().enumerate() {
        tree.branch(i + 1 == n, head, children);
    }
    tree.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RedisReplication;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().expect("now")
    }

    fn redis(status: serde_json::Value, annotations: serde_json::Value) -> Cluster {
        Cluster::Redis(
            serde_json::from_value::<RedisReplication>(serde_json::json!({
                "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
                "metadata": {"name": "cache", "namespace": "shop", "annotations": annotations},
                "spec": {"replicas": 3, "primary": 2},
                "status": status,
            }))
            .expect("cluster"),
        )
    }

    fn pod(name: &str, role: Option<&str>, ready: bool) -> Pod {
        let mut labels = serde_json::json!({"app.kubernetes.io/instance": "cache"});
        if let Some(role) = role {
            labels["ordinal.dev/role"] = role.into();
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .expect("pod")
    }

    fn backup(name: &str, cluster: &str, created: &str, phase: &str) -> Backup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"cluster": {"kind": "RedisReplication", "name": cluster},
                     "target": {"pvc": {"claimName": "b"}}},
            "status": {"phase": phase, "sizeBytes": 3 * 1024 * 1024, "artifact": format!("pvc://b/{name}")},
        }))
        .expect("backup")
    }

    fn status() -> serde_json::Value {
        serde_json::json!({
            "phase": "Running", "primary": 1, "term": 4, "readyReplicas": 2, "replicas": 3,
            "members": [
                {"ordinal": 0, "pod": "cache-0", "role": "Replica", "reachable": true, "source": 1, "linkUp": true, "lag": 2048, "offset": 1000},
                {"ordinal": 1, "pod": "cache-1", "role": "Primary", "reachable": true, "offset": 3048},
                {"ordinal": 2, "pod": "cache-2", "role": "Unknown", "reachable": false, "message": "connection refused"},
            ],
            "lastFailover": {"kind": "Switchover", "from": 0, "to": 1, "time": "2026-11-30T11:55:00Z", "reason": "spec.primary asks for cache-1"},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "PrimaryAcceptsWrites", "message": "primary cache-1 accepts writes", "lastTransitionTime": "2026-11-30T11:00:00Z"},
                {"type": "ReplicationHealthy", "status": "False", "reason": "MemberDown", "message": "cache-2 is down", "lastTransitionTime": "2026-11-30T11:00:00Z"},
            ],
        })
    }

    fn report() -> StatusReport {
        let pods = [
            pod("cache-0", Some("replica"), true),
            pod("cache-1", Some("primary"), true),
            pod("cache-2", None, false),
        ];
        let backups = [
            backup("old", "cache", "2026-11-30T10:00:00Z", "Succeeded"),
            backup("newest", "cache", "2026-11-30T11:50:00Z", "Failed"),
            backup("other", "db", "2026-11-30T11:59:00Z", "Succeeded"),
        ];
        build(&redis(status(), serde_json::json!({})), &pods, &backups)
    }

    #[test]
    fn report_joins_status_pods_and_backups() {
        let r = report();
        assert_eq!(
            (r.primary, r.desired_primary, r.term),
            (Some(1), Some(2), 4)
        );
        assert_eq!(r.members.len(), 3);
        let roles: Vec<_> = r
            .members
            .iter()
            .map(|m| (m.role, m.role_label.clone()))
            .collect();
        assert_eq!(
            roles,
            vec![
                (MemberRole::Replica, Some("replica".into())),
                (MemberRole::Primary, Some("primary".into())),
                (MemberRole::Unknown, None),
            ]
        );
        assert!(r.members[0].pod_ready && !r.members[2].pod_ready);
        // Backups of other clusters are ignored; newest first, and the
        // newest success is named when the newest is not one.
        assert_eq!(
            r.last_backup.as_ref().map(|b| b.name.as_str()),
            Some("newest")
        );
        assert_eq!(
            r.last_successful_backup.as_ref().map(|b| b.name.as_str()),
            Some("old")
        );
        assert!(!r.paused);
    }

    #[test]
    fn tree_has_one_line_per_member_under_members() {
        let r = report();
        let text = render(&r, now());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RedisReplication shop/cache (redis): Running"));
        assert!(lines[0].contains("primary cache-1") && lines[0].contains("term 4"));
        // Every line after the root hangs off the tree.
        for line in &lines[1..] {
            assert!(
                ["├── ", "└── ", "│   ", "    "]
                    .iter()
                    .any(|p| line.starts_with(p)),
                "{line:?}"
            );
        }
        let at = lines
            .iter()
            .position(|l| l.contains("Members (2/3 ready)"))
            .expect("members branch");
        let members = &lines[at + 1..at + 1 + r.members.len()];
        for (m, line) in r.members.iter().zip(members) {
            let body = line.trim_start_matches(['│', ' ', '├', '└', '─']);
            assert!(body.starts_with(&m.pod), "{line:?}");
            assert!(body.contains(role_word(m.role)), "{line:?}");
        }
        assert!(members[0].contains("from cache-1") && members[0].contains("lag 2.0 KiB"));
        assert!(members[2].contains("unreachable") && members[2].contains("pod not ready"));
        assert!(members[2].contains("connection refused"));
        assert!(
            text.contains("switchover pending"),
            "spec.primary 2 differs from 1"
        );
        assert!(text.contains("Last failover: Switchover cache-0 → cache-1, 5m ago"));
        assert!(text.contains("Last backup: newest Failed"));
        assert!(text.contains("last Succeeded: old Succeeded") && text.contains("3.0 MiB"));
        assert!(text.contains("ReplicationHealthy=False MemberDown: cache-2 is down"));
        assert!(text.contains("Operation: none"));
        assert!(!text.contains("PAUSED"));
        // The last branch closes the tree.
        let last_branch = lines
            .iter()
            .rposition(|l| l.starts_with("└── "))
            .expect("last");
        assert!(lines[last_branch].contains("Conditions"));
    }

    #[test]
    fn a_label_that_disagrees_with_the_role_is_shown() {
        let mut r = report();
        r.members[1].role_label = None;
        let text = render(&r, now());
        let line = text
            .lines()
            .find(|l| l.contains("cache-1  primary"))
            .expect("line");
        assert!(line.contains("label (none)"), "{line}");
        let ok = render(&report(), now());
        let line = ok
            .lines()
            .find(|l| l.contains("cache-1  primary"))
            .expect("line");
        assert!(!line.contains("label"), "{line}");
    }

    #[test]
    fn paused_and_operation_are_visible() {
        let mut s = status();
        s["operation"] = serde_json::json!({"kind": "Switchover", "from": 1, "to": 2, "step": "AwaitFailover", "term": 5,
            "startedAt": "2026-11-30T11:59:30Z", "reason": "spec.primary asks for cache-2"});
        s["conditions"].as_array_mut().expect("conditions").push(serde_json::json!(
            {"type": "Paused", "status": "True", "reason": "PausedByAnnotation", "message": "", "lastTransitionTime": "2026-11-30T11:00:00Z"}));
        let r = build(
            &redis(s, serde_json::json!({"ordinal.dev/paused": "true"})),
            &[],
            &[],
        );
        assert!(r.paused && r.pause_confirmed);
        let text = render(&r, now());
        assert!(text.contains("PAUSED") && text.contains("the operator changes nothing"));
        assert!(text.contains(
            "Operation: Switchover cache-1 → cache-2, step AwaitFailover, term 5, started 30s ago"
        ));
        assert!(text.contains("Last backup: none"));
        // Members without pods are still listed, none ready.
        assert_eq!(r.members.iter().filter(|m| m.pod_ready).count(), 0);
    }

    #[test]
    fn structured_output_names_the_fields() {
        let r = report();
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["members"][1]["role"], "Primary");
        assert_eq!(json["members"][1]["roleLabel"], "primary");
        assert_eq!(json["lastBackup"]["name"], "newest");
        assert_eq!(json["conditions"][0]["type"], "Ready");
        let yaml = serde_yaml::to_string(&r).expect("yaml");
        let back: serde_json::Value = serde_yaml::from_str(&yaml).expect("parse yaml");
        assert_eq!(back, json);
    }

    #[test]
    fn ages_and_sizes_read_like_kubectl() {
        let t = |secs: i64| {
            let now = now();
            age(
                &time(&(now - chrono::Duration::seconds(secs)).to_rfc3339()),
                now,
            )
        };
        assert_eq!(
            [
                t(5),
                t(119),
                t(120),
                t(3599),
                t(3600),
                t(3660 + 3600),
                t(30 * 3600),
                t(3 * 86400)
            ],
            ["5s", "119s", "2m", "59m", "1h", "2h1m", "30h", "3d"]
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
