//! API keys and usage plans: finding the caller's key, then its plan's bucket and quota,
//! together with the route and account buckets of [`crate::throttle`].
//!
//! The pipeline calls [`Usage::before_authorize`] right after routing, and
//! [`Usage::after_authorize`] once an authorizer allowed the request:
//!
//! - keys from `x-api-key` (`api_key_source = "header"`, the default) are checked before
//!   the authorizer: key (403) → quota (429 `Limit Exceeded`, counting nothing) → key
//!   bucket → route bucket → account bucket → the quota counts the request. All of it is
//!   in AWS's level order, and a flood never reaches plugin code.
//! - keys from an authorizer's `usage-identifier-key` can only be known after it ran, so
//!   the route and account buckets come first (before the authorizer, as above), then
//!   key → quota → key bucket → count. A request refused at the key level has taken
//!   route and account tokens.
//!
//! Keys are only looked at on routes with `api_key_required = true`, as on AWS. A route
//! without its own bucket and without a key costs one account-bucket check.
//!
//! With `[cluster]`, the buckets and quota counters are the store's
//! ([`crate::cluster`]); the quota file is then neither read nor written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http::HeaderMap;

use crate::cluster::Cluster;
use crate::cluster::quota::{QuotaRefusal, SharedQuotas};
use crate::cluster::throttle::SharedBuckets;
use crate::config::{ApiKeySource, Config, ThrottleLimit};
use crate::error::{ApiKeyProblem, GatewayError};
use crate::quota::{QuotaLeft, QuotaRule, QuotaState, Quotas, unix_now};
use crate::route::RouteKey;
use crate::throttle::{
    Bucket, BucketId, BucketKind, BucketRegistry, Buckets, KeyId, Limit, MemoryStore, Throttle,
    ThrottleStore,
};

/// The header API keys are read from.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Default quota file, next to the config file.
pub const DEFAULT_QUOTA_FILE: &str = "weir-quotas.json";

/// Throttle buckets and quota counters that outlive one compiled gateway, keyed by
/// name — `account`, `route KEY`, `plan NAME`, `plan NAME route KEY`, API key names —
/// so that reloading the config or swapping a plugin does not reset any limit. One per
/// process; every [`compile`] of that process takes it.
#[derive(Default)]
pub struct UsageState {
    buckets: BucketRegistry,
    quotas: Arc<QuotaState>,
    /// Per-key buckets are keyed by these ids, stable for a key name across reloads.
    key_ids: Mutex<HashMap<Arc<str>, KeyId>>,
    /// The shared store, when this node is one of a cluster.
    cluster: Option<Arc<Cluster>>,
}

impl UsageState {
    /// State whose buckets and counters live in `cluster`'s store.
    pub fn with_cluster(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster: Some(cluster),
            ..Self::default()
        }
    }

    /// The named buckets (also for limits outside the request levels).
    pub fn buckets(&self) -> &BucketRegistry {
        &self.buckets
    }

    /// The bucket `name` for a limit outside the request levels (a WebSocket API's
    /// connect rate): shared by the nodes of a cluster, else by this process's gateways.
    pub fn bucket(&self, name: &str, limit: Limit) -> Bucket {
        match &self.cluster {
            Some(cluster) => {
                let mut buckets = Buckets::default();
                let id = buckets.add_named(name.to_owned(), limit, BucketKind::Shared);
                let store = SharedBuckets::new(cluster, &buckets, &self.buckets, HashMap::new());
                Bucket::in_store(Box::new(store), id)
            }
            None => Bucket::named(&self.buckets, name, limit),
        }
    }

    fn key_id(&self, name: &Arc<str>) -> KeyId {
        let mut ids = self.key_ids.lock().unwrap_or_else(|p| p.into_inner());
        let next = KeyId(ids.len() as u32);
        *ids.entry(name.clone()).or_insert(next)
    }
}

