//! The request headers and plugin context the plugin benchmarks and
//! `examples/plugin_calls.rs` call with, so their figures describe the same calls.

use weir::plugin::Context;

/// Ten headers, as a browser request through a load balancer carries them.
pub fn headers() -> Vec<(String, String)> {
    [
        ("host", "api.example"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("authorization", "Bearer x"),
        ("x-request-id", "0123456789abcdef"),
        ("x-forwarded-for", "10.0.0.1"),
        ("accept-encoding", "gzip"),
        ("origin", "https://app.example"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A matched route with one path parameter, after an authorizer.
pub fn context() -> Context {
    Context {
        request_id: "0123456789abcdef".into(),
        route_key: "POST /orders/{id}".into(),
        stage: "$default".into(),
        path_parameters: vec![("id".into(), "42".into())],
        source_ip: "127.0.0.1".into(),
        principal_id: Some("user-1".into()),
        authorizer_context: vec![("email".into(), "u1@example.com".into())],
    }
}
