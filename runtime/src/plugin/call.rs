//! Calling a loaded plugin: [`Plugin`]`<W>`, one version of a plugin of world `W`.
//!
//! Each call takes one of the plugin's `concurrency` slots (waiting for one within its
//! deadline), gets a fresh store and instance from the pooling allocator — or, with
//! `reuse = N`, an idle instance that has served fewer than N calls — and runs within
//! the plugin's deadline twice over: epoch interruption stops guest code past it, and a
//! wall-clock timeout ends the call wherever it waits (a WASI sleep, a clock poll).
//! Whatever the guest printed is logged; the outcome is counted.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Engine, Store, UpdateDeadline};

use super::counts::{CallCounts, CallMetrics, Outcome};
use super::engine::{ALIVE, Epoch, InCall, VERSIONS_ALIVE};
use super::kept::Kept;
use super::outbound::{Allowed, Hooks, Sender};
use super::output::{self, GuestOutput};
use super::reuse::{Idle, Warm};
use super::state::{GUEST_OUTPUT_CAP, State};
use super::turns;
use super::world::{AuthorizerWorld, CorsWorld, FunctionWorld, MapperWorld, WorldKind};
use super::{
    AuthorizationRequest, CallContext, Decision, Limits, PluginError, Request, RequestHead,
    RequestOutcome, Response, World,
};

/// One version of a plugin of world `W`, bound to its settings; cheap to clone,
/// callable from any task.
pub struct Plugin<W: WorldKind> {
    pub(super) inner: Arc<Loaded<W>>,
    engine: Engine,
    epoch: Arc<Epoch>,
}

impl<W: WorldKind> Clone for Plugin<W> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
            epoch: self.epoch.clone(),
        }
    }
}

impl<W: WorldKind> std::fmt::Debug for Plugin<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("world", &W::WORLD)
            .finish()
    }
}

/// A plugin of any world, as the registry and the admin API hold them.
#[derive(Clone, Debug)]
pub enum AnyPlugin {
    /// A mapper.
    Mapper(Plugin<MapperWorld>),
    /// An authorizer.
    Authorizer(Plugin<AuthorizerWorld>),
    /// A CORS policy.
    Cors(Plugin<CorsWorld>),
    /// A `wasi:http` component.
    Function(Plugin<FunctionWorld>),
}

/// Calls `f` with the plugin inside an [`AnyPlugin`], whatever its world.
macro_rules! each {
    ($any:expr, |$p:ident| $body:expr) => {
        match $any {
            AnyPlugin::Mapper($p) => $body,
            AnyPlugin::Authorizer($p) => $body,
            AnyPlugin::Cors($p) => $body,
            AnyPlugin::Function($p) => $body,
        }
    };
}

impl AnyPlugin {
    /// The plugin's name from the config.
    pub fn name(&self) -> &Arc<str> {
        each!(self, |p| p.name())
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        match self {
            AnyPlugin::Mapper(_) => World::Mapper,
            AnyPlugin::Authorizer(_) => World::Authorizer,
            AnyPlugin::Cors(_) => World::Cors,
            AnyPlugin::Function(_) => World::Function,
        }
    }

    /// SHA-256 of the component, lowercase hex.
    pub fn sha256(&self) -> &Arc<str> {
        each!(self, |p| &p.inner.sha256)
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        each!(self, |p| p.inner.loaded_at)
    }

    /// Its calls so far.
    pub fn counts(&self) -> &Arc<CallCounts> {
        each!(self, |p| &p.inner.counts)
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        each!(self, |p| &p.inner.limits)
    }

    /// Whether `other` is this very version with the same settings.
    pub fn same_as(&self, other: &AnyPlugin) -> bool {
        match (self, other) {
            (AnyPlugin::Mapper(a), AnyPlugin::Mapper(b)) => Arc::ptr_eq(&a.inner, &b.inner),
            (AnyPlugin::Authorizer(a), AnyPlugin::Authorizer(b)) => Arc::ptr_eq(&a.inner, &b.inner),
            (AnyPlugin::Cors(a), AnyPlugin::Cors(b)) => Arc::ptr_eq(&a.inner, &b.inner),
            (AnyPlugin::Function(a), AnyPlugin::Function(b)) => Arc::ptr_eq(&a.inner, &b.inner),
            _ => false,
        }
    }

    /// See [`Plugin::smoke_test`].
    pub async fn smoke_test(&self) -> Result<GuestOutput, PluginError> {
        each!(self, |p| p.smoke_test().await)
    }

