//! A batch of events sent to Odoo together, as [`plan::stages`] cuts it:
//!
//! - **Production** of one work center: every event's absolute value is
//!   decided in order as if the ones before it were written
//!   ([`OdooSink::plan_part`]), and each is fixed in the ledger (one wait
//!   for the disk); then one write per work order they fall on sends the
//!   last value. So N events are one write, and a repeat of any of them
//!   after a crash finds its own value (or more) in Odoo and writes nothing.
//! - **Downtime** of many stops: one `load` per `max_batch` rows, upserted
//!   by external id. A row Odoo refuses (`messages` naming its row) is a
//!   dead letter with Odoo's words, and the load is sent again without it
//!   (a load with an error writes nothing at all).
//! - At most `max_in_flight` requests at once: the writes of different work
//!   centers (serialised when they share an MO) and the loads.
//!
//! Reads are shared per round: the work center ids of the batch in one
//! `search_read`, the work orders of its work centers in one, the open
//! productive timers in one.

use super::*;
use crate::model::EventBody;
use crate::sinks::Outcome;
use futures::StreamExt;
use plan::{Step, TimeLogRow};
use std::collections::HashSet;

/// Consecutive events of one work center that fall on one work order: one
/// write of the last value.
struct Run {
    intent: Intent,
    events: Vec<usize>,
}

/// One work center's runs, written in order; a failure ends the chain.
struct Chain {
    wc: i64,
    runs: Vec<Run>,
}

/// What is sent beside other jobs.
enum Job {
    /// Chains that share an MO go one after the other.
    Writes(Vec<Chain>),
    Load {
        ended: bool,
        /// The row's values and the events it stands for.
        rows: Vec<(Vec<String>, Vec<usize>)>,
    },
}

/// What a job did: outcomes per event, and what the cache must forget.
#[derive(Default)]
struct Done {
    outcomes: Vec<(usize, Result<(), DeliveryError>)>,
    forget: Vec<(i64, Option<i64>)>,
}

impl OdooSink {
    /// Deliver a batch: one outcome per event, `None` for the events left
    /// for later because an earlier event of their key failed.
    pub async fn deliver_batch(
        &mut self,
        store: &Store,
        sink: &str,
        events: &[Event],
    ) -> Vec<Outcome> {
        self.expire_names();
        let mut out: Vec<Outcome> = vec![None; events.len()];
        let mut failed: HashSet<String> = HashSet::new();
        for stage in plan::stages(events, self.max_batch) {
            let steps = without_failed(events, stage, &failed);
            let mine: Vec<usize> = steps.iter().flat_map(step_events).collect();
            self.stage(store, sink, events, steps, &mut out).await;
            let mut halted = false;
            for i in mine {
                match &out[i] {
                    Some(Ok(())) | Some(Err(DeliveryError::Reject(_))) => {}
                    Some(Err(DeliveryError::Halt(_))) => halted = true,
                    _ => {
                        failed.insert(events[i].key().to_string());
                    }
                }
            }
            if halted {
                break;
            }
        }
        let results: Vec<Result<(), DeliveryError>> = out.iter().flatten().cloned().collect();
        self.account(sink, results.iter());
        out
    }

