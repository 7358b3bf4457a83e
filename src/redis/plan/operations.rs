//! The planner's operations: starting and advancing failovers and
//! switchovers, one persisted step at a time, and adopting or aborting
//! changes no persisted operation accounts for.

use std::time::Duration;

use super::*;

/// Requeue after a failover step that the next one can follow at once
/// (freeze, fence, isolation asked for): the pass after it promotes.
pub const NEXT_STEP: Duration = Duration::from_millis(20);

/// Where the old primary of a failover stands (see `fence_then_promote`).
enum Fence {
    /// It cannot take writes: promote.
    Confirmed(String),
    /// It answers as the same writable primary with its data: cancel.
    Back,
    /// It answers writable: make it a replica of this member first.
    Command(i32),
    /// It does not answer: the reconciler must isolate it.
    Isolate(String),
    /// Not yet decidable (loading, or its replicas see it again).
    Wait(String),
}

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

    /// Start a failover from `from` to the candidate `c`. The candidate is
    /// promoted only once `from` cannot take writes any more: it answers
    /// read-only, or it is fenced by `REPLICAOF` first, or (when it does not
    /// answer) the reconciler isolated it ([`Self::fence_then_promote`]).
    pub(super) fn start_failover(&mut self, from: i32, c: Candidate, reason: String) {
        let op = Operation {
            kind: OperationKind::Failover,
            from,
            to: Some(c.ordinal),
            step: STEP_AWAIT_ISOLATION.to_string(),
            term: self.input.state.term + 1,
            started_at: self.now(),
            deadline: Some(to_time(self.failover_deadline())),
            reason,
            data: self
                .plan
                .state
                .primary_position
                .clone()
                .map(crate::api::OperationData::position),
        };
        self.fence_then_promote(op, false);
    }

    fn failover_deadline(&self) -> DateTime<Utc> {
        self.input.now
            + chrono::Duration::from_std(self.input.timing.failover_deadline)
                .unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// How far the old primary `from` of a failover is from taking writes.
    fn fence_status(&self, from: i32, to: i32) -> Fence {
        let Some(m) = self.member(from) else {
            return Fence::Confirmed("it is not a member any more".into());
        };
        match &m.obs {
            Ok(n) if n.role == ServerRole::Replica && !n.loading => {
                Fence::Confirmed("it answers as a read-only replica".into())
            }
            Ok(n) if n.loading => Fence::Wait(format!("{} is loading its dataset", m.pod)),
            Ok(n)
                if n.role == ServerRole::Master
                    && n.keys > 0
                    && self.input.state.primary_identity.as_deref() == Some(n.run_id.as_str()) =>
            {
                Fence::Back
            }
            Ok(_) => Fence::Command(to),
            Err(_) if m.isolated => Fence::Confirmed(
                "the operator isolated it (role label removed, pod deleted)".into(),
            ),
            Err(e) if !self.replicas_seeing(from).is_empty() => Fence::Wait(format!(
                "{} does not answer the operator ({e}) but its replicas see it again",
                m.pod
            )),
            Err(e) => Fence::Isolate(e.clone()),
        }
    }

    /// Reachable replicas that still follow `from` while `from` may still
    /// stream to them (it does not answer, or answers writable or with its
    /// own link up). A returned primary that answers as a replica with its
    /// link down serves no sync (NOMASTERLINK): nothing to freeze.
    fn still_following(&self, from: i32) -> Vec<i32> {
        let silent = self
            .member(from)
            .and_then(|m| m.node())
            .is_some_and(|n| n.role == ServerRole::Replica && !n.link_up && !n.loading);
        if silent {
            return Vec::new();
        }
        self.members()
            .iter()
            .filter(|m| m.ordinal != from)
            .filter(|m| {
                m.node().is_some_and(|n| {
                    n.role == ServerRole::Replica && source_of(n, self.members()) == Some(from)
                })
            })
            .map(|m| m.ordinal)
            .collect()
    }

    /// Fence-before-promote of a failover: promote (a freshly chosen
    /// candidate, `op.to` on a tie) once the old primary is confirmed unable
    /// to take writes; otherwise fence it, or ask the reconciler to isolate
    /// it, and wait, until the operation's deadline (`FenceFailed`).
    pub(super) fn fence_then_promote(&mut self, op: Operation, past_deadline: bool) {
        let from = op.from;
        let from_pod = self.pod(from);
        let to = op.to.unwrap_or(from);
        self.plan.requeue = self.input.timing.active;
        let status = self.fence_status(from, to);
        // Freeze first: no replica keeps taking the old primary's stream
        // while the candidate is chosen and promoted.
        let following = match &status {
            Fence::Confirmed(_) | Fence::Isolate(_) if !past_deadline => self.still_following(from),
            _ => Vec::new(),
        };
        if !following.is_empty() {
            self.withhold_primary = true;
            if let Fence::Isolate(_) = &status {
                self.plan.isolate = vec![from];
            }
            let pods = following
                .iter()
                .map(|o| self.pod(*o))
                .collect::<Vec<_>>()
                .join(", ");
            self.plan.step_events.push(event(
                EventType::Normal,
                "ReplicasFrozen",
                format!("{pods} stopped following {from_pod} before a replacement is chosen"),
            ));
            self.plan.step = Some(Action::Detach {
                ordinals: following,
            });
            let next = Operation {
                step: STEP_FREEZE.to_string(),
                ..op
            };
            for s in [&mut self.plan.state, &mut self.plan.fallback] {
                s.operation = Some(next.clone());
            }
            self.plan.health = unhealthy(
                "FailoverInProgress",
                format!("freezing the replicas of {from_pod} before choosing its replacement"),
            );
            // The step is done in this pass (and the isolation asked for
            // right after it): the next step can follow at once.
            self.plan.requeue = NEXT_STEP;
            return;
        }
        if let Fence::Confirmed(how) = &status {
            let position = self.input.state.primary_position.clone();
            match choose_candidate(
                self.members(),
                from,
                position.as_deref(),
                max_lag(self.input.failover, self.input.durability),
                op.to.or(self.input.desired_primary),
            ) {
                Ok(c) => self.promote(op, c, how),
                Err(why) => {
                    for s in [&mut self.plan.state, &mut self.plan.fallback] {
                        s.operation = None;
                    }
                    let msg = format!(
                        "{from_pod} is fenced ({how}) but no replica may replace it: {why}"
                    );
                    self.plan.events.push(event(
                        EventType::Warning,
                        "FailoverRefused",
                        msg.clone(),
                    ));
                    self.plan.health = unhealthy("FailoverRefused", msg);
                }
            }
            return;
        }
        if let Fence::Back = status {
            for s in [&mut self.plan.state, &mut self.plan.fallback] {
                s.operation = None;
                s.primary_unhealthy_since = None;
            }
            self.plan.events.push(event(
                EventType::Normal,
                "FailoverCancelled",
                format!("{from_pod} answers again as the same writable primary before any promotion; it stays the primary"),
            ));
            self.steady(from);
            return;
        }
        self.withhold_primary = true;
        if past_deadline {
            let why = match &status {
                Fence::Isolate(e) => format!("it does not answer ({e}) and was not isolated"),
                Fence::Wait(w) => w.clone(),
                _ => "fencing it did not succeed".to_string(),
            };
            let msg = format!(
                "failover from {from_pod} abandoned at its deadline: {from_pod} could not be fenced ({why}); no member was promoted, it is retried while {from_pod} stays lost"
            );
            for s in [&mut self.plan.state, &mut self.plan.fallback] {
                s.operation = None;
            }
            self.plan
                .events
                .push(event(EventType::Warning, "FenceFailed", msg.clone()));
            self.plan.health = unhealthy("FenceFailed", msg);
            return;
        }
        let (step, health) = match status {
            Fence::Command(target) => {
                self.plan.step = Some(Action::Replicate {
                    ordinals: vec![from],
                    primary: target,
                });
                self.plan.step_is_fence = true;
                self.plan.step_events.push(event(
                    EventType::Warning,
                    "Fenced",
                    format!(
                        "{from_pod} answers writable while it is being replaced; made it a replica of {} before promoting it",
                        self.pod(target)
                    ),
                ));
                (
                    STEP_FENCE,
                    format!("fencing {from_pod} before promoting {}", self.pod(to)),
                )
            }
            Fence::Isolate(e) => {
                self.plan.isolate = vec![from];
                (
                    STEP_AWAIT_ISOLATION,
                    format!(
                        "{from_pod} does not answer ({e}); waiting for it to be isolated (role label removed, pod deleted) before promoting {}",
                        self.pod(to)
                    ),
                )
            }
            Fence::Wait(w) => (
                STEP_AWAIT_ISOLATION,
                format!("{w}; waiting before promoting {}", self.pod(to)),
            ),
            Fence::Confirmed(_) | Fence::Back => return,
        };
        if self.plan.step.is_some() || !self.plan.isolate.is_empty() {
            // Fenced in this pass, or isolated by the reconciler right
            // after it: the promotion can follow at once.
            self.plan.requeue = NEXT_STEP;
        }
        let next = Operation {
            step: step.to_string(),
            ..op
        };
        for s in [&mut self.plan.state, &mut self.plan.fallback] {
            s.operation = Some(next.clone());
        }
        self.plan.health = unhealthy("FailoverInProgress", health);
    }

    /// Promote `c` for the failover `op` (its old primary is fenced: `how`).
    fn promote(&mut self, op: Operation, c: Candidate, how: &str) {
        let term = op.term;
        let to_pod = self.pod(c.ordinal);
        let from_pod = self.pod(op.from);
        let reason = op.reason.clone();
        // The fallback (promotion failed) keeps waiting in the fence step.
        if op.step != STEP_REPOINT {
            self.plan.fallback.operation = Some(Operation {
                step: STEP_AWAIT_ISOLATION.to_string(),
                ..op.clone()
            });
        }
        let deadline = to_time(self.failover_deadline());
        let s = &mut self.plan.state;
        s.operation = Some(Operation {
            to: Some(c.ordinal),
            step: STEP_REPOINT.to_string(),
            deadline: Some(deadline),
            ..op
        });
        s.primary = Some(c.ordinal);
        s.term = term;
        s.primary_unhealthy_since = None;
        // The new term starts at the candidate's offset: a later candidate
        // (should it die before it is seen again) is measured against it.
        s.primary_position = Some(format_position(&c.replid, c.offset));
        self.plan.step = Some(self.promote_action(c.ordinal));
        self.plan.step_events.push(event(
            EventType::Normal,
            "Promoted",
            format!(
                "promoted {to_pod} (offset {}, {} keys) to primary in term {term} replacing {from_pod} ({from_pod}: {how}): {reason}",
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
        // FAILOVER TO waits for the target to catch up itself: the limit
        // only keeps writes from pausing long, in durable mode too.
        let limit = max_lag(self.input.failover, None);
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
            data: Some(crate::api::OperationData::endpoint(format!(
                "{}:{}",
                listed.ip, listed.port
            ))),
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
            (OperationKind::Failover, STEP_FENCE | STEP_AWAIT_ISOLATION | STEP_FREEZE) => {
                self.fence_then_promote(op, past_deadline)
            }
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
                    op.data
                        .as_ref()
                        .and_then(|d| d.note.as_deref())
                        .unwrap_or("see events")
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
            data: Some(crate::api::OperationData::note(why)),
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

    /// The member promoted by an operation does not answer, or answers as a
    /// replica (it restarted and booted read-only).
    fn new_primary_lost(&self, to: i32) -> bool {
        match self.member(to).map(|m| &m.obs) {
            None | Some(Err(_)) => true,
            Some(Ok(n)) => n.role == ServerRole::Replica && !n.loading,
        }
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
        let new_primary = self.member(to).and_then(|m| m.writable_primary()).cloned();
        let wrong = if let Some(n) = new_primary {
            self.record_primary(&n);
            misplaced(self.members(), to)
        } else if self.new_primary_lost(to) {
            // The new primary died or restarted: close the operation and
            // judge it like any recorded primary (detection window,
            // returned-primary checks) instead of waiting for the deadline.
            for s in [&mut self.plan.state, &mut self.plan.fallback] {
                s.operation = None;
                s.last_failover = Some(record.clone());
            }
            self.plan.events.push(done);
            self.steady(to);
            return;
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