struct Key {
    name: Arc<str>,
    plan: usize,
    enabled: bool,
    /// The key of its per-key buckets (stable across reloads).
    bucket_key: KeyId,
}

struct Plan {
    /// Each key's bucket on this plan.
    bucket: Option<BucketId>,
    /// Per-route overrides of `bucket`, by route index.
    routes: Vec<Option<BucketId>>,
}

/// The compiled throttle levels, API keys, usage plans and quota counters.
pub struct Usage {
    throttle: Throttle,
    source: ApiKeySource,
    /// `api_key_required`, by route index.
    required: Vec<bool>,
    keys: Vec<Key>,
    by_value: HashMap<Box<str>, KeyId>,
    plans: Vec<Plan>,
    quotas: Arc<Quotas>,
    /// The counters in the cluster's store, when there is one (then `quotas` is unused).
    shared_quotas: Option<SharedQuotas>,
    quota_headers: bool,
}

impl Usage {
    /// The throttle stage: for keys from `x-api-key` everything below, otherwise the
    /// route and account buckets only. Returns the quota left when headers are wanted.
    pub async fn before_authorize(
        &self,
        route: usize,
        headers: &HeaderMap,
    ) -> Result<Option<QuotaLeft>, GatewayError> {
        let key = if self.source == ApiKeySource::Header && self.requires_key(route) {
            let value = headers
                .get(API_KEY_HEADER)
                .map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or(""));
            Some(self.key(value)?)
        } else {
            None
        };
        self.admit(key, route, true).await
    }

    /// The API key check after the authorizer, for keys the authorizer returned.
    pub async fn after_authorize(
        &self,
        route: usize,
        usage_key: Option<&str>,
    ) -> Result<Option<QuotaLeft>, GatewayError> {
        if self.source != ApiKeySource::Authorizer || !self.requires_key(route) {
            return Ok(None);
        }
        let key = self.key(usage_key)?;
        self.admit(Some(key), route, false).await
    }

    /// The buckets, e.g. for [`Throttle::admit_connection`] and eviction.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The quota counters (to load and flush).
    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    fn requires_key(&self, route: usize) -> bool {
        self.required.get(route).copied().unwrap_or(false)
    }

    fn key(&self, value: Option<&str>) -> Result<KeyId, GatewayError> {
        let value = value
            .filter(|v| !v.is_empty())
            .ok_or(GatewayError::ApiKey(ApiKeyProblem::Missing))?;
        let id = *self
            .by_value
            .get(value)
            .ok_or(GatewayError::ApiKey(ApiKeyProblem::Unknown))?;
        match self.keys.get(id.0 as usize) {
            Some(k) if k.enabled => Ok(id),
            Some(k) => Err(GatewayError::ApiKey(ApiKeyProblem::Disabled(
                k.name.clone(),
            ))),
            None => Err(GatewayError::ApiKey(ApiKeyProblem::Unknown)),
        }
    }

    fn key_bucket(&self, key: KeyId, route: usize) -> Option<BucketId> {
        let plan = self.plans.get(self.keys.get(key.0 as usize)?.plan)?;
        plan.routes.get(route).copied().flatten().or(plan.bucket)
    }

    /// Quota check (counts nothing) → buckets → the quota counts the request.
    async fn admit(
        &self,
        key: Option<KeyId>,
        route: usize,
        route_and_account: bool,
    ) -> Result<Option<QuotaLeft>, GatewayError> {
        let checked = match key {
            Some(k) if self.quotas.any() => {
                let now = unix_now();
                let shared = match &self.shared_quotas {
                    Some(shared) => shared.check(k, now)?,
                    None => {
                        self.quotas.check(k, now)?;
                        None
                    }
                };
                Some((k, now, shared))
            }
            _ => None,
        };
        let key_bucket = key.and_then(|k| {
            let bucket_key = self.keys.get(k.0 as usize)?.bucket_key;
            Some((self.key_bucket(k, route)?, bucket_key))
        });
        if route_and_account {
            self.throttle.admit(key_bucket, route).await?;
        } else if let Some((bucket, k)) = key_bucket {
            self.throttle.admit_key(bucket, k).await?;
        }
        let Some((k, now, shared)) = checked else {
            return Ok(None);
        };
        // A concurrent request may have taken the last unit since the check above.
        let left = match (&self.shared_quotas, shared) {
            (Some(quotas), Some(checked)) => {
                Some(quotas.consume(checked, now).await.map_err(|r| match r {
                    QuotaRefusal::Exhausted(e) => GatewayError::from(e),
                    QuotaRefusal::StoreUnavailable => GatewayError::StoreUnavailable,
                })?)
            }
            (Some(_), None) => None,
            (None, _) => self.quotas.consume(k, now)?,
        };
        Ok(left.filter(|_| self.quota_headers))
    }
}

