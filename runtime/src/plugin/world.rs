//! The three worlds as types. A plugin handle is typed by the world its component was
//! checked against at load ([`super::Plugin`]`<W>`), so a call into the wrong world
//! cannot be written: a mapper handle has `map_request`, an authorizer handle
//! `authorize`, and nothing checks at run time.

use std::future::Future;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::bindings::{self, AuthorizationRequest, Context, Request, RequestHead};
use super::state::State;
use crate::config::World;

/// One world: how its components are pre-instantiated and instantiated, and what its
/// smoke test calls.
pub trait WorldKind: Send + Sync + 'static {
    /// The world as the config names it.
    const WORLD: World;
    /// A component pre-instantiated for this world.
    type Pre: Send + Sync + 'static;
    /// An instance's exports.
    type Guest: Send + 'static;

    /// Checks that a linked component exports this world.
    fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre>;

    /// A new instance in `store`.
    fn instantiate<'a>(
        pre: &'a Self::Pre,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Guest>> + Send + 'a;

    /// Calls the instance once with a synthetic input: a `GET /` without headers or
    /// body; for a CORS policy, a preflight from `https://smoke-test.invalid`.
    fn smoke<'a>(
        guest: &'a Self::Guest,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send + 'a;
}

/// `weir:plugin/mapper`: `map-request`, `map-response`.
pub struct MapperWorld;
/// `weir:plugin/authorizer`: `authorize`.
pub struct AuthorizerWorld;
/// `weir:plugin/cors`: `preflight`, `decorate`.
pub struct CorsWorld;
/// `wasi:http/proxy`: `handle`, a component that answers requests.
pub struct FunctionWorld;

fn smoke_context() -> Context {
    Context {
        request_id: "smoke-test".to_owned(),
        route_key: "$smoke-test".to_owned(),
        stage: "$default".to_owned(),
        path_parameters: Vec::new(),
        source_ip: "127.0.0.1".to_owned(),
        principal_id: None,
        authorizer_context: Vec::new(),
    }
}

/// The parts of [`WorldKind`] that differ between worlds only in names: the world, its
/// generated `…Pre` and guest types, pre-instantiation and instantiation.
macro_rules! world_kind {
    ($world:ident, $module:ident :: $pre:ident, $module2:ident :: $guest:ident) => {
        const WORLD: World = World::$world;
        type Pre = bindings::$module::$pre<State>;
        type Guest = bindings::$module2::$guest;

        fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre> {
            bindings::$module::$pre::new(pre)
        }

        fn instantiate<'a>(
            pre: &'a Self::Pre,
            store: &'a mut Store<State>,
        ) -> impl Future<Output = wasmtime::Result<Self::Guest>> + Send + 'a {
            pre.instantiate_checked_at_load(store)
        }
    };
}

impl WorldKind for MapperWorld {
    world_kind!(Mapper, mapper::MapperPre, mapper::Mapper);

    async fn smoke(guest: &Self::Guest, store: &mut Store<State>) -> wasmtime::Result<()> {
        let req = Request {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        guest
            .call_map_request(store, &req, &smoke_context())
            .await
            .map(drop)
    }
}

impl WorldKind for AuthorizerWorld {
    world_kind!(
        Authorizer,
        authorizer::AuthorizerPre,
        authorizer::Authorizer
    );

    async fn smoke(guest: &Self::Guest, store: &mut Store<State>) -> wasmtime::Result<()> {
        let req = AuthorizationRequest {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
            headers: Vec::new(),
            identity: vec![String::new()],
            scopes: Vec::new(),
        };
        guest
            .call_authorize(store, &req, &smoke_context())
            .await
            .map(drop)
    }
}

impl WorldKind for CorsWorld {
    world_kind!(Cors, cors::CorsPre, cors::Cors);

    async fn smoke(guest: &Self::Guest, store: &mut Store<State>) -> wasmtime::Result<()> {
        let head = RequestHead {
            method: "OPTIONS".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
            headers: vec![
                ("origin".to_owned(), "https://smoke-test.invalid".to_owned()),
                ("access-control-request-method".to_owned(), "GET".to_owned()),
            ],
        };
        guest.call_preflight(store, &head).await.map(drop)
    }
}

impl WorldKind for FunctionWorld {
    const WORLD: World = World::Function;
    type Pre = ProxyPre<State>;
    type Guest = Proxy;

    fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre> {
        ProxyPre::new(pre)
    }

    fn instantiate<'a>(
        pre: &'a Self::Pre,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Guest>> + Send + 'a {
        pre.instantiate_async(store)
    }

    /// `GET /` with no headers: whatever the component answers is fine (nothing may go
    /// out during the smoke call).
    async fn smoke(guest: &Self::Guest, store: &mut Store<State>) -> wasmtime::Result<()> {
        let req = http::Request::builder()
            .uri("http://smoke-test.invalid/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let req = http.new_incoming_request(Scheme::Http, req)?;
        let out = http.new_response_outparam(tx)?;
        // The answer's body is read (and dropped) while the guest writes it, so a guest
        // with a large answer does not wait on a full buffer.
        let drain = async {
            use http_body_util::BodyExt;
            if let Ok(Ok(resp)) = rx.await {
                let _ = http_body_util::Limited::new(resp.into_body(), 1 << 20)
                    .collect()
                    .await;
            }
        };
        let handled = guest
            .wasi_http_incoming_handler()
            .call_handle(store, req, out);
        let (handled, ()) = tokio::join!(handled, drain);
        handled
    }
}