    async fn stage(
        &mut self,
        store: &Store,
        sink: &str,
        events: &[Event],
        steps: Vec<Step>,
        out: &mut [Outcome],
    ) {
        let mut produced = Vec::new();
        let mut logs = Vec::new();
        for step in steps {
            match step {
                Step::Single(i) => out[i] = Some(self.deliver_one(store, sink, &events[i]).await),
                Step::Produced { workcenter, events } => produced.push((workcenter, events)),
                Step::TimeLogs { ended, rows } => logs.push((ended, rows)),
            }
        }
        if produced.is_empty() && logs.is_empty() {
            return;
        }
        let all: Vec<usize> = produced
            .iter()
            .flat_map(|(_, e)| e.iter().copied())
            .chain(
                logs.iter()
                    .flat_map(|(_, r)| r.iter().flat_map(|r| r.events.clone())),
            )
            .collect();
        let fail_all = |out: &mut [Outcome], e: DeliveryError| {
            for &i in &all {
                if out[i].is_none() {
                    out[i] = Some(Err(e.clone()));
                }
            }
        };
        // Names and work orders: one read each for the whole stage.
        let codes: Vec<&str> = produced
            .iter()
            .map(|(w, _)| w.as_str())
            .chain(
                logs.iter()
                    .flat_map(|(_, r)| r.iter().map(|r| r.workcenter.as_str())),
            )
            .collect();
        if let Err(e) = self.workcenter_ids(&codes).await {
            return fail_all(out, e);
        }
        let mut round = Round::default();
        let mut wanted: Vec<(i64, String)> = Vec::new();
        for (code, idx) in &produced {
            if let (Some(wc), Some(&i)) = (self.workcenters.get(code), idx.first()) {
                wanted.push((*wc, events[i].time.odoo_datetime()));
            }
        }
        for (_, rows) in &logs {
            for r in rows {
                if let Some(wc) = self.workcenters.get(&r.workcenter) {
                    wanted.push((*wc, r.date_start.clone()));
                }
            }
        }
        if let Err(e) = self.read_snapshots(&wanted, &mut round).await {
            return fail_all(out, e);
        }
        let mut jobs = Vec::new();
        // Production: decide every event's value, fix them in the ledger.
        let mut chains = Vec::new();
        let mut ledger: Vec<(String, Vec<u8>)> = Vec::new();
        for (code, idx) in &produced {
            let Some(&wc) = self.workcenters.get(code) else {
                for &i in idx {
                    out[i] = Some(Err(DeliveryError::Reject(super::unknown_workcenter(
                        &self.workcenter_at,
                        code,
                    ))));
                }
                continue;
            };
            let mut runs: Vec<Run> = Vec::new();
            for &i in idx {
                let ev = &events[i];
                let EventBody::Production(p) = &ev.body else {
                    continue;
                };
                let at = ev.time.odoo_datetime();
                match self
                    .plan_part(store, sink, wc, code, &ev.id, p.quantity, &at, &mut round)
                    .await
                {
                    Ok(Some(intent)) => {
                        match intent.encode() {
                            Ok(b) => ledger.push((ev.id.clone(), b)),
                            Err(e) => {
                                out[i] =
                                    Some(Err(DeliveryError::Retry(format!("encode intent: {e}"))));
                                break;
                            }
                        }
                        match runs.last_mut() {
                            Some(r)
                                if r.intent.workorder == intent.workorder
                                    && r.intent.production == intent.production
                                    && r.intent.closed == intent.closed =>
                            {
                                r.intent = intent;
                                r.events.push(i);
                            }
                            _ => runs.push(Run {
                                intent,
                                events: vec![i],
                            }),
                        }
                    }
                    Ok(None) => out[i] = Some(Ok(())),
                    Err(e @ DeliveryError::Reject(_)) => out[i] = Some(Err(e)),
                    Err(e) => {
                        out[i] = Some(Err(e));
                        break;
                    }
                }
            }
            if !runs.is_empty() {
                chains.push(Chain { wc, runs });
            }
        }
        let entries: Vec<(&str, &[u8])> = ledger
            .iter()
            .map(|(id, b)| (id.as_str(), b.as_slice()))
            .collect();
        if let Err(e) = store.ledger_put_many(sink, &entries).await {
            for c in &chains {
                self.forget_chain(c);
            }
            return fail_all(out, store_err(e));
        }
        jobs.extend(by_mo(chains).into_iter().map(Job::Writes));
        // Downtime: close the productive timers the stops cut, then loads.
        let rows: Vec<&TimeLogRow> = logs.iter().flat_map(|(_, r)| r.iter()).collect();
        // Stops that end in this batch: their cut timers start again once
        // their rows are in.
        let ends: Vec<(String, String, String, String, Vec<usize>)> = rows
            .iter()
            .filter_map(|r| {
                let end = r.date_end.clone()?;
                Some((
                    r.workcenter.clone(),
                    r.xmlid.clone(),
                    r.date_start.clone(),
                    end,
                    r.events.clone(),
                ))
            })
            .collect();
        if !rows.is_empty() {
            if let Err(e) = self.close_timers(&rows).await {
                for r in &rows {
                    for &i in &r.events {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            } else {
                for (ended, rows) in logs {
                    let mut data = Vec::new();
                    for r in rows {
                        let Some(&wc) = self.workcenters.get(&r.workcenter) else {
                            for &i in &r.events {
                                out[i] = Some(Err(DeliveryError::Reject(
                                    super::unknown_workcenter(&self.workcenter_at, &r.workcenter),
                                )));
                            }
                            continue;
                        };
                        let wo = production::running_at(
                            self.snapshots
                                .get(&wc)
                                .map(|s| s.wos.as_slice())
                                .unwrap_or_default(),
                            &r.date_start,
                        )
                        .map(|w| w.id);
                        let mut row = vec![
                            r.xmlid,
                            wc.to_string(),
                            r.loss,
                            r.date_start,
                            r.description,
                            wo.map(|w| w.to_string()).unwrap_or_default(),
                        ];
                        row.extend(r.date_end);
                        data.push((row, r.events));
                    }
                    if !data.is_empty() {
                        jobs.push(Job::Load { ended, rows: data });
                    }
                }
            }
        }
        for done in self.run_jobs(jobs).await {
            for (wc, mo) in done.forget {
                self.forget(wc, mo);
            }
            for (i, r) in done.outcomes {
                out[i] = Some(r);
            }
        }
        for (code, xmlid, start, end, idx) in ends {
            let Some(&wc) = self.workcenters.get(&code) else {
                continue;
            };
            if !idx.iter().all(|&i| matches!(out[i], Some(Ok(())))) {
                continue;
            }
            if let Err(e) = self.resume_timers(wc, &xmlid, &start, &end).await {
                // The row's load is repeated with the retry: it is an upsert.
                for &i in &idx {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
    }

    /// Look up the codes not cached, all in one `search_read`.
    async fn workcenter_ids(&mut self, codes: &[&str]) -> Result<(), DeliveryError> {
        let mut missing: Vec<&str> = codes
            .iter()
            .copied()
            .filter(|c| !self.workcenters.contains_key(*c))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let rows = self
            .search_read(
                "mrp.workcenter",
                json!([["code", "in", missing]]),
                &["id", "code"],
            )
            .await?;
        for r in &rows {
            if let (Some(id), Some(code)) = (r["id"].as_i64(), r["code"].as_str()) {
                self.workcenters.entry(code.to_string()).or_insert(id);
            }
        }
        Ok(())
    }

    /// The work orders of several work centers in one `search_read`, for
    /// those whose cache is not fresh. When the answer may be cut short by
    /// the limit, nothing is kept and each is read alone when needed.
    async fn read_snapshots(
        &mut self,
        wanted: &[(i64, String)],
        round: &mut Round,
    ) -> Result<(), DeliveryError> {
        let mut since: HashMap<i64, String> = HashMap::new();
        for (wc, at) in wanted {
            let e = since.entry(*wc).or_insert_with(|| at.clone());
            if at < e {
                *e = at.clone();
            }
        }
        since.retain(|wc, at| {
            !self.snapshots.get(wc).is_some_and(|s| {
                s.since.as_str() <= at.as_str() && s.read_at.elapsed() <= self.max_age
            })
        });
        let Some(oldest) = since.values().min().cloned() else {
            return Ok(());
        };
        let ids: Vec<i64> = since.keys().copied().collect();
        let limit = WO_READ_LIMIT * ids.len();
        let mut fields = WO_FIELDS.to_vec();
        fields.push("workcenter_id");
        let rows = self
            .read_workorders(json!(["workcenter_id", "in", ids]), &oldest, &fields, limit)
            .await?;
        if rows.len() >= limit {
            return Ok(());
        }
        let mut per: HashMap<i64, Vec<WorkOrderView>> =
            ids.iter().map(|i| (*i, Vec::new())).collect();
        for r in &rows {
            let wc = r
                .get("workcenter_id")
                .and_then(|w| w.get(0).or(Some(w)))
                .and_then(Value::as_i64);
            if let Some(list) = wc.and_then(|wc| per.get_mut(&wc)) {
                list.push(workorder_view(r)?);
            }
        }
        for (wc, wos) in per {
            self.store_snapshot(wc, &oldest, wos, round);
        }
        Ok(())
    }

    /// Close the productive timers open at each row's work center at the
    /// first stop that cut them, as Odoo's Block does: one read for all
    /// work centers, one write per stop start. Only timers started before
    /// a stop: a later one is an operator's after the stop.
    async fn close_timers(&mut self, rows: &[&TimeLogRow]) -> Result<(), DeliveryError> {
        let mut starts: HashMap<i64, Vec<&str>> = HashMap::new();
        for r in rows {
            if let Some(wc) = self.workcenters.get(&r.workcenter) {
                starts.entry(*wc).or_default().push(&r.date_start);
            }
        }
        let Some(latest) = starts.values().flatten().max().map(|s| s.to_string()) else {
            return Ok(());
        };
        let ids: Vec<i64> = starts.keys().copied().collect();
        let open = self
            .search_read(
                "mrp.workcenter.productivity",
                json!([
                    ["workcenter_id", "in", ids],
                    ["date_end", "=", false],
                    ["loss_type", "in", ["productive", "performance"]],
                    ["date_start", "<", latest]
                ]),
                &["id", "workcenter_id", "date_start"],
            )
            .await?;
        let mut by_end: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
        for t in &open {
            let (Some(id), Some(wc), Some(from)) = (
                t["id"].as_i64(),
                t.get("workcenter_id")
                    .and_then(|w| w.get(0).or(Some(w)))
                    .and_then(Value::as_i64),
                t["date_start"].as_str(),
            ) else {
                continue;
            };
            let end = starts
                .get(&wc)
                .and_then(|s| s.iter().filter(|s| from < **s).min().copied());
            if let Some(end) = end {
                by_end.entry(end).or_default().push(id);
            }
        }
        for (end, ids) in by_end {
            self.rpc
                .call(
                    "mrp.workcenter.productivity",
                    "write",
                    Some(&ids),
                    json!({"vals": {"date_end": end}}),
                    None,
                )
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    fn forget_chain(&mut self, c: &Chain) {
        for r in &c.runs {
            self.forget(c.wc, r.intent.production);
        }
    }

    /// Send the jobs, at most `max_in_flight` at once.
    async fn run_jobs(&mut self, jobs: Vec<Job>) -> Vec<Done> {
        if jobs.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.rpc.ready().await {
            let e = classify(e);
            return jobs.into_iter().map(|j| failed_job(j, &e)).collect();
        }
        let rpc = &self.rpc;
        let finished: Vec<(Rpc, Done)> = futures::stream::iter(jobs)
            .map(|job| {
                let fork = rpc.fork();
                run_job(fork, job)
            })
            .buffer_unordered(self.max_in_flight.max(1))
            .collect()
            .await;
        finished
            .into_iter()
            .map(|(fork, done)| {
                self.rpc.join(fork);
                done
            })
            .collect()
    }
}

/// The indices of the events a step stands for.
fn step_events(step: &Step) -> Vec<usize> {
    match step {
        Step::Single(i) => vec![*i],
        Step::Produced { events, .. } => events.clone(),
        Step::TimeLogs { rows, .. } => rows.iter().flat_map(|r| r.events.clone()).collect(),
    }
}

/// A stage without the events of keys that failed in an earlier stage.
fn without_failed(events: &[Event], stage: Vec<Step>, failed: &HashSet<String>) -> Vec<Step> {
    let ok = |i: &usize| !failed.contains(events[*i].key());
    stage
        .into_iter()
        .filter_map(|step| match step {
            Step::TimeLogs { ended, rows } => {
                let rows: Vec<TimeLogRow> = rows
                    .into_iter()
                    .filter(|r| r.events.iter().all(ok))
                    .collect();
                (!rows.is_empty()).then_some(Step::TimeLogs { ended, rows })
            }
            other => step_events(&other).iter().all(ok).then_some(other),
        })
        .collect()
}

/// Chains grouped so that those writing one MO are in one job, in order.
fn by_mo(chains: Vec<Chain>) -> Vec<Vec<Chain>> {
    let mut jobs: Vec<(HashSet<i64>, Vec<Chain>)> = Vec::new();
    for c in chains {
        let mos: HashSet<i64> = c.runs.iter().filter_map(|r| r.intent.production).collect();
        match jobs.iter_mut().find(|(m, _)| !m.is_disjoint(&mos)) {
            Some((m, list)) => {
                m.extend(mos);
                list.push(c);
            }
            None => jobs.push((mos, vec![c])),
        }
    }
    jobs.into_iter().map(|(_, c)| c).collect()
}

fn failed_job(job: Job, e: &DeliveryError) -> Done {
    let mut done = Done::default();
    match job {
        Job::Writes(chains) => {
            for c in chains {
                for r in c.runs {
                    done.forget.push((c.wc, r.intent.production));
                    done.outcomes
                        .extend(r.events.into_iter().map(|i| (i, Err(e.clone()))));
                }
            }
        }
        Job::Load { rows, .. } => {
            for (_, events) in rows {
                done.outcomes
                    .extend(events.into_iter().map(|i| (i, Err(e.clone()))));
            }
        }
    }
    done
}

async fn run_job(mut rpc: Rpc, job: Job) -> (Rpc, Done) {
    let mut done = Done::default();
    match job {
        Job::Writes(chains) => {
            for c in chains {
                let mut runs = c.runs.into_iter();
                for r in runs.by_ref() {
                    match write_intent(&mut rpc, &r.intent).await {
                        Ok(()) => done
                            .outcomes
                            .extend(r.events.into_iter().map(|i| (i, Ok(())))),
                        Err(e) => {
                            done.forget.push((c.wc, r.intent.production));
                            done.outcomes
                                .extend(r.events.into_iter().map(|i| (i, Err(e.clone()))));
                            break;
                        }
                    }
                }
                // Not sent after a failure: left for the next round.
                for r in runs {
                    done.forget.push((c.wc, r.intent.production));
                }
            }
        }
        Job::Load { ended, rows } => {
            done.outcomes = send_load(&mut rpc, ended, rows).await;
        }
    }
    (rpc, done)
}

/// One `load` of time-log rows; a row Odoo refuses is taken out (a dead
/// letter with Odoo's message) and the rest sent again, since a load with
/// any error writes nothing.
async fn send_load(
    rpc: &mut Rpc,
    ended: bool,
    mut rows: Vec<(Vec<String>, Vec<usize>)>,
) -> Vec<(usize, Result<(), DeliveryError>)> {
    let mut out = Vec::new();
    let fail = |out: &mut Vec<_>, rows: Vec<(Vec<String>, Vec<usize>)>, e: &DeliveryError| {
        for (_, events) in rows {
            out.extend(events.into_iter().map(|i| (i, Err(e.clone()))));
        }
    };
    while !rows.is_empty() {
        let data: Vec<&Vec<String>> = rows.iter().map(|(r, _)| r).collect();
        let result = rpc
            .call(
                "mrp.workcenter.productivity",
                "load",
                None,
                json!({"fields": plan::time_log_fields(ended), "data": data}),
                Some(json!({"tz": "UTC"})),
            )
            .await;
        let result = match result {
            Ok(v) => v,
            Err(e) => {
                fail(&mut out, rows, &classify(e));
                break;
            }
        };
        let refused = refused_rows(&result, rows.len());
        if refused.is_empty() {
            match load_outcome(&result, "time log") {
                Ok(()) => {
                    for (_, events) in rows {
                        out.extend(events.into_iter().map(|i| (i, Ok(()))));
                    }
                }
                // An error Odoo does not pin on a row: each row alone.
                Err(DeliveryError::Reject(_)) if rows.len() > 1 => {
                    for row in rows {
                        out.extend(Box::pin(send_load(rpc, ended, vec![row])).await);
                    }
                }
                Err(e) => fail(&mut out, rows, &e),
            }
            break;
        }
        let mut rest = Vec::new();
        for (n, row) in rows.into_iter().enumerate() {
            match refused.get(&n) {
                Some(why) => {
                    let e = DeliveryError::Reject(format!("Odoo refused the time log: {why}"));
                    out.extend(row.1.into_iter().map(|i| (i, Err(e.clone()))));
                }
                None => rest.push(row),
            }
        }
        rows = rest;
    }
    out
}

/// Row index → Odoo's error messages, for the errors a `load` pins on a
/// row of this request.
fn refused_rows(result: &Value, len: usize) -> HashMap<usize, String> {
    let mut out: HashMap<usize, String> = HashMap::new();
    for m in result
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.get("type").and_then(Value::as_str) != Some("error") {
            continue;
        }
        let Some(row) = m
            .get("record")
            .and_then(Value::as_u64)
            .and_then(|r| usize::try_from(r).ok())
            .filter(|r| *r < len)
        else {
            continue;
        };
        let text = m.get("message").and_then(Value::as_str).unwrap_or("error");
        out.entry(row)
            .and_modify(|t| {
                t.push_str("; ");
                t.push_str(text);
            })
            .or_insert_with(|| text.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_error_names_its_row() {
        let r = json!({"ids": false, "messages": [
            {"type": "error", "message": "No matching record found for external id 'x' in field 'Loss'", "record": 1},
            {"type": "warning", "message": "w", "record": 0},
            {"type": "error", "message": "beyond", "record": 9}
        ]});
        let got = refused_rows(&r, 3);
        assert_eq!(got.len(), 1);
        assert!(got[&1].contains("external id 'x'"));
    }
}
