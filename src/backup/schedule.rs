//! Pure planning of a BackupSchedule: when the next Backup is due, whether
//! one may start now, and which Backups retention removes.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::api::backup::{BackupPhase, ConcurrencyPolicy, RetentionSpec};

/// A Backup the schedule created, as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledBackup {
    pub name: String,
    pub created: DateTime<Utc>,
    pub phase: BackupPhase,
}

/// Inputs of one planning pass.
#[derive(Clone, Debug)]
pub struct ScheduleInput<'a> {
    pub cron: &'a str,
    pub time_zone: Option<&'a str>,
    pub suspend: bool,
    pub concurrency: ConcurrencyPolicy,
    pub retention: &'a RetentionSpec,
    pub successful_history: Option<i32>,
    pub failed_history: Option<i32>,
    /// Last time a Backup was created (status), or the schedule's creation.
    pub last_run: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub backups: &'a [ScheduledBackup],
}

/// What to do now.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulePlan {
    /// Create a Backup for this scheduled time.
    pub run: Option<DateTime<Utc>>,
    /// Why a due run was skipped, if one was.
    pub skipped: Option<String>,
    /// Next scheduled time after now.
    pub next: DateTime<Utc>,
    /// Backups to delete (retention and history limits).
    pub delete: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("schedule {0:?} is not a valid cron expression: {1}")]
    Cron(String, String),
    #[error("time zone {0:?} is unknown")]
    TimeZone(String),
    #[error("retention.maxAge {0:?} is not a duration such as 30d or 12h")]
    MaxAge(String),
    #[error("schedule {0:?} never fires")]
    Never(String),
}

/// Parse `30d`, `12h`, `1d12h`, `90m`, `45s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        total += match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => return None,
        };
    }
    (digits.is_empty() && !text.is_empty()).then_some(total)
}

fn next_after(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    raw: &str,
) -> Result<DateTime<Utc>, ScheduleError> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ScheduleError::Never(raw.to_string()))
}

/// Decide the next step. Only the most recent missed time runs (like a
/// CronJob after downtime); older missed times are not replayed.
pub fn plan(input: &ScheduleInput<'_>) -> Result<SchedulePlan, ScheduleError> {
    let cron = Cron::from_str(input.cron)
        .map_err(|e| ScheduleError::Cron(input.cron.to_string(), e.to_string()))?;
    let tz: Tz = match input.time_zone {
        Some(name) => name
            .parse()
            .map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        None => Tz::UTC,
    };
    let mut due = None;
    let mut t = next_after(&cron, tz, input.last_run, input.cron)?;
    while t <= input.now {
        due = Some(t);
        t = next_after(&cron, tz, t, input.cron)?;
    }
    let next = t;
    let running = input
        .backups
        .iter()
        .any(|b| matches!(b.phase, BackupPhase::Pending | BackupPhase::Running));
    let (run, skipped) = match due {
        Some(_) if input.suspend => (None, Some("schedule is suspended".to_string())),
        Some(_) if running && input.concurrency == ConcurrencyPolicy::Forbid => (
            None,
            Some("the previous backup is still running (concurrencyPolicy Forbid)".to_string()),
        ),
        other => (other, None),
    };
    Ok(SchedulePlan {
        run,
        skipped,
        next,
        delete: retention(input)?,
    })
}

