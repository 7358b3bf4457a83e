//! The commands: read, change one field, follow the operator's answer.

use std::io::Read as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::cluster::{self, Cluster, ClusterArg, Kind, api_error};
use super::report;
use super::{
    BackupArgs, CredentialsArgs, Global, Output, PauseArgs, RestoreArgs, StatusArgs, SwitchoverArgs,
};
use crate::api::backup::{Backup, BackupPhase, BackupSchedule, BackupTarget, MAX_BACKUP_NAME};
use crate::api::condition;
use crate::api::{MySQLCluster, RedisReplication};
use crate::resources::{DbKind, secret};

/// What every command works with.
pub struct Ctx {
    pub client: Client,
    pub ns: String,
    pub global: Global,
}

const POLL: Duration = Duration::from_millis(500);

async fn fetch(ctx: &Ctx, arg: &ClusterArg) -> anyhow::Result<Cluster> {
    cluster::fetch(&ctx.client, &ctx.ns, arg).await
}

fn condition_of<'a>(
    c: &'a Cluster,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    c.status()?.conditions.iter().find(|x| x.type_ == type_)
}

/// The end of a wait.
struct Deadline(Instant);

impl Deadline {
    fn new(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    /// Sleep one poll interval; false once the deadline has passed.
    async fn sleep(&self) -> bool {
        if Instant::now() >= self.0 {
            return false;
        }
        tokio::time::sleep(POLL).await;
        true
    }
}

// ---------------------------------------------------------------- status

pub async fn status(ctx: &Ctx, args: StatusArgs) -> anyhow::Result<()> {
    let c = fetch(ctx, &args.cluster).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let selector = format!(
        "{}={},{}={}",
        crate::resources::labels::INSTANCE,
        c.name(),
        crate::resources::labels::NAME,
        c.db_kind().app()
    );
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error)
        .context("list the cluster's pods")?
        .items;
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    // Backups are optional to read (RBAC may not allow it): say so, go on.
    let backups = match backups.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!("warning: cannot list Backups: {}", api_error(e));
            vec![]
        }
    };
    let r = report::build(&c, &pods, &backups);
    match args.output {
        Output::Text => print!("{}", report::render(&r, chrono::Utc::now())),
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(&r)?),
    }
    Ok(())
}

// ------------------------------------------------------------ switchover

/// Why a switchover to `to` cannot be asked for, if it cannot.
pub fn switchover_refusal(c: &Cluster, to: i32) -> Option<String> {
    let n = c.replicas();
    if to < 0 || to >= n {
        return Some(format!(
            "{} has {n} member{} (ordinals 0..{}); --to {to} is not one of them",
            c.display(),
            if n == 1 { "" } else { "s" },
            n - 1
        ));
    }
    if c.paused() {
        return Some(format!(
            "{} is paused (annotation ordinal.dev/paused): the operator would not act; run `kubectl ordinal resume {}` first",
            c.display(),
            c.display()
        ));
    }
    let member = c.status()?.members.iter().find(|m| m.ordinal == to)?;
    if member.role == crate::api::MemberRole::Quarantined {
        return Some(format!(
            "{} is quarantined (it holds data the primary lacks or is otherwise unsafe); the operator never promotes it",
            member.pod
        ));
    }
    None
}