    /// The mapper, if it is one.
    pub fn as_mapper(&self) -> Option<&Plugin<MapperWorld>> {
        match self {
            AnyPlugin::Mapper(p) => Some(p),
            _ => None,
        }
    }

    /// The authorizer, if it is one.
    pub fn as_authorizer(&self) -> Option<&Plugin<AuthorizerWorld>> {
        match self {
            AnyPlugin::Authorizer(p) => Some(p),
            _ => None,
        }
    }

    /// The CORS policy, if it is one.
    pub fn as_cors(&self) -> Option<&Plugin<CorsWorld>> {
        match self {
            AnyPlugin::Cors(p) => Some(p),
            _ => None,
        }
    }

    /// The `wasi:http` component, if it is one.
    pub fn as_function(&self) -> Option<&Plugin<FunctionWorld>> {
        match self {
            AnyPlugin::Function(p) => Some(p),
            _ => None,
        }
    }
}

macro_rules! typed {
    ($world:ident, $variant:ident) => {
        impl TryFrom<AnyPlugin> for Plugin<$world> {
            type Error = World;

            /// The plugin, if it implements this world; else the world it implements.
            fn try_from(any: AnyPlugin) -> Result<Self, World> {
                match any {
                    AnyPlugin::$variant(p) => Ok(p),
                    other => Err(other.world()),
                }
            }
        }
    };
}

typed!(MapperWorld, Mapper);
typed!(AuthorizerWorld, Authorizer);
typed!(CorsWorld, Cors);
typed!(FunctionWorld, Function);

/// One loaded version: its compiled component and settings, its idle instances, its
/// slots and its counters.
pub(super) struct Loaded<W: WorldKind> {
    pub(super) name: Arc<str>,
    pub(super) limits: Limits,
    config_json: Arc<str>,
    pub(super) pre: Arc<W::Pre>,
    sha256: Arc<str>,
    loaded_at: SystemTime,
    counts: Arc<CallCounts>,
    idle: Idle<W::Guest>,
    /// One permit per call that may run at once (`limits.concurrency`).
    slots: tokio::sync::Semaphore,
    /// Where its outbound requests may go (`allow_outbound`).
    pub(super) allowed: Allowed,
    /// The handles of this plugin's call metrics, made at its first call.
    metrics: OnceLock<CallMetrics>,
    /// What its calls keep for later ones (`host.keep`).
    kept: Arc<Kept>,
    _world: PhantomData<W>,
}

impl<W: WorldKind> Drop for Loaded<W> {
    fn drop(&mut self) {
        let alive = ALIVE.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!(VERSIONS_ALIVE).set(alive as f64);
    }
}

/// The error a call that ran out of time ends with.
#[derive(Debug)]
pub(super) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One call's sandbox: a fresh store, or an idle instance's, and its guest once
/// instantiated.
pub(super) struct Call<G> {
    pub(super) store: Store<State>,
    pub(super) guest: Option<G>,
    /// Calls the instance served before this one.
    calls: u32,
    started: Instant,
    /// Keeps the epoch ticking until the call ends.
    _running: InCall,
}

/// Runs `$body` (with the instance's exports as `$g` and its store as `$store`) as
/// one call of `$self`: a slot, a store, the deadline in epochs and in wall-clock time,
/// then the guest's output logged and the outcome counted.
macro_rules! call {
    ($self:ident, |$g:ident, $store:ident| $body:expr) => {
        call!($self, $self.inner.limits.deadline, |$g, $store| $body)
    };
    ($self:ident, $deadline:expr, |$g:ident, $store:ident| $body:expr) => {{
        let started = Instant::now();
        let until = tokio::time::Instant::from_std(started) + $deadline;
        let _slot = $self.slot(until, started).await?;
        let mut call = $self.begin(false, started, $deadline);
        let result = tokio::time::timeout_at(until, async {
            $crate::plugin::turns::behind_waiting().await;
            let guest = match call.guest.take() {
                Some(g) => g,
                None => W::instantiate(&$self.inner.pre, &mut call.store).await?,
            };
            let $g = &guest;
            let $store = &mut call.store;
            let out = $body.await;
            call.guest = Some(guest);
            out
        })
        .await
        .unwrap_or_else(|_| Err(DeadlineExceeded.into()));
        $self.finish(call, result)
    }};
}
pub(super) use call;