fn retention(input: &ScheduleInput<'_>) -> Result<Vec<String>, ScheduleError> {
    let mut newest_first: Vec<&ScheduledBackup> = input.backups.iter().collect();
    newest_first.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
    let max_age = match &input.retention.max_age {
        Some(text) => {
            Some(parse_duration(text).ok_or_else(|| ScheduleError::MaxAge(text.clone()))?)
        }
        None => None,
    };
    let keep_ok = [input.retention.keep_last, input.successful_history]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(3)
        .max(1);
    let keep_failed = input.failed_history.unwrap_or(1).max(0);
    let mut delete = Vec::new();
    let (mut ok_seen, mut failed_seen) = (0, 0);
    for b in newest_first {
        match b.phase {
            BackupPhase::Succeeded => {
                ok_seen += 1;
                let too_old = max_age.is_some_and(|age| input.now - b.created > age);
                // The newest successful backup is never removed by age alone.
                if ok_seen > keep_ok || (too_old && ok_seen > 1) {
                    delete.push(b.name.clone());
                }
            }
            BackupPhase::Failed => {
                failed_seen += 1;
                if failed_seen > keep_failed {
                    delete.push(b.name.clone());
                }
            }
            BackupPhase::Pending | BackupPhase::Running => {}
        }
    }
    Ok(delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn input<'a>(
        cron: &'a str,
        last: &str,
        now: &str,
        backups: &'a [ScheduledBackup],
        retention: &'a RetentionSpec,
    ) -> ScheduleInput<'a> {
        ScheduleInput {
            cron,
            time_zone: None,
            suspend: false,
            concurrency: ConcurrencyPolicy::Forbid,
            retention,
            successful_history: None,
            failed_history: None,
            last_run: t(last),
            now: t(now),
            backups,
        }
    }

    fn b(name: &str, created: &str, phase: BackupPhase) -> ScheduledBackup {
        ScheduledBackup {
            name: name.into(),
            created: t(created),
            phase,
        }
    }

    #[test]
    fn runs_the_latest_missed_time_once_and_reports_the_next() {
        let r = RetentionSpec::default();
        let p = plan(&input(
            "0 2 * * *",
            "2026-11-20T02:00:00Z",
            "2026-11-24T10:00:00Z",
            &[],
            &r,
        ))
        .expect("plan");
        assert_eq!(p.run, Some(t("2026-11-24T02:00:00Z")));
        assert_eq!(p.next, t("2026-11-25T02:00:00Z"));
        let p = plan(&input(
            "0 2 * * *",
            "2026-11-24T02:00:00Z",
            "2026-11-24T10:00:00Z",
            &[],
            &r,
        ))
        .expect("plan");
        assert_eq!(p.run, None, "nothing due until tomorrow");
    }

    #[test]
    fn time_zone_shifts_the_run() {
        let r = RetentionSpec::default();
        let mut i = input(
            "0 2 * * *",
            "2026-11-23T12:00:00Z",
            "2026-11-24T12:00:00Z",
            &[],
            &r,
        );
        i.time_zone = Some("Europe/Berlin");
        // 02:00 in Berlin (UTC+1 in November) is 01:00 UTC.
        assert_eq!(plan(&i).expect("plan").run, Some(t("2026-11-24T01:00:00Z")));
        i.time_zone = Some("Mars/Olympus");
        assert_eq!(
            plan(&i).unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn suspend_and_forbid_skip_with_a_reason() {
        let r = RetentionSpec::default();
        let running = [b("s-1", "2026-11-24T09:00:00Z", BackupPhase::Running)];
        let p = plan(&input(
            "* * * * *",
            "2026-11-24T09:00:00Z",
            "2026-11-24T09:05:30Z",
            &running,
            &r,
        ))
        .expect("plan");
        assert_eq!(p.run, None);
        assert!(p.skipped.expect("reason").contains("still running"));
        let mut i = input(
            "* * * * *",
            "2026-11-24T09:00:00Z",
            "2026-11-24T09:05:30Z",
            &[],
            &r,
        );
        i.suspend = true;
        assert_eq!(
            plan(&i).expect("plan").skipped.as_deref(),
            Some("schedule is suspended")
        );
        i.suspend = false;
        i.concurrency = ConcurrencyPolicy::Allow;
        i.backups = &running;
        assert_eq!(plan(&i).expect("plan").run, Some(t("2026-11-24T09:05:00Z")));
    }

    #[test]
    fn retention_keeps_the_newest_and_trims_by_count_age_and_failures() {
        let backups = [
            b("s-5", "2026-11-24T05:00:00Z", BackupPhase::Succeeded),
            b("s-4", "2026-11-24T04:00:00Z", BackupPhase::Failed),
            b("s-3", "2026-11-24T03:00:00Z", BackupPhase::Succeeded),
            b("s-2", "2026-11-24T02:00:00Z", BackupPhase::Failed),
            b("s-1", "2026-11-24T01:00:00Z", BackupPhase::Succeeded),
            b("s-0", "2026-11-10T01:00:00Z", BackupPhase::Succeeded),
        ];
        let r = RetentionSpec {
            keep_last: Some(2),
            max_age: None,
        };
        let p = plan(&input(
            "0 * * * *",
            "2026-11-24T05:00:00Z",
            "2026-11-24T05:30:00Z",
            &backups,
            &r,
        ))
        .expect("plan");
        assert_eq!(p.delete, ["s-2", "s-1", "s-0"]);
        let r = RetentionSpec {
            keep_last: Some(10),
            max_age: Some("7d".into()),
        };
        let p = plan(&input(
            "0 * * * *",
            "2026-11-24T05:00:00Z",
            "2026-11-24T05:30:00Z",
            &backups,
            &r,
        ))
        .expect("plan");
        assert_eq!(p.delete, ["s-2", "s-0"]);
        // Everything old: the newest successful backup survives.
        let r = RetentionSpec {
            keep_last: None,
            max_age: Some("1h".into()),
        };
        let p = plan(&input(
            "0 * * * *",
            "2026-11-24T05:00:00Z",
            "2026-12-24T05:30:00Z",
            &backups,
            &r,
        ))
        .expect("plan");
        assert!(!p.delete.contains(&"s-5".to_string()));
        assert!(p.delete.contains(&"s-3".to_string()));
    }

    #[test]
    fn durations_and_bad_input() {
        assert_eq!(parse_duration("1d12h"), Some(Duration::hours(36)));
        assert_eq!(parse_duration("90m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("1w"), None);
        let r = RetentionSpec::default();
        assert!(matches!(
            plan(&input(
                "every night",
                "2026-11-24T00:00:00Z",
                "2026-11-24T00:00:00Z",
                &[],
                &r
            )),
            Err(ScheduleError::Cron(..))
        ));
    }
}
