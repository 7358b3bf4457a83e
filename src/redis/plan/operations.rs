//! The planner's operations: starting and advancing failovers and
//! switchovers, one persisted step at a time, and adopting or aborting
//! changes no persisted operation accounts for.

use std::time::Duration;

use super::*;

impl Planner<'_> {
    /// A `FAILOVER` runs on the primary that no persisted operation accounts
    /// for (its pass was lost, or a person started it): wait for it, but abort
    /// it once it has run longer than our own switchovers may, so writes are
    /// never left paused.
    pub(super) fn foreign_failover(&mut self, primary: i32) {
        let since = self
            .input
            .state
            .primary_unhealthy_since
            .clone()
            .unwrap_or_else(|| self.now());
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary_unhealthy_since = Some(since.clone());
        }
        self.plan.requeue = self.input.timing.active;
        let limit = self.input.timing.switchover_timeout + Duration::from_secs(5);
        let elapsed = (self.input.now - from_time(&since))
            .to_std()
            .unwrap_or_default();
        if elapsed > limit {
            let why = format!(
                "a FAILOVER on {} ran for {}s; aborted so it accepts writes again",
                self.pod(primary),
                elapsed.as_secs()
            );
            self.plan.step = Some(Action::AbortFailover { primary });
            self.plan.state.primary_unhealthy_since = None;
            self.plan
                .step_events
                .push(event(EventType::Warning, "SwitchoverAborted", why.clone()));
            self.plan.health = unhealthy("SwitchoverFailed", why);
        } else {
            self.plan.health = unhealthy(
                "SwitchoverInProgress",
                format!("a FAILOVER is in progress on {}", self.pod(primary)),
            );
        }
    }

    /// The recorded primary already replicates, link up, from a writable
    /// primary that continues its replication history: a `FAILOVER` finished
    /// whose outcome was never persisted (operator restarted mid-switchover),
    /// or a person moved the primary by hand. Nothing can be lost by following.
    pub(super) fn handed_over_to(&self, primary: i32) -> Option<i32> {
        let pn = self.member(primary)?.node()?;
        if pn.role != ServerRole::Replica || !pn.link_up {
            return None;
        }
        let x = source_of(pn, self.members()).filter(|x| *x != primary)?;
        let xn = self.member(x)?.writable_primary()?;
        let lineage = self
            .input
            .state
            .primary_position
            .as_deref()
            .and_then(|p| parse_position(p).0)?;
        (xn.replid2 == lineage || xn.replid == lineage).then_some(x)
    }

    pub(super) fn adopt(&mut self, from: i32, to: i32) {
        let term = self.input.state.term + 1;
        let reason = format!(
            "{} already replicates from {}, which continues its history",
            self.pod(from),
            self.pod(to)
        );
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.primary = Some(to);
            s.term = term;
            s.primary_unhealthy_since = None;
            s.operation = None;
            s.last_failover = Some(FailoverRecord {
                kind: OperationKind::Switchover,
                from,
                to,
                time: to_time(self.input.now),
                reason: reason.clone(),
            });
        }
        self.plan.events.push(event(
            EventType::Normal,
            "PrimaryAdopted",
            format!("{} is the primary in term {term}: {reason}", self.pod(to)),
        ));
        if let Some(n) = self.member(to).and_then(|m| m.writable_primary()) {
            self.record_primary(&n.clone());
        }
        self.plan.requeue = self.input.timing.active;
        self.repair(to);
    }

    pub(super) fn start_failover(&mut self, from: i32, c: Candidate, reason: String) {
        let term = self.input.state.term + 1;
        let to_pod = self.pod(c.ordinal);
        let from_pod = self.pod(from);
        let now = self.now();
        let deadline = self.input.now
            + chrono::Duration::from_std(self.input.timing.failover_deadline)
                .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let s = &mut self.plan.state;
        s.operation = Some(Operation {
            kind: OperationKind::Failover,
            from,
            to: Some(c.ordinal),
            step: STEP_REPOINT.to_string(),
            term,
            started_at: now,
            deadline: Some(to_time(deadline)),
            reason: reason.clone(),
            data: s.primary_position.clone(),
        });
        s.primary = Some(c.ordinal);
        s.term = term;
        s.primary_unhealthy_since = None;
        self.plan.step = Some(Action::Promote { ordinal: c.ordinal });
        self.plan.step_events.push(event(
            EventType::Normal,
            "Promoted",
            format!(
                "promoted {to_pod} (offset {}, {} keys) to primary in term {term} replacing {from_pod}: {reason}",
                c.offset, c.keys
            ),
        ));
        self.plan.health = unhealthy(
            "FailoverInProgress",
            format!("failing over from {from_pod} to {to_pod}"),
        );
        self.plan.requeue = self.input.timing.active;
    }

    pub(super) fn start_switchover(
        &mut self,
        primary: i32,
        d: i32,
        pn: &NodeInfo,
    ) -> Result<(), String> {
        let dm = self.member(d).ok_or("it is not a member")?.clone();
        let dn = dm
            .obs
            .as_ref()
            .map_err(|e| format!("it is unreachable: {e}"))?;
        if dn.role != ServerRole::Replica
            || source_of(dn, self.members()) != Some(primary)
            || !dn.link_up
            || dn.loading
        {
            return Err("it is not a replica of the primary with its link up".into());
        }
        let listed = pn
            .replicas
            .iter()
            .find(|r| dm.is_addressed_by(&r.ip, r.port) && r.state == "online")
            .ok_or("the primary does not list it as an online replica")?;
        let behind = pn.offset - listed.offset.max(dn.offset);
        let limit = max_lag(self.input.failover);
        if behind > limit {
            return Err(format!(
                "it is {behind} bytes behind the primary (more than {limit}); waiting for it to catch up before pausing writes"
            ));
        }
        let timeout = self.input.timing.switchover_timeout;
        let deadline = self.input.now
            + chrono::Duration::from_std(timeout + Duration::from_secs(5))
                .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let term = self.input.state.term + 1;
        self.plan.state.operation = Some(Operation {
            kind: OperationKind::Switchover,
            from: primary,
            to: Some(d),
            step: STEP_AWAIT_FAILOVER.to_string(),
            term,
            started_at: self.now(),
            deadline: Some(to_time(deadline)),
            reason: format!("spec.primary asks for {}", dm.pod),
            data: Some(format!("{}:{}", listed.ip, listed.port)),
        });
        self.plan.step = Some(Action::Failover {
            primary,
            host: listed.ip.clone(),
            port: listed.port,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        self.plan.step_events.push(event(
            EventType::Normal,
            "SwitchoverStarted",
            format!(
                "switching the primary over from {} to {} (writes pause until it has caught up)",
                self.pod(primary),
                dm.pod
            ),
        ));
        self.plan.health = unhealthy(
            "SwitchoverInProgress",
            format!("switching over to {}", dm.pod),
        );
        self.plan.requeue = self.input.timing.active;
        Ok(())
    }

    pub(super) fn operation(&mut self, op: Operation) {
        self.plan.requeue = self.input.timing.active;
        let Some(to) = op.to else {
            self.plan.state.operation = None;
            self.plan.fallback.operation = None;
            return;
        };
        let past_deadline = op
            .deadline
            .as_ref()
            .is_some_and(|d| self.input.now > from_time(d));
        match (op.kind, op.step.as_str()) {
            (OperationKind::Switchover, STEP_AWAIT_FAILOVER) => {
                self.await_switchover(&op, to, past_deadline)
            }
            (OperationKind::Switchover, STEP_RETRY_WAIT) => self.retry_wait(&op, to, past_deadline),
            _ => self.finish_repoint(&op, to, past_deadline),
        }
    }

    /// After a failed switchover: behave as in steady state without starting
    /// another switchover until the deadline (or until the request changes).
    pub(super) fn retry_wait(&mut self, op: &Operation, to: i32, past_deadline: bool) {
        let Some(primary) = self.input.state.primary else {
            self.plan.state.operation = None;
            self.plan.fallback.operation = None;
            return;
        };
        let still_wanted = self.input.desired_primary == Some(to) && primary == op.from;
        if past_deadline || !still_wanted {
            self.plan.state.operation = None;
            self.plan.fallback.operation = None;
            self.plan.requeue = self.input.timing.steady;
            self.steady(primary);
            return;
        }
        self.allow_switchover = false;
        self.plan.requeue = self.input.timing.steady;
        self.steady(primary);
        if self.plan.health == Health::Healthy {
            self.plan.health = unhealthy(
                "SwitchoverFailed",
                format!(
                    "the switchover to {} failed ({}); it is retried later",
                    self.pod(to),
                    op.data.as_deref().unwrap_or("see events")
                ),
            );
        }
    }

    /// The failed switchover `op`, waiting for its retry.
    pub(super) fn retry_later(&self, op: &Operation, why: &str) -> Operation {
        let retry = self.input.now
            + chrono::Duration::from_std(self.input.timing.switchover_retry)
                .unwrap_or_else(|_| chrono::Duration::seconds(30));
        Operation {
            step: STEP_RETRY_WAIT.to_string(),
            deadline: Some(to_time(retry)),
            data: Some(why.to_string()),
            ..op.clone()
        }
    }

    pub(super) fn await_switchover(&mut self, op: &Operation, to: i32, past_deadline: bool) {
        let from = op.from;
        let from_node = self.member(from).and_then(|m| m.node()).cloned();
        let to_primary = self.member(to).and_then(|m| m.writable_primary()).is_some();
        let from_demoted = from_node
            .as_ref()
            .is_some_and(|n| n.role == ServerRole::Replica);
        if to_primary && (from_demoted || from_node.is_none()) {
            for s in [&mut self.plan.state, &mut self.plan.fallback] {
                s.primary = Some(to);
                s.term = op.term;
                s.primary_unhealthy_since = None;
                if let Some(o) = s.operation.as_mut() {
                    o.step = STEP_REPOINT.to_string();
                }
            }
            self.plan.events.push(event(
                EventType::Normal,
                "Promoted",
                format!(
                    "{} is the primary in term {} (switchover from {})",
                    self.pod(to),
                    op.term,
                    self.pod(from)
                ),
            ));
            self.finish_repoint(op, to, past_deadline);
            return;
        }
        let aborted = from_node
            .as_ref()
            .is_some_and(|n| n.role == ServerRole::Master && n.failover_state == "no-failover");
        if aborted || from_node.is_none() {
            let why = if aborted {
                format!(
                    "{} did not catch up within the timeout; {} stays the primary",
                    self.pod(to),
                    self.pod(from)
                )
            } else {
                format!(
                    "{} became unreachable during the switchover",
                    self.pod(from)
                )
            };
            let next = aborted.then(|| self.retry_later(op, &why));
            self.plan.state.operation = next.clone();
            self.plan.fallback.operation = next;
            self.plan
                .events
                .push(event(EventType::Warning, "SwitchoverFailed", why.clone()));
            self.plan.health = unhealthy("SwitchoverFailed", why);
            return;
        }
        if past_deadline {
            let why = format!(
                "switchover to {} passed its deadline; aborted, {} stays the primary",
                self.pod(to),
                self.pod(from)
            );
            self.plan.state.operation = Some(self.retry_later(op, &why));
            self.plan.step = Some(Action::AbortFailover { primary: from });
            self.plan
                .step_events
                .push(event(EventType::Warning, "SwitchoverAborted", why.clone()));
            self.plan.health = unhealthy("SwitchoverFailed", why);
            return;
        }
        self.plan.health = unhealthy(
            "SwitchoverInProgress",
            format!(
                "waiting for {} to take over from {}",
                self.pod(to),
                self.pod(from)
            ),
        );
    }

    /// Last step of both operations: repoint everyone at `to`, then close the
    /// operation and record it.
    pub(super) fn finish_repoint(&mut self, op: &Operation, to: i32, past_deadline: bool) {
        let record = FailoverRecord {
            kind: op.kind,
            from: op.from,
            to,
            time: self.now(),
            reason: op.reason.clone(),
        };
        let kind = match op.kind {
            OperationKind::Failover => "Failover",
            OperationKind::Switchover => "Switchover",
        };
        let done = event(
            EventType::Normal,
            &format!("{kind}Completed"),
            format!(
                "{} replaced {} as primary in term {}: {}",
                self.pod(to),
                self.pod(op.from),
                op.term,
                op.reason
            ),
        );
        let wrong = if self.member(to).and_then(|m| m.writable_primary()).is_some() {
            misplaced(self.members(), to)
        } else {
            // The new primary is not confirmed (yet): nothing to repoint at.
            if !past_deadline {
                self.plan.health = unhealthy(
                    "FailoverInProgress",
                    format!("waiting for {} to answer as primary", self.pod(to)),
                );
                return;
            }
            Vec::new()
        };
        self.plan.state.operation = None;
        self.plan.state.last_failover = Some(record);
        if wrong.is_empty() {
            self.plan.events.push(done);
            self.plan.fallback = self.plan.state.clone();
            self.plan.health = Health::Healthy;
            return;
        } else {
            self.plan.step_events = replicate_events(self.members(), &wrong, to);
            self.plan.step_events.push(done);
            self.plan.step = Some(Action::Replicate {
                ordinals: wrong,
                primary: to,
            });
        }
        self.plan.health = unhealthy(
            "FailoverInProgress",
            format!("repointing replicas at {}", self.pod(to)),
        );
    }
}