pub async fn switchover(ctx: &Ctx, args: SwitchoverArgs) -> anyhow::Result<()> {
    let c = fetch(ctx, &args.cluster).await?;
    if let Some(why) = switchover_refusal(&c, args.to) {
        bail!("{why}");
    }
    let pod = format!("{}-{}", c.name(), args.to);
    let current = c.status().and_then(|s| s.replication.primary);
    let generation = cluster::merge_patch(
        &ctx.client,
        &c,
        &serde_json::json!({"spec": {"primary": args.to}}),
    )
    .await?
    .unwrap_or(0);
    if current == Some(args.to) {
        println!(
            "{pod} is already the primary of {}; spec.primary = {} set",
            c.display(),
            args.to
        );
        return Ok(());
    }
    println!(
        "{}: spec.primary = {} (switchover {} → {pod} requested)",
        c.display(),
        args.to,
        current.map_or("(no primary)".to_string(), |p| format!("{}-{p}", c.name()))
    );
    if args.no_wait {
        return Ok(());
    }
    let mut last_step = String::new();
    let done = {
        let deadline = Deadline::new(args.timeout);
        loop {
            let found: anyhow::Result<Option<_>> = async {
                let now = cluster::refresh(&ctx.client, &c).await?;
                let Some(s) = now.status() else {
                    return Ok(None);
                };
                if let Some(op) = &s.replication.operation {
                    let step = format!("{:?} at step {}", op.kind, op.step);
                    if step != last_step {
                        println!("  {step}");
                        last_step = step;
                    }
                    return Ok(None);
                }
                let caught_up = s.observed_generation.unwrap_or(0) >= generation;
                if caught_up && s.replication.primary == Some(args.to) {
                    return Ok(Some(Ok(now)));
                }
                let health = condition_of(&now, condition::REPLICATION_HEALTHY);
                if caught_up && let Some(h) = health.filter(|h| h.reason == "SwitchoverFailed") {
                    return Ok(Some(Err(h.message.clone())));
                }
                Ok(None)
            }
            .await;
            if let Some(v) = found? {
                break Some(v);
            }
            if !deadline.sleep().await {
                break None;
            }
        }
    };
    match done {
        Some(Ok(now)) => {
            let term = now.status().map_or(0, |s| s.replication.term);
            println!("{pod} is the primary of {} (term {term})", c.display());
            Ok(())
        }
        Some(Err(why)) => bail!("switchover to {pod} failed: {why}"),
        None => {
            let now = cluster::refresh(&ctx.client, &c).await?;
            let health = condition_of(&now, condition::REPLICATION_HEALTHY)
                .map(|h| format!("{}: {}", h.reason, h.message))
                .unwrap_or_else(|| "no status".into());
            bail!(
                "{pod} is not the primary after {}s (spec.primary stays {}; the operator keeps trying): {health}",
                args.timeout.as_secs(),
                args.to
            )
        }
    }
}

// ---------------------------------------------------------------- backup

/// Default Backup name: `<cluster>-<yyyymmdd-hhmmss>`, the cluster part
/// shortened so the whole fits [`MAX_BACKUP_NAME`].
pub fn backup_name(cluster: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let stamp = now.format("%Y%m%d-%H%M%S").to_string();
    let room = MAX_BACKUP_NAME - stamp.len() - 1;
    let prefix: String = cluster.chars().take(room).collect();
    format!("{}-{stamp}", prefix.trim_end_matches('-'))
}

/// Where a backup goes: the flags, else the target the cluster's
/// BackupSchedules use (when they agree), else its newest Backup's.
pub fn choose_target(
    args_pvc: Option<(&str, Option<&str>)>,
    file: Option<BackupTarget>,
    c: &Cluster,
    schedules: &[BackupSchedule],
    backups: &[Backup],
) -> anyhow::Result<(BackupTarget, String)> {
    if let Some((claim, path)) = args_pvc {
        let target =
            serde_json::from_value(serde_json::json!({"pvc": {"claimName": claim, "path": path}}))?;
        return Ok((target, format!("PVC {claim}")));
    }
    if let Some(t) = file {
        return Ok((t, "--target-file".into()));
    }
    let kind = c.kind().backup_kind();
    let name = c.name();
    let mut scheduled: Vec<&BackupSchedule> = schedules
        .iter()
        .filter(|s| s.spec.cluster.name == name && s.spec.cluster.kind == kind)
        .collect();
    scheduled.sort_by_key(|s| s.name_any());
    if let Some(first) = scheduled.first() {
        if scheduled.iter().all(|s| s.spec.target == first.spec.target) {
            return Ok((
                first.spec.target.clone(),
                format!("the target of BackupSchedule {}", first.name_any()),
            ));
        }
        bail!(
            "the BackupSchedules of {} use different targets ({}); pick one with --pvc or --target-file",
            c.display(),
            scheduled
                .iter()
                .map(|s| s.name_any())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let newest = backups
        .iter()
        .filter(|b| b.spec.cluster.name == name && b.spec.cluster.kind == kind)
        .max_by_key(|b| {
            b.metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_millisecond())
        });
    if let Some(b) = newest {
        return Ok((
            b.spec.target.clone(),
            format!("the target of the last Backup {}", b.name_any()),
        ));
    }
    bail!(
        "no backup target for {}: pass --pvc CLAIM or --target-file FILE (YAML of a Backup's spec.target), or create a BackupSchedule for it",
        c.display()
    )
}

fn read_target_file(path: &std::path::Path) -> anyhow::Result<BackupTarget> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the target from stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?
    };
    serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is not a backup target (YAML or JSON with one of s3, gcs, azure, pvc)",
            path.display()
        )
    })
}

