use super::*;
use bytesize::ByteSize;

#[test]
fn defaults_are_aws_quotas() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.limits.integration_timeout, Duration::from_secs(29));
    assert_eq!(c.limits.max_body, ByteSize::mb(10));
    assert_eq!(c.limits.max_header_bytes, 10_240);
    assert_eq!((c.throttle.rate, c.throttle.burst), (10_000.0, 5_000));
    assert!(c.routes.is_empty());
}

#[test]
fn parses_a_full_route() {
    let c = Config::parse(
        r#"
        [limits]
        integration_timeout = "5s"
        max_body = "1MiB"
        [plugins.jwt]
        file = "jwt.wasm"
        world = "authorizer"
        config = { issuer = "x" }
        [[routes]]
        key = "GET /pets/{id}"
        integration = { type = "http", url = "http://127.0.0.1:9/pets/{id}" }
        authorizer = { plugin = "jwt", ttl = "0s" }
        timeout = "100ms"
        "#,
    )
    .unwrap();
    assert_eq!(c.limits.max_body, ByteSize::mib(1));
    let r = &c.routes[0];
    assert_eq!(r.timeout, Some(Duration::from_millis(100)));
    assert!(matches!(r.integration, Integration::Http { .. }));
    let a = r.authorizer.as_ref().unwrap();
    assert_eq!(a.identity_source, ["$request.header.Authorization"]);
    assert_eq!(a.ttl, Duration::ZERO);
    assert_eq!(c.plugins["jwt"].world, World::Authorizer);
}

#[test]
fn parses_throttles_plans_and_keys() {
    let c = Config::parse(
        r#"
        [api]
        api_key_source = "authorizer"
        [throttle]
        rate = 100
        [usage_plans.gold]
        throttle = { rate = 0.5, burst = 2 }
        quota = { limit = 1000, period = "WEEK" }
        route_throttle = { "GET /pets" = { rate = 1, burst = 1 } }
        [[api_keys]]
        name = "alice"
        value = "0123456789abcdefghij"
        plan = "gold"
        [[routes]]
        key = "GET /pets"
        integration = { type = "mock" }
        throttle = { rate = 10, burst = 5 }
        api_key_required = true
        "#,
    )
    .unwrap();
    assert_eq!(c.api.api_key_source, ApiKeySource::Authorizer);
    assert_eq!((c.throttle.rate, c.throttle.burst), (100.0, 5000));
    let gold = &c.usage_plans["gold"];
    assert_eq!(gold.throttle.unwrap().rate, 0.5);
    assert_eq!(gold.quota.unwrap().period, QuotaPeriod::Week);
    assert_eq!(gold.route_throttle["GET /pets"].burst, 1);
    assert!(c.api_keys[0].enabled);
    assert!(c.routes[0].api_key_required);
    assert_eq!(c.routes[0].throttle.unwrap().burst, 5);
    assert!(Config::parse("[usage_plans.x]\nquota = { limit = 1, period = \"HOUR\" }").is_err());
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = Config::parse("[limits]\nmax_bodee = 3\n").unwrap_err();
    assert!(err.contains("max_bodee"), "{err}");
}
