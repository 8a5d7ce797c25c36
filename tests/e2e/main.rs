//! End-to-end tests: the real `weir` binary on loopback, real upstreams, real plugins
//! built from source by `weir-test-artifacts`.

mod abi;
mod authoring;
mod authorizer;
mod cluster;
mod conformance;
mod cors;
mod examples;
mod exposure;
mod faults;
mod function;
mod hostile;
mod introspection;
mod ip_policy;
mod isolation;
mod jwt;
mod lambda;
mod lambda_node;
mod limits;
mod mapping;
mod mtls;
mod observability;
mod oidc;
mod plugin_new;
mod reload;
mod reuse;
mod routing;
mod throttle;
mod tls;
mod upstream;
mod upstream_pool;
mod upstream_pool_grpc;
mod upstream_pool_targets;
mod upstream_pool_uploads;
mod validate;
mod websocket;

use weir_tests::Weir;

/// Starts `weir serve` with `config` (a listener on 127.0.0.1:0 is added).
pub fn weir(config: &str) -> Weir {
    Weir::start(env!("CARGO_BIN_EXE_weir"), config)
}

/// Asserts that both `weir serve` and `weir validate` refuse a config whose `[server]`
/// table is `settings` (written in `dir`), saying `want` on stderr.
pub fn refused_at_start(dir: &std::path::Path, settings: &str, want: &str) {
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:0\"\n{settings}\n"),
    )
    .unwrap();
    for args in [&["serve", "--config"][..], &["validate"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted {settings}");
        assert!(stderr.contains(want), "{args:?} {settings}: {stderr}");
    }
}

/// A TOML string literal for a path.
pub fn toml_path(path: &str) -> String {
    format!("{path:?}")
}

// Every plugin built for tests must be used by some test: adding one without a test
// fails to compile here.
macro_rules! used {
    (PARAM_MAPPING) => {
        mapping::USES_PARAM_MAPPING
    };
    (JWT_AUTHORIZER) => {
        jwt::USES_JWT_AUTHORIZER
    };
    (CORS) => {
        cors::USES_CORS
    };
    (ECHO_MAPPER) => {
        isolation::USES_ECHO_MAPPER
    };
    (COUNTING_AUTHORIZER) => {
        authorizer::USES_COUNTING_AUTHORIZER
    };
    (TRAP) => {
        isolation::USES_TRAP
    };
    (SPIN) => {
        isolation::USES_SPIN
    };
    (HOG) => {
        isolation::USES_HOG
    };
    (HOSTILE) => {
        hostile::USES_HOSTILE
    };
    (TRAP_AUTHORIZER) => {
        authorizer::USES_TRAP_AUTHORIZER
    };
    (STAMP_V1) => {
        reload::USES_STAMP_V1
    };
    (STAMP_V2) => {
        reload::USES_STAMP_V2
    };
    (CALL_COUNTER) => {
        reuse::USES_CALL_COUNTER
    };
    (JSON_INDEX) => {
        abi::USES_JSON_INDEX
    };
    (ABI_0_1_0) => {
        abi::USES_ABI_0_1_0
    };
    (HELLO_FUNCTION) => {
        function::USES_HELLO_FUNCTION
    };
    (OAUTH_INTROSPECTION) => {
        introspection::USES_OAUTH_INTROSPECTION
    };
    (LOUD_TRAP) => {
        authoring::USES_LOUD_TRAP
    };
}
macro_rules! check_used {
    ($name:ident) => {
        const _: () = assert!(used!($name));
    };
}
weir_tests::artifacts::foreach_plugin!(check_used);