pub async fn backup(ctx: &Ctx, args: BackupArgs) -> anyhow::Result<()> {
    let c = fetch(ctx, &args.cluster).await?;
    let file = args
        .target_file
        .as_deref()
        .map(read_target_file)
        .transpose()?;
    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let (schedules, backups) = if args.pvc.is_none() && file.is_none() {
        let schedules: Api<BackupSchedule> = Api::namespaced(ctx.client.clone(), &ctx.ns);
        let s = schedules
            .list(&ListParams::default())
            .await
            .map_err(api_error)
            .context("list BackupSchedules")?;
        let b = backups_api
            .list(&ListParams::default())
            .await
            .map_err(api_error)
            .context("list Backups")?;
        (s.items, b.items)
    } else {
        (vec![], vec![])
    };
    let (target, from) = choose_target(
        args.pvc.as_deref().map(|p| (p, args.path.as_deref())),
        file,
        &c,
        &schedules,
        &backups,
    )?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| backup_name(&c.name(), chrono::Utc::now()));
    let object: Backup = serde_json::from_value(serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": name, "namespace": ctx.ns},
        "spec": {"cluster": {"kind": c.kind().backup_kind(), "name": c.name()},
                 "target": target, "verify": args.verify},
    }))?;
    backups_api
        .create(&PostParams::default(), &object)
        .await
        .map_err(api_error)
        .with_context(|| format!("create Backup {name}"))?;
    println!("backup/{name} created for {} ({from})", c.display());
    if args.no_wait {
        return Ok(());
    }
    let mut last = None;
    let finished = {
        let deadline = Deadline::new(args.timeout);
        loop {
            let found: anyhow::Result<Option<_>> = async {
                let b = backups_api
                    .get(&name)
                    .await
                    .map_err(api_error)
                    .context("read the Backup")?;
                let s = b.status.clone().unwrap_or_default();
                if last != Some(s.phase) {
                    let source = s
                        .source
                        .as_deref()
                        .map(|x| format!(" (from {x})"))
                        .unwrap_or_default();
                    println!("  {:?}{source}", s.phase);
                    last = Some(s.phase);
                }
                let verified = s.conditions.iter().find(|x| x.type_ == "Verified");
                let waiting_for_verify = args.verify && verified.is_none();
                Ok(match s.phase {
                    BackupPhase::Failed => Some(b),
                    BackupPhase::Succeeded if !waiting_for_verify => Some(b),
                    _ => None,
                })
            }
            .await;
            if let Some(v) = found? {
                break Some(v);
            }
            if !deadline.sleep().await {
                break None;
            }
        }
    };
    let Some(b) = finished else {
        bail!(
            "backup/{name} did not finish within {}s; follow it with `kubectl get backup {name} -n {} -w`",
            args.timeout.as_secs(),
            ctx.ns
        );
    };
    let s = b.status.unwrap_or_default();
    if s.phase == BackupPhase::Failed {
        bail!("backup/{name} Failed: {}", s.message.unwrap_or_default());
    }
    println!(
        "backup/{name} Succeeded: {} at position {}, {}, sha256 {}",
        s.artifact.unwrap_or_default(),
        s.position.unwrap_or_default(),
        report::bytes(s.size_bytes.unwrap_or(0)),
        s.sha256.unwrap_or_default()
    );
    if let Some(v) = s.conditions.iter().find(|x| x.type_ == "Verified") {
        if v.status != "True" {
            bail!("backup/{name} is not verified: {}: {}", v.reason, v.message);
        }
        println!("verified: {}", v.message);
    }
    Ok(())
}

// --------------------------------------------------------------- restore

