//! The guard against dictionaries (DESIGN §4, docs/guard.md): quotas per
//! client and purpose, and the sweep detector ([`crate::sweep`]) that
//! suspends a client whose batch enumerates the NIR space.
//!
//! A quota counts codes computed (lines answered `ok`) per batch and per UTC
//! day, and batches started per hour, for each (client, purpose). At a
//! batch's start an exhausted quota is refused with 429 and `Retry-After`;
//! during the batch, once the quota runs out, every later line without an
//! error of its own is answered `quota_exceeded` and gets no code. The
//! chunks of a batch are answered in parallel, so each takes its share of
//! the quota in the batch's order ([`Turns`]): the cut falls on the same
//! line whatever the scheduling.
//!
//! The counters survive a restart without a file of their own: the
//! traceability log already holds every batch's start (client, purpose,
//! time) and end (codes given), and the service verifies it at start
//! before reading them back ([`Guard::restore`]). A batch that never ended
//! (the service was killed) counts as a whole batch of the client's
//! `records_per_batch` (or, without one, its whole `records_per_day`). A
//! batch's codes count for the day it started on: one running across
//! midnight UTC counts wholly for the first day after a restart.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use time::OffsetDateTime;

use crate::batch::Seen;
use crate::batch::{Status, Verdict};
use crate::config::{ClientEntry, Quota};
use crate::sweep::{Prefixes, Prior, Rule, Watch, WINDOW_DAYS};
use crate::wire::Suspension;

/// (client name, purpose).
type Key = (String, String);

/// Usage of one (client, purpose).
#[derive(Default, Debug)]
struct Usage {
    /// The UTC day `today` counts.
    day: Option<time::Date>,
    /// Codes given that day.
    today: u64,
    /// Start times (Unix seconds) of the batches of the last hour.
    starts: VecDeque<i64>,
}

impl Usage {
    fn roll(&mut self, now: OffsetDateTime) {
        if self.day != Some(now.date()) {
            self.day = Some(now.date());
            self.today = 0;
        }
        let hour_ago = now.unix_timestamp() - 3600;
        while self.starts.front().is_some_and(|&t| t <= hour_ago) {
            self.starts.pop_front();
        }
    }
}

/// Why a batch is refused at its start, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit reached: `records_per_batch`, `records_per_day`,
    /// `batches_per_hour`.
    pub limit: &'static str,
    /// Seconds until it frees (an hour when waiting does not help: the
    /// batch is larger than a batch may be).
    pub retry_after: u64,
}

/// What the sweep detector keeps of a client between batches, in memory
/// only: its lines and implausible lines per UTC day of the last
/// [`WINDOW_DAYS`] days, the order numbers seen in each bucket of prefixes
/// ([`Prefixes`]), and its suspension. Never a body, never a prefix.
#[derive(Default)]
struct Evidence {
    days: VecDeque<(time::Date, Prior)>,
    prefixes: Option<Arc<Mutex<Prefixes>>>,
    suspended: Option<Suspension>,
}

impl Evidence {
    fn prior(&mut self, today: time::Date) -> Prior {
        let oldest = today - time::Duration::days(WINDOW_DAYS as i64 - 1);
        while self.days.front().is_some_and(|d| d.0 < oldest) {
            self.days.pop_front();
        }
        let mut sum = Prior::default();
        for (_, d) in &self.days {
            sum.lines += d.lines;
            sum.implausible += d.implausible;
            sum.lookups += d.lookups;
            sum.misses += d.misses;
        }
        sum
    }

    fn add(&mut self, today: time::Date, batch: Prior) {
        match self.days.back_mut() {
            Some((day, d)) if *day == today => {
                d.lines += batch.lines;
                d.implausible += batch.implausible;
                d.lookups += batch.lookups;
                d.misses += batch.misses;
            }
            _ => self.days.push_back((today, batch)),
        }
    }
}

/// The quotas' counters, for every (client, purpose), and the sweep
/// detector's evidence, for every client.
pub struct Guard {
    usage: Mutex<HashMap<Key, Usage>>,
    evidence: Mutex<HashMap<String, Evidence>>,
    /// Keys the hash that puts prefixes in buckets ([`Prefixes`]).
    sweep_key: u64,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            usage: Mutex::default(),
            evidence: Mutex::default(),
            sweep_key: rand::random(),
        }
    }
}

