//! Usage-plan quotas: requests per API key per UTC day, week or month, and the small
//! file that keeps the counters across restarts.
//!
//! Periods are calendar periods in UTC: a day starts at 00:00, a week on Monday 00:00
//! (ISO weeks), a month on the 1st at 00:00. Time is passed in as Unix seconds, so tests
//! choose it.
//!
//! The file (JSON, next to the config by default) holds one entry per API key *name* —
//! never the key's value:
//!
//! ```json
//! {"version":1,"counters":{"alice":{"period":"DAY","start":1767225600,"used":42}}}
//! ```
//!
//! `start` is the Unix time the period began. On load, an entry whose period or start is
//! not the current one is ignored (the period rolled over while the gateway was down).
//! Writes go to `FILE.tmp` and are renamed over `FILE`, so a crash leaves the old or the
//! new file, never half of one. Nothing here runs on a timer: the server calls
//! [`Quotas::flush`] off the request path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::config::QuotaPeriod;
use crate::throttle::KeyId;

const DAY: i64 = 86_400;

/// The start (Unix seconds) of the UTC period that contains `t`.
pub fn period_start(period: QuotaPeriod, t: i64) -> i64 {
    let days = t.div_euclid(DAY);
    match period {
        QuotaPeriod::Day => days * DAY,
        // 1970-01-01 was a Thursday: Monday is 3 days before it.
        QuotaPeriod::Week => (days - (days + 3).rem_euclid(7)) * DAY,
        QuotaPeriod::Month => {
            let (y, m, _) = civil_date(days);
            days_since_epoch(y, m, 1) * DAY
        }
    }
}

/// The end (Unix seconds, exclusive) of the UTC period that contains `t`.
pub fn period_end(period: QuotaPeriod, t: i64) -> i64 {
    let start = period_start(period, t);
    match period {
        QuotaPeriod::Day => start + DAY,
        QuotaPeriod::Week => start + 7 * DAY,
        QuotaPeriod::Month => {
            let (y, m, _) = civil_date(start.div_euclid(DAY));
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_since_epoch(y, m, 1) * DAY
        }
    }
}

/// Proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32) {
    // Count in 400-year eras that start on 0000-03-01, so the leap day ends a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A plan's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRule {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
}

/// What is left of a key's quota after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLeft {
    /// Requests per period.
    pub limit: u64,
    /// Requests left in this period.
    pub remaining: u64,
    /// When the period ends (Unix seconds).
    pub resets_at: i64,
}

/// A key whose quota is used up for this period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The key's name.
    pub key: Arc<str>,
    /// Time until the period ends.
    pub retry_after: Duration,
}

/// (period start, requests counted in it).
type Window = Mutex<(i64, u64)>;

struct Counter {
    name: Arc<str>,
    rule: QuotaRule,
    state: Arc<Window>,
}

impl Counter {
    /// The count for the period containing `now`, rolling over when it is a new one.
    fn current<'a>(&self, state: &'a mut (i64, u64), now: i64) -> &'a mut u64 {
        let start = period_start(self.rule.period, now);
        if state.0 != start {
            *state = (start, 0);
        }
        &mut state.1
    }

    fn exhausted(&self, now: i64) -> Exhausted {
        let end = period_end(self.rule.period, now);
        Exhausted {
            key: self.name.clone(),
            retry_after: Duration::from_secs((end - now).max(1) as u64),
        }
    }
}

/// Counter state that outlives one compiled gateway, by API key name: a config or
/// plugin reload keeps every key's count. Only weak references are kept, so a key's
/// count is forgotten with the last gateway that knows the key. The lock is taken while
/// a gateway is compiled, never on the request path.
#[derive(Default)]
pub struct QuotaState {
    windows: Mutex<HashMap<Arc<str>, Weak<Window>>>,
    /// Bumped on every counted request; [`Quotas::flush`] writes when it moved.
    changes: AtomicU64,
    flushed: AtomicU64,
    /// One writer at a time (the timer and the final flush at shutdown may meet).
    writing: Mutex<()>,
}

impl QuotaState {
    fn window(&self, name: &Arc<str>) -> Arc<Window> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = windows.get(name).and_then(Weak::upgrade) {
            return w;
        }
        let w = Arc::new(Mutex::new((i64::MIN, 0)));
        windows.insert(name.clone(), Arc::downgrade(&w));
        windows.retain(|_, w| w.strong_count() > 0);
        w
    }
}

/// Quota counters of every API key whose plan has a quota.
pub struct Quotas {
    /// By [`KeyId`]; `None` for keys without a quota.
    counters: Vec<Option<Counter>>,
    file: Option<PathBuf>,
    shared: Arc<QuotaState>,
}

