//! Typed conditions of a cluster resource: which types exist, which status
//! they can have and every reason Ordinal itself sets. Engine health reasons
//! (CamelCase words chosen by an engine) pass through as [`Reason::Engine`].
//! A leaf module: it imports nothing from the reconcilers.

use std::fmt;

use crate::api::condition as names;

/// Condition types set on `RedisReplication` and `MySQLCluster`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The write Service has a primary that accepts writes.
    Ready,
    ReplicationHealthy,
    FailoverInProgress,
    ConfigValid,
    StorageInSync,
    Restored,
    /// The children (ConfigMap, Services, PDB, StatefulSet, labels) were applied.
    Reconciled,
    /// Reconciling is stopped by annotation `ordinal.dev/paused`.
    Paused,
    /// A rolling update is in progress (or paused, stalled, refused).
    Updating,
    /// A member is being wiped and re-seeded (or the request was refused).
    Replacing,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => names::READY,
            Self::ReplicationHealthy => names::REPLICATION_HEALTHY,
            Self::FailoverInProgress => names::FAILOVER_IN_PROGRESS,
            Self::ConfigValid => names::CONFIG_VALID,
            Self::StorageInSync => names::STORAGE_IN_SYNC,
            Self::Restored => names::RESTORED,
            Self::Reconciled => "Reconciled",
            Self::Paused => names::PAUSED,
            Self::Updating => names::UPDATING,
            Self::Replacing => names::REPLACING,
        }
    }
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Why a condition has its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    // ConfigValid
    Valid,
    InvalidSpec,
    // StorageInSync
    InSync,
    ImmutableStorage,
    // Reconciled
    Applied,
    ChildApplyFailed,
    // ReplicationHealthy
    Replicating,
    NotObserved,
    // FailoverInProgress
    Idle,
    Failover,
    Switchover,
    // Restored
    BackupNotReady,
    Restoring,
    RestoreFailed,
    Restored,
    // Ready
    PrimaryAcceptsWrites,
    NoPrimary,
    MembersNotReady,
    /// The primary answers writes with an error (the engine's reason in the message).
    PrimaryRefusesWrites,
    // Paused
    PausedByAnnotation,
    // Updating
    UpToDate,
    RollingUpdate,
    RolloutSwitchover,
    RolloutPaused,
    RolloutStalled,
    DowngradeRefused,
    // StorageInSync, after spec.storage.size grew
    VolumesExpanded,
    VolumesExpanding,
    ExpansionNotSupported,
    // Replacing
    NoReplacement,
    ReplaceRefused,
    Reseeding,
    Replaced,
    /// A reason chosen by an engine (`ReplicationHealthy`, `Ready` while not healthy).
    Engine(String),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Valid => "Valid",
            Self::InvalidSpec => "InvalidSpec",
            Self::InSync => "InSync",
            Self::ImmutableStorage => "ImmutableStorage",
            Self::Applied => "Applied",
            Self::ChildApplyFailed => "ChildApplyFailed",
            Self::Replicating => "Replicating",
            Self::NotObserved => "NotObserved",
            Self::Idle => "Idle",
            Self::Failover => "Failover",
            Self::Switchover => "Switchover",
            Self::BackupNotReady => "BackupNotReady",
            Self::Restoring => "Restoring",
            Self::RestoreFailed => "RestoreFailed",
            Self::Restored => "Restored",
            Self::PrimaryAcceptsWrites => "PrimaryAcceptsWrites",
            Self::NoPrimary => "NoPrimary",
            Self::MembersNotReady => "MembersNotReady",
            Self::PrimaryRefusesWrites => "PrimaryRefusesWrites",
            Self::PausedByAnnotation => "PausedByAnnotation",
            Self::UpToDate => "UpToDate",
            Self::RollingUpdate => "RollingUpdate",
            Self::RolloutSwitchover => "RolloutSwitchover",
            Self::RolloutPaused => "RolloutPaused",
            Self::RolloutStalled => "RolloutStalled",
            Self::DowngradeRefused => "DowngradeRefused",
            Self::VolumesExpanded => "VolumesExpanded",
            Self::VolumesExpanding => "VolumesExpanding",
            Self::ExpansionNotSupported => "ExpansionNotSupported",
            Self::NoReplacement => "NoReplacement",
            Self::ReplaceRefused => "ReplaceRefused",
            Self::Reseeding => "Reseeding",
            Self::Replaced => "Replaced",
            Self::Engine(word) => word,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition as Ordinal wants it (time and generation are added when set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_api_constants() {
        assert_eq!(ConditionType::Ready.as_str(), "Ready");
        assert_eq!(ConditionType::Reconciled.as_str(), "Reconciled");
        assert_eq!(ConditionStatus::from_bool(false).as_str(), "False");
        assert_eq!(Reason::Engine("StepFailed".into()).as_str(), "StepFailed");
        assert_eq!(Reason::ChildApplyFailed.to_string(), "ChildApplyFailed");
    }
}