impl Guard {
    /// Counters rebuilt from the log of `dir` (already verified): the
    /// batches of the current UTC day and of the last hour.
    pub fn restore(dir: &Path, clients: &[ClientEntry]) -> Self {
        let now = OffsetDateTime::now_utc();
        let guard = Guard::default();
        let Ok(files) = crate::audit::log_files(dir) else {
            return guard;
        };
        guard.restore_suspensions(&files);
        let day_start = now.replace_time(time::Time::MIDNIGHT);
        let since = day_start.min(now - time::Duration::hours(1));
        // Batch id -> (key, start time) of the batches started since then.
        let mut started: HashMap<String, (Key, OffsetDateTime)> = HashMap::new();
        let mut ended: HashMap<String, u64> = HashMap::new();
        for f in files.iter().rev() {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let mut older = false;
            for line in text.lines() {
                if !line.contains("\"event\":\"batch_") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let Some(t) = v["time"].as_str().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                }) else {
                    continue;
                };
                if t < since {
                    older = true;
                    continue;
                }
                let d = &v["details"];
                let Some(batch) = d["batch"].as_str() else {
                    continue;
                };
                match v["event"].as_str() {
                    Some("batch_start")
                        if d["operation"] == "cstatns" || d["operation"] == "cspens" =>
                    {
                        if let (Some(c), Some(p)) = (d["client"].as_str(), d["purpose"].as_str()) {
                            started.insert(batch.to_owned(), ((c.to_owned(), p.to_owned()), t));
                        }
                    }
                    Some("batch_end") => {
                        ended.insert(batch.to_owned(), d["counts"]["ok"].as_u64().unwrap_or(0));
                    }
                    _ => {}
                }
            }
            if older {
                break; // older files hold older records only
            }
        }
        {
            let mut usage = guard.usage.lock().unwrap_or_else(|p| p.into_inner());
            for (batch, (key, t)) in started {
                let u = usage.entry(key.clone()).or_default();
                u.roll(now);
                if t.unix_timestamp() > now.unix_timestamp() - 3600 {
                    u.starts.push_back(t.unix_timestamp());
                }
                if t >= day_start {
                    // A batch that never ended: as much as it could have had.
                    let quota = clients
                        .iter()
                        .find(|c| c.name == key.0)
                        .and_then(|c| c.quota);
                    let worst = quota
                        .and_then(|q| q.records_per_batch.or(q.records_per_day))
                        .unwrap_or(0);
                    u.today += ended.get(&batch).copied().unwrap_or(worst);
                }
            }
            for u in usage.values_mut() {
                u.starts.make_contiguous().sort_unstable();
            }
        }
        guard
    }

    /// The suspensions the log holds: each `sweep_suspected` not followed
    /// by a `guard_released` of its client. Both are rare, so every file is
    /// read for them, whatever its age.
    fn restore_suspensions(&self, files: &[std::path::PathBuf]) {
        let mut evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        for f in files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            for line in text.lines() {
                let released = line.contains("\"event\":\"guard_released\"");
                if !released && !line.contains("\"event\":\"sweep_suspected\"") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let d = &v["details"];
                let Some(client) = d["client"].as_str() else {
                    continue;
                };
                let e = evidence.entry(client.to_owned()).or_default();
                e.suspended = (!released).then(|| Suspension {
                    client: client.to_owned(),
                    since: v["time"].as_str().unwrap_or_default().to_owned(),
                    rule: d["rule"].as_str().unwrap_or_default().to_owned(),
                    batch: d["batch"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }

    /// The clients suspended, by name.
    pub fn suspensions(&self) -> Vec<Suspension> {
        let evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        let mut s: Vec<Suspension> = evidence
            .values()
            .filter_map(|e| e.suspended.clone())
            .collect();
        s.sort_by(|a, b| a.client.cmp(&b.client));
        s
    }

    /// Lifts `client`'s suspension; false when it was not suspended (and
    /// nothing changes). Once lifted, the detector's figures of the client
    /// start again from nothing.
    pub fn release(&self, client: &str) -> bool {
        let mut evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        let suspended = evidence.get(client).is_some_and(|e| e.suspended.is_some());
        if suspended {
            evidence.remove(client);
        }
        suspended
    }

    /// Whether `client` is suspended now.
    fn is_suspended(&self, client: &str) -> bool {
        let evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        evidence.get(client).is_some_and(|e| e.suspended.is_some())
    }

    /// Admits a NIR batch of `client` for `purpose` under `quota`, or says
    /// which limit is reached, or that the client is suspended. The batch
    /// counts for `batches_per_hour` once it has started
    /// ([`Guard::started`]): one refused later (a bad header, a seal) does
    /// not.
    ///
    /// The body's declared length is not used: no count of lines follows
    /// from a count of bytes (blank lines of any length are skipped, and an
    /// NDJSON line may carry any amount of white space), so a refusal from it
    /// would refuse honest batches. The cut during the batch is exact.
    pub fn admit(&self, client: &str, purpose: &str, quota: Quota) -> Result<BatchQuota, Refusal> {
        let now = OffsetDateTime::now_utc();
        let prior = {
            let mut evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
            let e = evidence.entry(client.to_owned()).or_default();
            if e.suspended.is_some() {
                return Err(Refusal {
                    limit: "sweep_suspected",
                    retry_after: 3600,
                });
            }
            let key = self.sweep_key;
            let prefixes = e
                .prefixes
                .get_or_insert_with(|| Arc::new(Mutex::new(Prefixes::new(key))))
                .clone();
            (e.prior(now.date()), prefixes)
        };
        let (prior, prefixes) = prior;
        let key = (client.to_owned(), purpose.to_owned());
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let u = usage.entry(key.clone()).or_default();
        u.roll(now);
        let until_midnight = {
            let next = now
                .date()
                .next_day()
                .map_or(now, |d| d.midnight().assume_utc());
            (next - now).whole_seconds().max(1) as u64
        };
        if let Some(max) = quota.batches_per_hour {
            if u.starts.len() as u64 >= max {
                let oldest = u.starts.front().copied().unwrap_or(now.unix_timestamp());
                let retry_after = (oldest + 3600 - now.unix_timestamp()).max(1) as u64;
                return Err(Refusal {
                    limit: "batches_per_hour",
                    retry_after,
                });
            }
        }
        let left_today = quota.records_per_day.map(|m| m.saturating_sub(u.today));
        if left_today == Some(0) {
            return Err(Refusal {
                limit: "records_per_day",
                retry_after: until_midnight,
            });
        }
        Ok(BatchQuota {
            key,
            quota,
            given: 0,
            tripped: None,
            watch: Watch::new(prior),
            prefixes,
            halted: false,
        })
    }

    /// A batch is over: what its detector saw joins its client's figures.
    fn settle(&self, batch: &BatchQuota) {
        let now = OffsetDateTime::now_utc();
        let outcome = batch.watch.outcome();
        let mut evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        let e = evidence.entry(batch.key.0.clone()).or_default();
        e.add(now.date(), outcome);
    }

    /// A batch of `client` was judged a sweep by `rule`: the client is
    /// refused from now on, until an operator lifts it.
    fn suspend(&self, client: &str, rule: Rule, batch: &str) {
        let mut evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        let e = evidence.entry(client.to_owned()).or_default();
        e.suspended.get_or_insert_with(|| Suspension {
            client: client.to_owned(),
            since: crate::event::rfc3339_seconds(OffsetDateTime::now_utc()),
            rule: rule.name().to_owned(),
            batch: batch.to_owned(),
        });
    }

    /// The batch has started (its `batch_start` is logged): it counts for
    /// `batches_per_hour`.
    pub fn started(&self, batch: &BatchQuota) {
        let now = OffsetDateTime::now_utc();
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let u = usage.entry(batch.key.clone()).or_default();
        u.roll(now);
        u.starts.push_back(now.unix_timestamp());
    }

    /// Takes up to `wanted` codes for the batch, in its order.
    fn take(&self, batch: &mut BatchQuota, wanted: usize) -> usize {
        if wanted == 0 || batch.tripped.is_some() {
            return 0;
        }
        let now = OffsetDateTime::now_utc();
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let u = usage.entry(batch.key.clone()).or_default();
        u.roll(now);
        let mut allowed = wanted as u64;
        let mut limit = None;
        if let Some(m) = batch.quota.records_per_batch {
            let left = m.saturating_sub(batch.given);
            if left < allowed {
                allowed = left;
                limit = Some("records_per_batch");
            }
        }
        if let Some(m) = batch.quota.records_per_day {
            let left = m.saturating_sub(u.today);
            if left < allowed {
                allowed = left;
                limit = Some("records_per_day");
            }
        }
        u.today += allowed;
        batch.given += allowed;
        batch.tripped = limit;
        allowed as usize
    }
}

/// One batch's part of its client's quota, and its sweep detector.
pub struct BatchQuota {
    key: Key,
    quota: Quota,
    /// Codes given to this batch so far.
    given: u64,
    /// The limit that stopped it, once one has.
    tripped: Option<&'static str>,
    watch: Watch,
    /// The client's table, shared by its batches.
    prefixes: Arc<Mutex<Prefixes>>,
    /// Cut because another batch got its client suspended.
    halted: bool,
}

impl std::fmt::Debug for BatchQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQuota")
            .field("key", &self.key)
            .field("given", &self.given)
            .field("tripped", &self.tripped)
            .field("swept", &self.watch.tripped())
            .finish_non_exhaustive()
    }
}

impl BatchQuota {
    /// The limit that stopped the batch, if one did.
    pub fn tripped(&self) -> Option<&'static str> {
        self.tripped
    }

    /// The detector's rule, if it judged the batch a sweep (or the client
    /// was suspended while it ran).
    pub fn swept(&self) -> Option<Rule> {
        self.watch
            .tripped()
            .or(self.halted.then_some(Rule::ClientSuspended))
    }

    /// The verdict on a chunk's candidates, in order: the detector reads
    /// them (`count` of them; `bodies` is empty for a batch without NIRs),
    /// then the quota gives codes to those before the first one judged a
    /// sweep.
    pub fn verdict(
        &mut self,
        guard: &Guard,
        bodies: &[[u8; crate::nir::BODY_LEN]],
        count: usize,
        seen: Option<&[Seen]>,
    ) -> Verdict {
        // Suspended by another of its batches since this one started: no
        // more codes here either.
        if self.swept().is_none() && guard.is_suspended(&self.key.0) {
            self.halted = true;
        }
        let found = if self.halted {
            None
        } else {
            let mut prefixes = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
            let w = &mut self.watch;
            match seen {
                None => bodies.iter().position(|b| w.observe(&mut prefixes, b)),
                Some(seen) => seen.iter().position(|s| match *s {
                    Seen::Given(i) => w.observe(&mut prefixes, &bodies[i as usize]),
                    Seen::Found(i) => w.observe_lookup(&mut prefixes, Some(&bodies[i as usize])),
                    Seen::Miss => w.observe_lookup(&mut prefixes, None),
                }),
            }
        };
        let swept = found.unwrap_or(if self.swept().is_some() {
            0
        } else {
            usize::MAX
        });
        let wanted = match seen {
            None => count.min(swept),
            Some(seen) => seen[..swept.min(seen.len())]
                .iter()
                .filter(|s| !matches!(s, Seen::Miss))
                .count(),
        };
        let allowed = guard.take(self, wanted);
        Verdict {
            allowed,
            rest: if allowed < wanted {
                Status::QuotaExceeded
            } else {
                Status::Ok
            },
            swept,
        }
    }
}