#[derive(Serialize, Deserialize)]
struct QuotaFile {
    version: u32,
    counters: BTreeMap<String, FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    period: QuotaPeriod,
    start: i64,
    used: u64,
}

impl Quotas {
    /// Counters for keys `(name, rule)` by [`KeyId`], persisted to `file` when given.
    pub fn new(keys: Vec<(Arc<str>, Option<QuotaRule>)>, file: Option<PathBuf>) -> Self {
        Self::with_state(keys, file, &Arc::default())
    }

    /// Like [`Quotas::new`], with each key's count kept in `shared` under its name, so
    /// that the counters of a gateway compiled later from the same state go on counting.
    pub fn with_state(
        keys: Vec<(Arc<str>, Option<QuotaRule>)>,
        file: Option<PathBuf>,
        shared: &Arc<QuotaState>,
    ) -> Self {
        let counters: Vec<_> = keys
            .into_iter()
            .map(|(name, rule)| {
                rule.map(|rule| Counter {
                    state: shared.window(&name),
                    name,
                    rule,
                })
            })
            .collect();
        let file = file.filter(|_| counters.iter().any(Option::is_some));
        Self {
            counters,
            file,
            shared: shared.clone(),
        }
    }

    /// Whether any key has a quota.
    pub fn any(&self) -> bool {
        self.counters.iter().any(Option::is_some)
    }

    /// The file the counters are kept in.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn counter(&self, key: KeyId) -> Option<&Counter> {
        self.counters.get(key.0 as usize)?.as_ref()
    }

    /// Refuses a key whose quota is used up, counting nothing.
    pub fn check(&self, key: KeyId, now: i64) -> Result<(), Exhausted> {
        let Some(c) = self.counter(key) else {
            return Ok(());
        };
        let mut state = c.state.lock().unwrap_or_else(|p| p.into_inner());
        if *c.current(&mut state, now) >= c.rule.limit {
            return Err(c.exhausted(now));
        }
        Ok(())
    }

    /// Counts one request against the key's quota, or refuses it when used up.
    pub fn consume(&self, key: KeyId, now: i64) -> Result<Option<QuotaLeft>, Exhausted> {
        let Some(c) = self.counter(key) else {
            return Ok(None);
        };
        let mut state = c.state.lock().unwrap_or_else(|p| p.into_inner());
        let used = c.current(&mut state, now);
        if *used >= c.rule.limit {
            return Err(c.exhausted(now));
        }
        *used += 1;
        let remaining = c.rule.limit - *used;
        drop(state);
        self.shared.changes.fetch_add(1, Ordering::Relaxed);
        Ok(Some(QuotaLeft {
            limit: c.rule.limit,
            remaining,
            resets_at: period_end(c.rule.period, now),
        }))
    }

    /// Reads the counters of the current periods from the file, if there is one; returns
    /// how many keys had a count. A missing file is an empty one.
    pub fn load(&self, now: i64) -> Result<usize, String> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let file: QuotaFile = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a quota file: {e}", path.display()))?;
        if file.version != 1 {
            return Err(format!(
                "{}: unknown quota file version {}",
                path.display(),
                file.version
            ));
        }
        let mut loaded = 0;
        for c in self.counters.iter().flatten() {
            let Some(entry) = file.counters.get(&*c.name) else {
                continue;
            };
            if entry.period == c.rule.period && entry.start == period_start(c.rule.period, now) {
                *c.state.lock().unwrap_or_else(|p| p.into_inner()) = (entry.start, entry.used);
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// The counters as the file holds them.
    fn snapshot(&self) -> QuotaFile {
        let counters = self
            .counters
            .iter()
            .flatten()
            .filter_map(|c| {
                let (start, used) = *c.state.lock().unwrap_or_else(|p| p.into_inner());
                (used > 0).then(|| {
                    let entry = FileEntry {
                        period: c.rule.period,
                        start,
                        used,
                    };
                    (c.name.to_string(), entry)
                })
            })
            .collect();
        QuotaFile {
            version: 1,
            counters,
        }
    }

    /// Writes the counters to the file if any changed since the last write (atomically:
    /// a temporary file renamed over the old one). Returns whether it wrote.
    pub fn flush(&self) -> std::io::Result<bool> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let _writing = self
            .shared
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let changes = self.shared.changes.load(Ordering::Relaxed);
        if changes == self.shared.flushed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let json = serde_json::to_string(&self.snapshot()).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, json.as_bytes())?;
        std::fs::rename(&tmp, path)?;
        self.shared.flushed.store(changes, Ordering::Relaxed);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