impl<W: WorldKind> Plugin<W> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        limits: Limits,
        config_json: String,
        counts: Arc<CallCounts>,
        pre: Arc<W::Pre>,
        sha256: Arc<str>,
        engine: Engine,
        epoch: Arc<Epoch>,
    ) -> Self {
        Plugin {
            inner: Arc::new(Loaded {
                name: name.into(),
                slots: tokio::sync::Semaphore::new(limits.concurrency.max(1) as usize),
                allowed: limits.allowed.clone(),
                limits,
                config_json: config_json.into(),
                pre,
                sha256,
                loaded_at: SystemTime::now(),
                counts,
                idle: Idle::default(),
                metrics: OnceLock::new(),
                kept: Arc::default(),
                _world: PhantomData,
            }),
            engine,
            epoch,
        }
    }

    /// Whether its `allow_outbound` lists any origin.
    pub fn makes_outbound(&self) -> bool {
        !self.inner.allowed.is_empty()
    }

    /// The plugin's name from the config.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// One of the plugin's `concurrency` slots, waited for until `until`.
    pub(super) async fn slot(
        &self,
        until: tokio::time::Instant,
        started: Instant,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, PluginError> {
        if let Ok(permit) = self.inner.slots.try_acquire() {
            return Ok(permit);
        }
        match tokio::time::timeout_at(until, self.inner.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.count(Outcome::Busy, started);
                Err(PluginError::Busy {
                    plugin: self.inner.name.clone(),
                    limit: self.inner.limits.concurrency,
                    deadline: self.inner.limits.deadline,
                })
            }
        }
    }

    /// A store for one call: an idle instance's when the plugin reuses instances and one
    /// is free (never for a quiet smoke test), else a fresh one; either way with this
    /// call's deadline, counted from `started`.
    pub(super) fn begin(
        &self,
        quiet: bool,
        started: Instant,
        deadline: Duration,
    ) -> Call<W::Guest> {
        let warm = if quiet { None } else { self.inner.idle.take() };
        let (mut store, guest, calls) = match warm {
            Some(warm) => (warm.store, Some(warm.guest), warm.calls),
            None => {
                let inner = &self.inner;
                // A smoke test keeps nothing for the calls that follow it.
                let kept = if quiet {
                    Arc::default()
                } else {
                    inner.kept.clone()
                };
                let store = State::store(
                    &self.engine,
                    &inner.name,
                    &inner.config_json,
                    &inner.limits,
                    kept,
                    quiet,
                );
                (store, None, 0)
            }
        };
        store.data_mut().next_call();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if started.elapsed() >= deadline {
                Err(DeadlineExceeded.into())
            } else {
                // The event loop polls its sockets, and other long calls take their
                // turns, before the guest runs on (see `turns`).
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(turns::next_turn())))
            }
        });
        Call {
            store,
            guest,
            calls,
            started,
            _running: self.epoch.enter(),
        }
    }

    pub(super) fn finish<T>(
        &self,
        mut call: Call<W::Guest>,
        result: wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        call.store.data_mut().log_output();
        let result = result.map_err(|e| {
            let plugin = self.inner.name.clone();
            let output = Box::new(std::mem::take(&mut call.store.data_mut().transcript));
            if e.downcast_ref::<DeadlineExceeded>().is_some() {
                PluginError::Deadline {
                    plugin,
                    deadline: self.inner.limits.deadline,
                    output,
                }
            } else if call.store.data().memory.hit {
                PluginError::Memory {
                    plugin,
                    limit: self.inner.limits.max_memory,
                    output,
                }
            } else {
                PluginError::Trap {
                    plugin,
                    message: output::describe(&e),
                    output,
                }
            }
        });
        if call.store.data().quiet {
            return result;
        }
        // Only an instance whose call succeeded may serve another; a failed one may be
        // mid-update, out of memory or interrupted anywhere.
        let reuse = self.inner.limits.reuse;
        let (started, calls) = (call.started, call.calls);
        if result.is_ok()
            && reuse > 1
            && call.store.data().logged <= GUEST_OUTPUT_CAP
            && let Some(guest) = call.guest.take()
        {
            self.inner.idle.give_back(
                Warm {
                    store: call.store,
                    guest,
                    calls: calls + 1,
                },
                reuse,
            );
        }
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(PluginError::Deadline { .. }) => Outcome::Timeout,
            Err(PluginError::Memory { .. }) => Outcome::Memory,
            Err(PluginError::Trap { .. }) => Outcome::Trap,
            Err(PluginError::Busy { .. }) => Outcome::Busy,
        };
        self.count(outcome, started);
        result
    }

    /// Counts a call that began at `started` in the plugin's totals and metrics.
    fn count(&self, outcome: Outcome, started: Instant) {
        let counts = &self.inner.counts;
        let count = match outcome {
            Outcome::Ok => &counts.ok,
            Outcome::Timeout => &counts.timeout,
            Outcome::Memory => &counts.memory,
            Outcome::Trap => &counts.trap,
            Outcome::Busy => &counts.busy,
        };
        count.fetch_add(1, Ordering::Relaxed);
        let handles = self
            .inner
            .metrics
            .get_or_init(|| CallMetrics::new(&self.inner.name));
        handles.calls[outcome as usize].increment(1);
        handles.duration.record(started.elapsed().as_secs_f64());
    }

    /// Instantiates this version and calls it once with a synthetic input (see
    /// [`WorldKind::smoke`]). Whatever the guest answers is fine; a trap, the deadline
    /// or the memory cap is not. Guest output is not logged but returned (with the
    /// error, when it fails), and the call is not counted in metrics.
    pub async fn smoke_test(&self) -> Result<GuestOutput, PluginError> {
        let started = Instant::now();
        let until = tokio::time::Instant::from_std(started) + self.inner.limits.deadline;
        let mut call = self.begin(true, started, self.inner.limits.deadline);
        let result = tokio::time::timeout_at(until, async {
            let guest = W::instantiate(&self.inner.pre, &mut call.store).await?;
            W::smoke(&guest, &mut call.store).await
        })
        .await
        .unwrap_or_else(|_| Err(DeadlineExceeded.into()));
        let result = result.map(|()| {
            let state = call.store.data_mut();
            state.log_output();
            std::mem::take(&mut state.transcript)
        });
        self.finish(call, result)
    }
}