/// A running batch's guard, shared by its chunks' jobs.
pub(super) struct GuardRun {
    state: Arc<super::AppState>,
    quota: Mutex<BatchQuota>,
    turns: Turns,
    next: AtomicU64,
    batch: crate::event::BatchId,
    client: crate::event::ClientName,
    purpose: crate::event::Purpose,
    id: crate::tls::PeerIdentity,
}

impl GuardRun {
    pub(super) fn new(
        state: Arc<super::AppState>,
        quota: BatchQuota,
        batch: crate::event::BatchId,
        client: crate::event::ClientName,
        purpose: crate::event::Purpose,
        id: crate::tls::PeerIdentity,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            quota: Mutex::new(quota),
            turns: Turns::default(),
            next: AtomicU64::new(0),
            batch,
            client,
            purpose,
            id,
        })
    }

    /// The next chunk's turn, in the order chunks are queued.
    pub(super) fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket {
            run: self.clone(),
            k: self.next.fetch_add(1, Ordering::Relaxed),
            done: false,
        }
    }

    /// The batch has started: it counts for `batches_per_hour`.
    pub(super) fn started(&self) {
        let q = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        self.state.guard.started(&q);
    }

    /// The limit that stopped the batch's codes, if one did.
    pub(super) fn tripped(&self) -> Option<&'static str> {
        self.quota
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tripped()
    }

    /// The detector's rule and figures, if it judged the batch a sweep.
    pub(super) fn swept(&self) -> Option<(Rule, crate::sweep::Figures)> {
        let q = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        q.swept().map(|r| (r, q.watch.figures()))
    }
}