fn limit(t: &ThrottleLimit) -> Limit {
    Limit {
        rate: t.rate,
        burst: t.burst,
    }
}

/// Checks `limit` (named `at`) and that it stays within the account's (when that one
/// is valid itself).
fn check_limit(at: &str, l: Limit, account: Option<Limit>, errors: &mut Vec<String>) -> bool {
    if let Err((field, e)) = l.check() {
        errors.push(format!("{at}.{field}: {e}"));
        return false;
    }
    if let Some(account) = account
        && l.exceeds(&account)
    {
        errors.push(format!(
            "{at}: rate {} / burst {} is above the account limit in [throttle] (rate {}, burst {})",
            l.rate, l.burst, account.rate, account.burst
        ));
        return false;
    }
    true
}

/// Compiles `[throttle]`, route throttles, `[usage_plans]` and `[[api_keys]]`, with
/// bucket and counter state taken from `state` by name.
/// `route_keys` are the canonical keys of `config.routes` (by index; `None` if invalid).
pub fn compile(
    config: &Config,
    route_keys: &[Option<String>],
    base_dir: &Path,
    state: &UsageState,
    errors: &mut Vec<String>,
) -> Usage {
    let mut buckets = Buckets::default();
    let account = Limit {
        rate: config.throttle.rate,
        burst: config.throttle.burst,
    };
    let valid_account = match account.check() {
        Ok(()) => Some(account),
        Err((field, e)) => {
            errors.push(format!("throttle.{field}: {e}"));
            None
        }
    };
    let account_bucket = buckets.add_named("account".to_owned(), account, BucketKind::Shared);
    let source = config.api.api_key_source;

    let mut route_buckets = Vec::with_capacity(config.routes.len());
    let mut required = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        let at = match route_keys.get(i).cloned().flatten() {
            Some(key) => format!("routes[{i}] (`{key}`)"),
            None => format!("routes[{i}]"),
        };
        let name = route_keys.get(i).cloned().flatten();
        let bucket = r.throttle.as_ref().map(limit).and_then(|l| {
            check_limit(&format!("{at}.throttle"), l, valid_account, errors).then(|| match &name {
                Some(key) => buckets.add_named(format!("route {key}"), l, BucketKind::Shared),
                None => buckets.add(l, BucketKind::Shared),
            })
        });
        route_buckets.push(bucket);
        if r.api_key_required {
            if config.api_keys.is_empty() {
                errors.push(format!(
                    "{at}.api_key_required: no API keys are defined in [[api_keys]]"
                ));
            }
            if source == ApiKeySource::Authorizer && r.authorizer.is_none() {
                errors.push(format!(
                    "{at}.api_key_required: api.api_key_source is \"authorizer\" but the route has no authorizer"
                ));
            }
        }
        required.push(r.api_key_required);
    }

    let mut plan_index = HashMap::new();
    let mut plans = Vec::new();
    let mut plan_quotas = Vec::new();
    for (name, p) in &config.usage_plans {
        let at = format!("usage_plans.{name}");
        let bucket = p.throttle.as_ref().map(limit).and_then(|l| {
            check_limit(&format!("{at}.throttle"), l, valid_account, errors)
                .then(|| buckets.add_named(format!("plan {name}"), l, BucketKind::PerKey))
        });
        let mut routes = vec![None; config.routes.len()];
        for (key, t) in &p.route_throttle {
            let at = format!("{at}.route_throttle.\"{key}\"");
            let canonical = match key.parse::<RouteKey>() {
                Ok(k) => k.to_string(),
                Err(e) => {
                    errors.push(format!("{at}: invalid route key: {e}"));
                    continue;
                }
            };
            let Some(index) = route_keys
                .iter()
                .position(|k| k.as_deref() == Some(canonical.as_str()))
            else {
                errors.push(format!("{at}: no route has this key"));
                continue;
            };
            let l = limit(t);
            if check_limit(&at, l, valid_account, errors) {
                let name = format!("plan {name} route {canonical}");
                routes[index] = Some(buckets.add_named(name, l, BucketKind::PerKey));
            }
        }
        let quota = p.quota.map(|q| QuotaRule {
            limit: q.limit,
            period: q.period,
        });
        if quota.is_some_and(|q| q.limit == 0) {
            errors.push(format!("{at}.quota.limit: must be at least 1"));
        }
        plan_index.insert(name.as_str(), plans.len());
        plans.push(Plan { bucket, routes });
        plan_quotas.push(quota);
    }

    let mut keys = Vec::new();
    let mut by_value = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut counters = Vec::new();
    for (i, k) in config.api_keys.iter().enumerate() {
        let at = format!("api_keys[{i}]");
        if k.name.is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        } else if let Some(first) = names.insert(&k.name, i) {
            errors.push(format!(
                "{at}.name: `{}` is already the name of api_keys[{first}]",
                k.name
            ));
        }
        // Never echo the value: it is a secret.
        let len = k.value.chars().count();
        if !(20..=128).contains(&len) {
            errors.push(format!(
                "{at}.value: must be 20 to 128 characters long (this one has {len})"
            ));
        } else if !k.value.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(format!(
                "{at}.value: only visible ASCII characters are allowed (no spaces)"
            ));
        }
        let id = KeyId(i as u32);
        if let Some(first) = by_value.insert(k.value.clone().into_boxed_str(), id) {
            errors.push(format!(
                "{at}.value: the same value as api_keys[{}]",
                first.0
            ));
        }
        let plan = match plan_index.get(k.plan.as_str()) {
            Some(&p) => p,
            None => {
                errors.push(format!(
                    "{at}.plan: usage plan `{}` is not defined in [usage_plans]",
                    k.plan
                ));
                0
            }
        };
        let name: Arc<str> = k.name.as_str().into();
        counters.push((name.clone(), plan_quotas.get(plan).copied().flatten()));
        keys.push(Key {
            bucket_key: state.key_id(&name),
            name,
            plan,
            enabled: k.enabled,
        });
    }

    // With a cluster the counters are the store's: no file.
    let file = state.cluster.is_none().then(|| {
        base_dir.join(
            config
                .api
                .quota_file
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_QUOTA_FILE)),
        )
    });
    let store: Box<dyn ThrottleStore> = match &state.cluster {
        Some(cluster) => {
            let names = keys
                .iter()
                .map(|k| (k.bucket_key, k.name.clone()))
                .collect();
            Box::new(SharedBuckets::new(cluster, &buckets, &state.buckets, names))
        }
        None => Box::new(MemoryStore::with_registry(&buckets, &state.buckets)),
    };
    let shared_quotas = state
        .cluster
        .as_ref()
        .map(|cluster| SharedQuotas::new(cluster, &counters));
    Usage {
        throttle: Throttle::new(store, account_bucket, route_buckets),
        source,
        required,
        keys,
        by_value,
        plans,
        quotas: Arc::new(Quotas::with_state(counters, file, &state.quotas)),
        shared_quotas,
        quota_headers: config.api.quota_headers,
    }
}