impl Plugin<MapperWorld> {
    /// `mapper.map-request`.
    pub async fn map_request(
        &self,
        req: &Request,
        ctx: &CallContext,
    ) -> Result<RequestOutcome, PluginError> {
        type W = MapperWorld;
        call!(self, |g, store| async {
            store.data_mut().client_cert = ctx.client_cert.clone();
            g.call_map_request(&mut *store, req, &ctx.context).await
        })
    }

    /// `mapper.map-response`.
    pub async fn map_response(
        &self,
        resp: &Response,
        ctx: &CallContext,
    ) -> Result<Response, PluginError> {
        type W = MapperWorld;
        call!(self, |g, store| async {
            store.data_mut().client_cert = ctx.client_cert.clone();
            g.call_map_response(&mut *store, resp, &ctx.context).await
        })
    }
}

impl Plugin<AuthorizerWorld> {
    /// `authorizer.authorize`; the plugin's outbound requests (if its `allow_outbound`
    /// lists any origin) go through `sender`, within the call's deadline.
    pub async fn authorize(
        &self,
        req: &AuthorizationRequest,
        ctx: &CallContext,
        sender: Option<Arc<dyn Sender>>,
    ) -> Result<Decision, PluginError> {
        type W = AuthorizerWorld;
        let hooks = (!self.inner.allowed.is_empty()).then(|| {
            Hooks::for_call(
                self.inner.name.clone(),
                self.inner.allowed.clone(),
                sender,
                tokio::time::Instant::now() + self.inner.limits.deadline,
            )
        });
        call!(self, |g, store| async {
            if let Some(hooks) = hooks {
                store.data_mut().hooks = hooks;
            }
            store.data_mut().client_cert = ctx.client_cert.clone();
            g.call_authorize(&mut *store, req, &ctx.context).await
        })
    }
}

impl Plugin<CorsWorld> {
    /// `cors.preflight`.
    pub async fn preflight(&self, req: &RequestHead) -> Result<Response, PluginError> {
        type W = CorsWorld;
        call!(self, |g, store| g.call_preflight(store, req))
    }

    /// `cors.decorate`: the headers, and how long the policy said they may be reused
    /// for requests with the same origin, method and path (`host.cacheable`).
    pub async fn decorate(
        &self,
        req: &RequestHead,
        headers: &[(String, String)],
    ) -> Result<(Vec<(String, String)>, Option<std::time::Duration>), PluginError> {
        type W = CorsWorld;
        call!(self, |g, store| async {
            let out = g.call_decorate(&mut *store, req, headers).await?;
            let cache_for = store.data().cache_for.filter(|s| *s > 0);
            Ok((
                out,
                cache_for.map(|s| std::time::Duration::from_secs(s.into())),
            ))
        })
    }
}