impl Drop for GuardRun {
    fn drop(&mut self) {
        let q = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        self.state.guard.settle(&q);
    }
}

/// One chunk's turn at the guard; given up on drop if never taken.
pub(super) struct Ticket {
    run: Arc<GuardRun>,
    k: u64,
    done: bool,
}

impl Ticket {
    /// Waits for the chunks before this one, then has the detector read
    /// this chunk's candidates and takes its share of the quota; logs
    /// `sweep_suspected` (and suspends the client) when the detector trips
    /// here, `quota_exceeded` when the quota runs out here.
    pub(super) fn verdict(
        &mut self,
        bodies: &[[u8; crate::nir::BODY_LEN]],
        count: usize,
        seen: Option<&[Seen]>,
    ) -> Verdict {
        self.run.turns.wait(self.k);
        let (verdict, tripped_now, swept_now) = {
            let mut q = self.run.quota.lock().unwrap_or_else(|p| p.into_inner());
            let (before, swept_before) = (q.tripped(), q.swept());
            let v = q.verdict(&self.run.state.guard, bodies, count, seen);
            let swept_now = q
                .swept()
                .filter(|_| swept_before.is_none())
                .map(|rule| (rule, q.watch.figures()));
            (v, q.tripped().filter(|_| before.is_none()), swept_now)
        };
        if let Some((rule, f)) = swept_now {
            // Suspended before any later line is answered: the client's
            // next batch is refused, however soon it comes.
            self.run
                .state
                .guard
                .suspend(self.run.client.as_str(), rule, self.run.batch.as_str());
            tracing::warn!(
                rule = rule.name(),
                "a batch was judged a sweep of the NIR space"
            );
            self.run.state.log(
                crate::event::Event::SweepSuspected {
                    batch: self.run.batch.clone(),
                    client: self.run.client.clone(),
                    purpose: self.run.purpose.clone(),
                    rule: crate::event::Term::from(rule.name()),
                    lines: f.lines,
                    implausible: f.implausible,
                    block_implausible: u64::from(f.block_implausible),
                    most_orders: u64::from(f.most_orders),
                    prior_lines: f.prior_lines,
                    prior_implausible: f.prior_implausible,
                },
                Some(&self.run.id),
            );
        }
        self.done = true;
        self.run.turns.finish(self.k);
        if let Some(limit) = tripped_now {
            tracing::warn!(limit, "a batch ran out of its client's quota");
            self.run.state.log(
                crate::event::Event::QuotaExceeded {
                    batch: self.run.batch.clone(),
                    client: self.run.client.clone(),
                    purpose: self.run.purpose.clone(),
                    limit: crate::event::Term::from(limit),
                },
                Some(&self.run.id),
            );
        }
        verdict
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.run.turns.finish(self.k);
        }
    }
}

