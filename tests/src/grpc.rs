//! The gRPC service and client of `tests/grpc/pets.py`, on Python's `grpcio` from PyPI
//! (pinned; installed once under the target directory, as `awslambdaric` is).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::lambda::{PythonRuntime, pip_install};

/// The pinned package (`.ci/test` installs the same).
pub const GRPCIO: &str = "grpcio==1.85.1";

/// The interpreter and the directory grpcio is installed in.
pub fn grpcio(weir_bin: &str) -> &'static PythonRuntime {
    static RUNTIME: OnceLock<PythonRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| pip_install(Path::new(weir_bin), GRPCIO, "grpc"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc/pets.py")
}

/// The `pets.Pets` service, listening with h2c on 127.0.0.1; stopped on drop.
pub struct PetsServer {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl PetsServer {
    /// Starts the service (h2c) and waits until it listens.
    pub fn start(runtime: &PythonRuntime) -> PetsServer {
        PetsServer::spawn(runtime, &[])
    }

    /// Starts it over TLS (HTTP/2 by ALPN) with the certificate and key in the PEM
    /// files `cert` and `key`.
    pub fn start_tls(runtime: &PythonRuntime, cert: &Path, key: &Path) -> PetsServer {
        PetsServer::spawn(runtime, &[cert, key])
    }

    fn spawn(runtime: &PythonRuntime, tls: &[&Path]) -> PetsServer {
        let mut child = Command::new(&runtime.python)
            .arg(script())
            .arg("serve")
            .args(tls)
            .env("PYTHONPATH", &runtime.site)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the gRPC service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the gRPC service did not start: {line:?}"));
        PetsServer { child, port }
    }
}

impl Drop for PetsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client against `target` (`HOST:PORT`): what every call came back with, as
/// `pets.py` prints it.
pub fn call(runtime: &PythonRuntime, target: &str) -> serde_json::Value {
    let out = Command::new(&runtime.python)
        .arg(script())
        .args(["call", target])
        .env("PYTHONPATH", &runtime.site)
        .output()
        .expect("running the gRPC client");
    assert!(
        out.status.success(),
        "the gRPC client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the gRPC client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
