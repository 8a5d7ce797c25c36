//! One plugin call per world — fresh instance + call, the default isolation — for the
//! shipped Rust plugins. `cargo bench -p weir --bench plugins`.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use weir::plugin::{
    AuthorizationRequest, AuthorizerWorld, CorsWorld, Limits, MapperWorld, PluginHost, Request,
    RequestHead,
};
use weir_tests::artifacts::{CORS, JWT_AUTHORIZER, PARAM_MAPPING, STAMP_V1};

mod sample;
use sample::{context, headers};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new().unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(1),
        max_memory: 64 << 20,
        reuse: 0,
        ..Limits::new()
    };
    let ctx = weir::plugin::CallContext::from(context());

    let mapper = host
        .load::<MapperWorld>(
            "params",
            Path::new(PARAM_MAPPING),
            limits.clone(),
            r#"{"request":{"overwrite:header.x-user":"$request.header.user-agent","append:querystring.id":"$request.path.id","remove:header.accept-encoding":"''"}}"#.into(),
        )
        .unwrap();
    let req = Request {
        method: "POST".into(),
        path: "/orders/42".into(),
        query: "verbose=true".into(),
        headers: headers(),
        body: vec![b'x'; 1024],
    };
    c.bench_function("mapper/param-mapping map-request (fresh instance)", |b| {
        b.to_async(&rt)
            .iter(|| async { mapper.map_request(&req, &ctx).await.unwrap() })
    });

    // The floor: a mapper that only appends one header, without config or parsing.
    let stamp = host
        .load::<MapperWorld>("stamp", Path::new(STAMP_V1), limits.clone(), "{}".into())
        .unwrap();
    c.bench_function(
        "mapper/stamp map-request (fresh instance; the floor)",
        |b| {
            b.to_async(&rt)
                .iter(|| async { stamp.map_request(&req, &ctx).await.unwrap() })
        },
    );

    let secret = "bench-secret-bench-secret-bench!";
    let authorizer = host
        .load::<AuthorizerWorld>(
            "jwt",
            Path::new(JWT_AUTHORIZER),
            limits.clone(),
            format!(r#"{{"issuer":"iss","audience":["aud"],"hs256_secret":"{secret}"}}"#),
        )
        .unwrap();
    let token = weir_tests::jwt::sign_hs256(
        secret.as_bytes(),
        &serde_json::json!({"iss":"iss","aud":"aud","sub":"u","exp": weir_tests::jwt::now() + 3600}),
    );
    let auth_req = AuthorizationRequest {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: String::new(),
        headers: headers(),
        identity: vec![format!("Bearer {token}")],
        scopes: Vec::new(),
    };
    c.bench_function("authorizer/jwt-authorizer HS256 (fresh instance)", |b| {
        b.to_async(&rt)
            .iter(|| async { authorizer.authorize(&auth_req, &ctx, None).await.unwrap() })
    });

    // The public-key algorithms, inline keys (no fetching): the signature check is the
    // guest's own arithmetic.
    for alg in ["RS256", "ES256"] {
        let key = weir_tests::jwt::SigningKey::generate(alg, "k1");
        let config = serde_json::json!({
            "issuer": "iss", "audience": ["aud"], "jwks": weir_tests::jwt::jwks(&[&key]),
        });
        let signed = host
            .load::<AuthorizerWorld>(
                "jwt-signed",
                Path::new(JWT_AUTHORIZER),
                limits.clone(),
                config.to_string(),
            )
            .unwrap();
        let token = key.sign(&serde_json::json!({
            "iss": "iss", "aud": "aud", "sub": "u", "exp": weir_tests::jwt::now() + 3600,
        }));
        let req = AuthorizationRequest {
            identity: vec![format!("Bearer {token}")],
            ..auth_req.clone()
        };
        c.bench_function(
            &format!("authorizer/jwt-authorizer {alg} (fresh instance)"),
            |b| {
                b.to_async(&rt)
                    .iter(|| async { signed.authorize(&req, &ctx, None).await.unwrap() })
            },
        );
    }

    let cors = host
        .load::<CorsWorld>(
            "cors",
            Path::new(CORS),
            limits,
            r#"{"allow_origins":["https://app.example"],"allow_methods":["GET","POST"]}"#.into(),
        )
        .unwrap();
    let head = RequestHead {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: String::new(),
        headers: headers(),
    };
    let resp_headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), "36".to_string()),
    ];
    c.bench_function("cors/cors decorate (fresh instance)", |b| {
        b.to_async(&rt)
            .iter(|| async { cors.decorate(&head, &resp_headers).await.unwrap() })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