/// Hands out turns in a batch's order to its chunks, answered in parallel:
/// chunk `k` waits until every chunk before it has had its turn or is gone.
#[derive(Default)]
pub struct Turns {
    state: Mutex<TurnState>,
    moved: Condvar,
}

#[derive(Default)]
struct TurnState {
    next: u64,
    done: std::collections::BTreeSet<u64>,
}

impl Turns {
    /// Waits for turn `k` (blocking: called on the blocking pool).
    pub fn wait(&self, k: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.next < k {
            s = self.moved.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Turn `k` is over (or will never be taken).
    pub fn finish(&self, k: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done.insert(k);
        loop {
            let next = s.next;
            if !s.done.remove(&next) {
                break;
            }
            s.next += 1;
        }
        drop(s);
        self.moved.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(batch: Option<u64>, day: Option<u64>, hour: Option<u64>) -> Quota {
        Quota {
            records_per_batch: batch,
            records_per_day: day,
            batches_per_hour: hour,
        }
    }

    #[test]
    fn a_batch_takes_what_is_left_and_then_nothing() {
        let g = Guard::default();
        let mut b = g.admit("c", "p", quota(Some(150), None, None)).unwrap();
        assert_eq!(b.verdict(&g, &[], 100, None).allowed, 100);
        let v = b.verdict(&g, &[], 100, None);
        assert_eq!((v.allowed, v.rest), (50, Status::QuotaExceeded));
        assert_eq!(b.tripped(), Some("records_per_batch"));
        assert_eq!(b.verdict(&g, &[], 1, None).allowed, 0);
    }

    #[test]
    fn the_day_is_shared_by_the_batches_of_a_purpose_only() {
        let g = Guard::default();
        let q = quota(None, Some(120), None);
        let mut a = g.admit("c", "p", q).unwrap();
        assert_eq!(a.verdict(&g, &[], 100, None).allowed, 100);
        let mut b = g.admit("c", "p", q).unwrap();
        assert_eq!(b.verdict(&g, &[], 100, None).allowed, 20);
        assert_eq!(b.tripped(), Some("records_per_day"));
        let refused = g.admit("c", "p", q).unwrap_err();
        assert_eq!(refused.limit, "records_per_day");
        assert!(refused.retry_after >= 1 && refused.retry_after <= 86_400);
        // Another purpose, another client: their own counters.
        assert!(g.admit("c", "other", q).is_ok());
        assert!(g.admit("d", "p", q).is_ok());
    }

    #[test]
    fn a_batch_running_when_its_client_is_suspended_gives_no_more_codes() {
        let g = Guard::default();
        let mut running = g.admit("c", "p", Quota::default()).unwrap();
        let body = *crate::nir::synthetic(1).body();
        assert_eq!(running.verdict(&g, &[body; 3], 3, None).swept, usize::MAX);
        g.suspend("c", Rule::PrefixOrders, "another-batch");
        let v = running.verdict(&g, &[body; 3], 3, None);
        assert_eq!((v.swept, v.allowed), (0, 0));
        assert_eq!(running.swept(), Some(Rule::ClientSuspended));
        assert_eq!(
            g.admit("c", "p", Quota::default()).unwrap_err().limit,
            "sweep_suspected"
        );
        // Releasing a client that is not suspended changes nothing.
        assert!(!g.release("d"));
        assert!(g.release("c"));
        assert!(g.admit("c", "p", Quota::default()).is_ok());
    }

    #[test]
    fn batches_per_hour_count_the_batches_that_started() {
        let g = Guard::default();
        let q = quota(Some(10), None, Some(2));
        let first = g.admit("c", "p", q).unwrap();
        g.started(&first);
        // Admitted but refused before its start (a bad header): not counted.
        let _refused_later = g.admit("c", "p", q).unwrap();
        let second = g.admit("c", "p", q).unwrap();
        g.started(&second);
        let r = g.admit("c", "p", q).unwrap_err();
        assert_eq!(r.limit, "batches_per_hour");
        assert!(r.retry_after > 3500 && r.retry_after <= 3600, "{r:?}");
    }

    #[test]
    fn turns_go_in_order_and_skip_the_chunks_that_are_gone() {
        let t = std::sync::Arc::new(Turns::default());
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for k in (0..8u64).rev() {
            let (t, order) = (t.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                if k == 3 {
                    t.finish(k); // gone without its turn
                    return;
                }
                t.wait(k);
                order.lock().unwrap().push(k);
                t.finish(k);
            }));
        }
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 4, 5, 6, 7]);
    }
}