/// The new cluster's manifest: the backed-up cluster's spec when it still
/// exists (without `primary`), else the defaults; `spec.restore.backup` set.
pub fn restore_manifest(
    kind: Kind,
    name: &str,
    ns: &str,
    backup: &str,
    source_spec: Option<serde_json::Value>,
    replicas: Option<i32>,
) -> serde_json::Value {
    let mut spec = source_spec.unwrap_or_else(|| serde_json::json!({"replicas": 1}));
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("primary");
        obj.insert("restore".into(), serde_json::json!({"backup": backup}));
        if let Some(n) = replicas {
            obj.insert("replicas".into(), n.into());
        }
    }
    serde_json::json!({
        "apiVersion": "ordinal.dev/v1alpha1",
        "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

pub async fn restore(ctx: &Ctx, args: RestoreArgs) -> anyhow::Result<()> {
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let b = backups
        .get_opt(&args.backup)
        .await
        .map_err(api_error)
        .context("read the Backup")?
        .with_context(|| format!("no Backup named {} in namespace {}", args.backup, ctx.ns))?;
    let phase = b.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase != BackupPhase::Succeeded {
        bail!(
            "Backup {} is {phase:?}; only a Succeeded Backup can be restored",
            args.backup
        );
    }
    let kind = Kind::from_backup_kind(b.spec.cluster.kind);
    let exists = cluster::fetch(
        &ctx.client,
        &ctx.ns,
        &ClusterArg {
            kind: None,
            name: args.name.clone(),
        },
    )
    .await;
    if exists.is_ok() {
        bail!(
            "a cluster named {} exists in namespace {}: a restore bootstraps a new cluster only (the operator never restores over one that runs)",
            args.name,
            ctx.ns
        );
    }
    let source = cluster::fetch(
        &ctx.client,
        &ctx.ns,
        &ClusterArg {
            kind: Some(kind),
            name: b.spec.cluster.name.clone(),
        },
    )
    .await
    .ok();
    let source_spec = match &source {
        Some(Cluster::Redis(r)) => Some(serde_json::to_value(&r.spec)?),
        Some(Cluster::MySql(m)) => Some(serde_json::to_value(&m.spec)?),
        None => None,
    };
    if source_spec.is_none() {
        eprintln!(
            "note: {} {} no longer exists; the new cluster gets the defaults (use --replicas, or --dry-run and edit)",
            kind, b.spec.cluster.name
        );
    }
    let manifest = restore_manifest(
        kind,
        &args.name,
        &ctx.ns,
        &args.backup,
        source_spec,
        args.replicas,
    );
    if args.dry_run {
        print!("{}", serde_yaml::to_string(&manifest)?);
        return Ok(());
    }
    let pp = PostParams::default();
    match kind {
        Kind::Redis => {
            let obj: RedisReplication = serde_json::from_value(manifest)?;
            Api::<RedisReplication>::namespaced(ctx.client.clone(), &ctx.ns)
                .create(&pp, &obj)
                .await
                .map(|_| ())
        }
        Kind::MySql => {
            let obj: MySQLCluster = serde_json::from_value(manifest)?;
            Api::<MySQLCluster>::namespaced(ctx.client.clone(), &ctx.ns)
                .create(&pp, &obj)
                .await
                .map(|_| ())
        }
    }
    .map_err(api_error)
    .with_context(|| format!("create {kind} {}", args.name))?;
    println!(
        "{kind} {}/{} created from backup/{}",
        ctx.ns, args.name, args.backup
    );
    if args.no_wait {
        return Ok(());
    }
    let arg = ClusterArg {
        kind: Some(kind),
        name: args.name.clone(),
    };
    let mut last = String::new();
    let done = {
        let deadline = Deadline::new(args.timeout);
        loop {
            let found: anyhow::Result<Option<_>> = async {
                let c = fetch(ctx, &arg).await?;
                if let Some(r) = condition_of(&c, condition::RESTORED) {
                    let line = format!("{}={} {}", r.type_, r.status, r.reason);
                    if line != last {
                        println!("  {line}: {}", r.message);
                        last = line;
                    }
                    if r.reason == "RestoreFailed" {
                        return Ok(Some(Err(r.message.clone())));
                    }
                }
                let restored =
                    condition_of(&c, condition::RESTORED).is_some_and(|r| r.status == "True");
                let ready = condition_of(&c, condition::READY).is_some_and(|r| r.status == "True");
                Ok((restored && ready).then_some(Ok(())))
            }
            .await;
            if let Some(v) = found? {
                break Some(v);
            }
            if !deadline.sleep().await {
                break None;
            }
        }
    };
    match done {
        Some(Ok(())) => {
            println!("{kind} {}/{} is restored and Ready", ctx.ns, args.name);
            Ok(())
        }
        Some(Err(why)) => bail!("restore of {} failed: {why}", args.name),
        None => bail!(
            "{} is not restored and Ready after {}s; see `kubectl ordinal status {}`",
            args.name,
            args.timeout.as_secs(),
            args.name
        ),
    }
}

// ----------------------------------------------------------- credentials

/// Shell-quote one word (single quotes).
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What `credentials` prints, from the cluster and (with --show-passwords)
/// the password.
pub fn credentials_text(
    c: &Cluster,
    global: &Global,
    domain: &str,
    password: Option<&str>,
) -> String {
    let (ns, name, secret) = (c.namespace(), c.name(), c.secret_name());
    let kind = c.db_kind();
    let port = kind.port();
    let write = format!("{name}-primary.{ns}.svc.{domain}");
    let read = format!("{name}-read.{ns}.svc.{domain}");
    let key = match kind {
        DbKind::Redis => secret::REDIS_PASSWORD,
        DbKind::MySql(_) => secret::MYSQL_ROOT,
    };
    let mut kubectl = vec!["kubectl".to_string()];
    if let Some(k) = &global.kubeconfig {
        kubectl.push(format!("--kubeconfig={}", quote(&k.display().to_string())));
    }
    if let Some(ctx) = &global.context {
        kubectl.push(format!("--context={}", quote(ctx)));
    }
    // A key with '-' needs jsonpath's bracket form.
    let jsonpath = if key.contains('-') {
        format!("jsonpath=\"{{.data['{key}']}}\"")
    } else {
        format!("jsonpath=\"{{.data.{key}}}\"")
    };
    kubectl.extend([
        "-n".into(),
        quote(&ns),
        "get".into(),
        "secret".into(),
        quote(&secret),
        "-o".into(),
        jsonpath,
    ]);
    let from_secret = format!("\"$({} | base64 -d)\"", kubectl.join(" "));
    let pw = match password {
        Some(p) => quote(p),
        None => from_secret,
    };
    let (env, client, user) = match kind {
        DbKind::Redis => (
            "REDISCLI_AUTH",
            format!("redis-cli -h {write} -p {port}"),
            "default user (requirepass)".to_string(),
        ),
        DbKind::MySql(_) => (
            "MYSQL_PWD",
            format!("mysql -h {write} -P {port} -u root"),
            "root".to_string(),
        ),
    };
    let mut out = String::new();
    out.push_str(&format!("{} {ns}/{name}\n", c.kind()));
    out.push_str(&format!("  Secret:  {secret} (key {key}; user {user})\n"));
    out.push_str(&format!(
        "  Write:   {write}:{port} (Service {name}-primary, the primary)\n"
    ));
    out.push_str(&format!(
        "  Read:    {read}:{port} (Service {name}-read, the replicas)\n"
    ));
    if let Some(p) = password {
        out.push_str(&format!("  Password: {p}\n"));
    }
    out.push_str("Connect (from inside the cluster network):\n");
    out.push_str(&format!("  {env}={pw} {client}\n"));
    out
}

pub async fn credentials(ctx: &Ctx, args: CredentialsArgs) -> anyhow::Result<()> {
    let c = fetch(ctx, &args.cluster).await?;
    let password = if args.show_passwords {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(ctx.client.clone(), &ctx.ns);
        let name = c.secret_name();
        let s = secrets
            .get(&name)
            .await
            .map_err(api_error)
            .with_context(|| format!("read Secret {name}"))?;
        let key = match c.db_kind() {
            DbKind::Redis => secret::REDIS_PASSWORD,
            DbKind::MySql(_) => secret::MYSQL_ROOT,
        };
        let bytes = s
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .with_context(|| format!("Secret {name} has no key {key}"))?;
        Some(
            String::from_utf8(bytes.0.clone())
                .with_context(|| format!("key {key} of Secret {name} is not UTF-8"))?,
        )
    } else {
        None
    };
    print!(
        "{}",
        credentials_text(&c, &ctx.global, &args.cluster_domain, password.as_deref())
    );
    Ok(())
}

// ---------------------------------------------------------- pause/resume

pub async fn pause(ctx: &Ctx, args: PauseArgs, pause: bool) -> anyhow::Result<()> {
    let c = fetch(ctx, &args.cluster).await?;
    let value = if pause {
        serde_json::json!("true")
    } else {
        serde_json::Value::Null
    };
    cluster::merge_patch(
        &ctx.client,
        &c,
        &serde_json::json!({"metadata": {"annotations": {crate::api::PAUSED_ANNOTATION: value}}}),
    )
    .await?;
    let verb = if pause { "paused" } else { "resumed" };
    if args.no_wait {
        println!(
            "{} {verb} (annotation {})",
            c.display(),
            if pause { "set" } else { "removed" }
        );
        return Ok(());
    }
    let confirmed = {
        let deadline = Deadline::new(args.timeout);
        loop {
            let found: anyhow::Result<Option<_>> = async {
                let now = cluster::refresh(&ctx.client, &c).await?;
                let is_paused =
                    condition_of(&now, condition::PAUSED).is_some_and(|p| p.status == "True");
                Ok((is_paused == pause).then_some(()))
            }
            .await;
            if let Some(v) = found? {
                break Some(v);
            }
            if !deadline.sleep().await {
                break None;
            }
        }
    };
    match confirmed {
        Some(()) if pause => {
            println!(
                "{} paused: the operator changes nothing until `kubectl ordinal resume {}`",
                c.display(),
                c.display()
            );
            Ok(())
        }
        Some(()) => {
            println!("{} resumed: the operator reconciles it again", c.display());
            Ok(())
        }
        None => bail!(
            "annotation {} {} on {}, but the operator did not confirm within {}s (is it running?)",
            crate::api::PAUSED_ANNOTATION,
            if pause { "set" } else { "removed" },
            c.display(),
            args.timeout.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(json: serde_json::Value) -> Cluster {
        let mut base = serde_json::json!({
            "apiVersion": "ordinal.dev/v1alpha1", "kind": "RedisReplication",
            "metadata": {"name": "cache", "namespace": "shop"},
            "spec": {"replicas": 3},
        });
        merge(&mut base, json);
        Cluster::Redis(serde_json::from_value(base).expect("cluster"))
    }

    fn mysql() -> Cluster {
        Cluster::MySql(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ordinal.dev/v1alpha1", "kind": "MySQLCluster",
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"replicas": 2, "auth": {"secretName": "db-creds"}},
            }))
            .expect("cluster"),
        )
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn switchover_refuses_what_the_operator_cannot_do() {
        let c = redis(serde_json::json!({}));
        assert!(switchover_refusal(&c, 2).is_none());
        for bad in [3, -1, 17] {
            let why = switchover_refusal(&c, bad).expect("refused");
            assert!(
                why.contains("has 3 members") && why.contains(&format!("--to {bad}")),
                "{why}"
            );
        }
        let paused =
            redis(serde_json::json!({"metadata": {"annotations": {"ordinal.dev/paused": "true"}}}));
        assert!(
            switchover_refusal(&paused, 1)
                .expect("paused")
                .contains("resume")
        );
        let quarantined = redis(serde_json::json!({"status": {"members": [
            {"ordinal": 1, "pod": "cache-1", "role": "Quarantined", "reachable": true}]}}));
        assert!(
            switchover_refusal(&quarantined, 1)
                .expect("quarantined")
                .contains("quarantined")
        );
        assert!(switchover_refusal(&quarantined, 2).is_none());
    }

    #[test]
    fn backup_names_fit_the_limit() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-30T12:34:56Z".parse().expect("now");
        assert_eq!(backup_name("cache", now), "cache-20261130-123456");
        let long = "a".repeat(52);
        let name = backup_name(&long, now);
        assert_eq!(name.len(), MAX_BACKUP_NAME);
        assert!(name.ends_with("-20261130-123456"));
        let dashed = format!("{}-{}", "b".repeat(38), "c".repeat(13));
        assert!(!backup_name(&dashed, now).contains("--"));
    }

    fn schedule(name: &str, cluster: &str, claim: &str) -> BackupSchedule {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ordinal.dev/v1alpha1", "kind": "BackupSchedule",
            "metadata": {"name": name},
            "spec": {"schedule": "@daily", "cluster": {"kind": "RedisReplication", "name": cluster},
                     "target": {"pvc": {"claimName": claim}}},
        }))
        .expect("schedule")
    }

    fn backup(name: &str, claim: &str, created: &str) -> Backup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ordinal.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"cluster": {"kind": "RedisReplication", "name": "cache"},
                     "target": {"pvc": {"claimName": claim}}},
        }))
        .expect("backup")
    }

    fn claim(t: &BackupTarget) -> &str {
        &t.pvc.as_ref().expect("pvc").claim_name
    }

    #[test]
    fn the_target_comes_from_flags_then_schedules_then_backups() {
        let c = redis(serde_json::json!({}));
        let (t, _) = choose_target(Some(("flag", Some("dir"))), None, &c, &[], &[]).expect("flag");
        assert_eq!(
            (claim(&t), t.pvc.as_ref().and_then(|p| p.path.as_deref())),
            ("flag", Some("dir"))
        );
        let schedules = [
            schedule("other", "db", "x"),
            schedule("nightly", "cache", "sched"),
        ];
        let backups = [
            backup("old", "b-old", "2026-01-01T00:00:00Z"),
            backup("new", "b-new", "2026-02-01T00:00:00Z"),
        ];
        let (t, from) = choose_target(None, None, &c, &schedules, &backups).expect("schedule");
        assert_eq!(claim(&t), "sched");
        assert!(from.contains("nightly"), "{from}");
        let (t, from) = choose_target(None, None, &c, &schedules[..1], &backups).expect("backup");
        assert_eq!(claim(&t), "b-new");
        assert!(from.contains("new"), "{from}");
        let err = choose_target(None, None, &c, &schedules[..1], &[]).expect_err("nothing");
        assert!(err.to_string().contains("--pvc"), "{err}");
        let split = [schedule("a", "cache", "one"), schedule("b", "cache", "two")];
        let err = choose_target(None, None, &c, &split, &[]).expect_err("ambiguous");
        assert!(err.to_string().contains("different targets"), "{err}");
    }

    #[test]
    fn restore_copies_the_source_spec_but_not_its_primary() {
        let source =
            serde_json::json!({"replicas": 3, "primary": 2, "config": {"maxmemory": "64mb"}});
        let m = restore_manifest(Kind::Redis, "cache2", "shop", "cache-1", Some(source), None);
        let obj: RedisReplication =
            serde_json::from_value(m.clone()).expect("a valid RedisReplication");
        assert_eq!(obj.spec.replicas, 3);
        assert_eq!(obj.spec.primary, None);
        assert_eq!(
            obj.spec.restore.as_ref().map(|r| r.backup.as_str()),
            Some("cache-1")
        );
        assert_eq!(
            obj.spec.config.get("maxmemory").map(String::as_str),
            Some("64mb")
        );
        assert_eq!(obj.metadata.name.as_deref(), Some("cache2"));
        let m = restore_manifest(Kind::MySql, "db2", "shop", "db-1", None, Some(2));
        let obj: MySQLCluster = serde_json::from_value(m).expect("a valid MySQLCluster");
        assert_eq!(
            (obj.spec.replicas, obj.spec.restore.map(|r| r.backup)),
            (2, Some("db-1".into()))
        );
    }

    #[test]
    fn credentials_read_the_password_from_the_secret_unless_asked() {
        let global = Global {
            context: Some("prod".into()),
            ..Default::default()
        };
        let text = credentials_text(
            &redis(serde_json::json!({})),
            &global,
            "cluster.local",
            None,
        );
        assert!(text.contains("Secret:  cache-auth (key password"), "{text}");
        assert!(
            text.contains("cache-primary.shop.svc.cluster.local:6379"),
            "{text}"
        );
        assert!(
            text.contains("cache-read.shop.svc.cluster.local:6379"),
            "{text}"
        );
        let command = text.lines().last().expect("command").trim();
        assert!(command.starts_with("REDISCLI_AUTH=\"$(kubectl --context=prod -n shop get secret cache-auth -o jsonpath=\"{.data.password}\" | base64 -d)\" redis-cli -h cache-primary.shop.svc.cluster.local -p 6379"), "{command}");
        let text = credentials_text(&mysql(), &Global::default(), "example.org", Some("s3cr'et"));
        assert!(
            text.contains("Secret:  db-creds (key root-password"),
            "{text}"
        );
        assert!(text.contains("Password: s3cr'et"), "{text}");
        let command = text.lines().last().expect("command").trim();
        assert_eq!(
            command,
            r"MYSQL_PWD='s3cr'\''et' mysql -h db-primary.shop.svc.example.org -P 3306 -u root"
        );
    }

    #[test]
    fn a_key_with_a_dash_uses_bracket_jsonpath() {
        let text = credentials_text(&mysql(), &Global::default(), "cluster.local", None);
        assert!(
            text.contains(r#"jsonpath="{.data['root-password']}""#),
            "{text}"
        );
    }
}
