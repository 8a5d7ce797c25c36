//! Serving a `function` component: the request as a `wasi:http` incoming request, the
//! answer read while the guest writes it, outgoing requests through the route's client.

use std::sync::Arc;
use std::time::Instant;

use super::PluginError;
use super::call::{DeadlineExceeded, Plugin, call};
use super::outbound::{Hooks, Sender};
use super::world::{FunctionWorld, WorldKind};

/// The end of a function's answer: what the guest set with `response-outparam.set`.
type Answer = Result<
    hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

impl Plugin<FunctionWorld> {
    /// `wasi:http/incoming-handler.handle`: the component answers `req`, within
    /// `deadline` (the route's timeout) in wall-clock time and epochs, reaching out only
    /// to its `allow_outbound` origins through `sender`; its answer's body is read whole,
    /// at most `max_body` bytes.
    pub async fn handle(
        &self,
        req: http::Request<bytes::Bytes>,
        deadline: std::time::Duration,
        max_body: usize,
        sender: Arc<dyn Sender>,
    ) -> Result<http::Response<bytes::Bytes>, PluginError> {
        use http_body_util::{BodyExt, Full, Limited};
        use wasmtime_wasi_http::WasiHttpView;
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        type W = FunctionWorld;
        let until = tokio::time::Instant::now() + deadline;
        let allowed = self.inner.allowed.clone();
        call!(self, deadline, |g, store| async {
            store.data_mut().hooks =
                Hooks::for_call(self.inner.name.clone(), allowed, Some(sender), until);
            let (tx, rx) = tokio::sync::oneshot::channel::<Answer>();
            let mut http = store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, req.map(Full::new))?;
            let out = http.new_response_outparam(tx)?;
            // The answer is read while the guest runs: its body flows through a small
            // buffer, and a guest writing more than it holds waits for the reader.
            let read = async {
                let resp = match rx.await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(code)) => wasmtime::bail!("the function answered an error: {code:?}"),
                    Err(_) => wasmtime::bail!("the function returned without an answer"),
                };
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, max_body)
                    .collect()
                    .await
                    .map_err(|e| wasmtime::format_err!("reading the function's answer: {e}"))?
                    .to_bytes();
                Ok(http::Response::from_parts(parts, body))
            };
            let handled = g
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, incoming, out);
            tokio::pin!(read, handled);
            tokio::select! {
                biased;
                answer = &mut read => answer,
                handled = &mut handled => {
                    // The guest returned: its answer is set (or never will be) and
                    // its body written; what is left is buffered.
                    handled?;
                    read.await
                }
            }
        })
    }
}
