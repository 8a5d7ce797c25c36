//! A real gRPC client and service (Python's grpcio) through a pool route, over h2c and
//! over TLS: unary calls with their status and trailing metadata, server and client
//! streaming message by message, deadlines, and the gateway's own gRPC status for an
//! unknown method.

use weir_tests::TestCa;
use weir_tests::grpc::{self, PetsServer};
use weir_tests::lambda::PythonRuntime;

use crate::{toml_path, weir};

/// A gateway whose `pets` pool speaks `protocol` to `url`, with `server` lines.
fn gateway(server: &str, protocol: &str, url: &str) -> weir_tests::Weir {
    weir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[upstreams.pets]
protocol = "{protocol}"
targets = [{{ url = "{url}" }}]

[[routes]]
key = "POST /pets.Pets/{{method}}"
integration = {{ type = "http", upstream = "pets" }}
"#
    ))
}

#[tokio::test]
async fn grpcio_calls_pass_through_an_h2c_pool() {
    let runtime = grpc::grpcio(env!("CARGO_BIN_EXE_weir"));
    let service = PetsServer::start(runtime);
    let gw = gateway("", "h2c", &format!("http://127.0.0.1:{}", service.port));
    every_call_as_the_service_answered(runtime, &gw).await;
}

/// The service on TLS (HTTP/2 by ALPN), its authority in `upstream_ca_file`.
#[tokio::test]
async fn grpcio_calls_pass_through_an_http2_pool_over_tls() {
    let runtime = grpc::grpcio(env!("CARGO_BIN_EXE_weir"));
    let ca = TestCa::new();
    let dir = weir_tests::test_dir();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (cert, key) = (
        write("pets.crt", &ca.server_pem.0),
        write("pets.key", &ca.server_pem.1),
    );
    let service = PetsServer::start_tls(runtime, &cert, &key);
    let trust = format!(
        "upstream_ca_file = {}",
        toml_path(write("ca.pem", &ca.ca_pem).to_str().unwrap())
    );
    let gw = gateway(
        &trust,
        "http2",
        &format!("https://127.0.0.1:{}", service.port),
    );
    every_call_as_the_service_answered(runtime, &gw).await;
}

/// Runs the client through `gw` and checks what each call came back with.
async fn every_call_as_the_service_answered(
    runtime: &'static PythonRuntime,
    gw: &weir_tests::Weir,
) {
    let target = gw.addr.to_string();
    let seen = tokio::task::spawn_blocking(move || grpc::call(runtime, &target))
        .await
        .unwrap();

    assert_eq!(seen["get"], "pet:rex", "{seen}");
    assert_eq!(
        seen["get_trailers"]["x-trailer"], "kept",
        "trailing metadata is passed on: {seen}"
    );
    assert_eq!(
        seen["missing"],
        serde_json::json!(["NOT_FOUND", "no such pet"]),
        "the service's status and message reach the client"
    );
    // Server streaming: four messages 150 ms apart arrive one by one.
    let list = seen["list"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|m| m[0].as_str().unwrap()).collect();
    assert_eq!(names, ["pet-0", "pet-1", "pet-2", "pet-3"]);
    let (first, last) = (list[0][1].as_f64().unwrap(), list[3][1].as_f64().unwrap());
    assert!(last - first >= 0.35, "streamed, not buffered: {list:?}");
    // Client streaming: the request body goes on as the client sends it.
    assert_eq!(seen["count"], "5/15000");
    // The deadline reaches the service (`grpc-timeout` is passed on)...
    let remaining: f64 = seen["remaining"].as_str().unwrap().parse().unwrap();
    assert!(
        remaining > 0.0 && remaining <= 5.5,
        "the service sees the client's 5 s deadline: {seen}"
    );
    // ...and a call past its deadline ends at the deadline.
    assert_eq!(seen["slow"][0], "DEADLINE_EXCEEDED", "{seen}");
    assert!(seen["slow"][1].as_f64().unwrap() < 1.5, "{seen}");
    // No route: the gateway answers with a gRPC status, not JSON.
    assert_eq!(seen["nowhere"], "UNIMPLEMENTED");
}
