//! The one rule for which member a backup reads from, for both engines.

use crate::api::{MemberRole, MemberStatus};

/// The reachable replica with its link up and the least lag (ties: the
/// lowest ordinal) — a dump then never loads the primary — else the
/// reachable primary. A replica whose link is down or unknown may be stale
/// and is never the source.
pub fn pick_member(members: &[MemberStatus]) -> Option<i32> {
    members
        .iter()
        .filter(|m| m.reachable && m.role == MemberRole::Replica && m.link_up == Some(true))
        .min_by_key(|m| (m.lag.unwrap_or(i64::MAX), m.ordinal))
        .or_else(|| {
            members
                .iter()
                .find(|m| m.reachable && m.role == MemberRole::Primary)
        })
        .map(|m| m.ordinal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ordinal: i32, role: MemberRole, link_up: Option<bool>, lag: i64) -> MemberStatus {
        MemberStatus {
            ordinal,
            pod: format!("c-{ordinal}"),
            role,
            reachable: true,
            link_up,
            lag: Some(lag),
            ..Default::default()
        }
    }

    #[test]
    fn the_closest_healthy_replica_then_the_primary() {
        let mut members = vec![
            member(0, MemberRole::Primary, None, 0),
            member(1, MemberRole::Replica, Some(false), 0),
            member(2, MemberRole::Replica, Some(true), 50),
            member(3, MemberRole::Replica, Some(true), 10),
            member(4, MemberRole::Replica, None, 0),
        ];
        assert_eq!(pick_member(&members), Some(3), "least lag");
        members[3].lag = Some(50);
        assert_eq!(pick_member(&members), Some(2), "ties: lowest ordinal");
        members[2].reachable = false;
        members[3].reachable = false;
        assert_eq!(
            pick_member(&members),
            Some(0),
            "a broken, unknown or unreachable replica is never the source"
        );
        members[0].reachable = false;
        assert_eq!(pick_member(&members), None);
        assert_eq!(pick_member(&[]), None);
    }
}
