//! The runtime interface clients the Lambda tests run: the real `awslambdaric` (Python),
//! installed once under the target directory with `pip install --target` (into a
//! temporary directory first, then renamed, so concurrent runs never see half of it),
//! and the real `aws-lambda-ric` (Node), which `tests/lambda-node/install.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned package (`.ci/test` installs the same).
pub const AWSLAMBDARIC: &str = "awslambdaric==4.2.2";

/// A Python interpreter and the directory a package (`awslambdaric`) is installed in.
pub struct PythonRuntime {
    /// The interpreter (`sys.executable` of `python3`).
    pub python: String,
    /// The `--target` directory, for `PYTHONPATH`.
    pub site: PathBuf,
}

/// The runtime, installed on first use next to `weir_bin`'s profile directory
/// (`target/awslambdaric-4.2.2`).
pub fn python_runtime(weir_bin: &str) -> &'static PythonRuntime {
    static RUNTIME: OnceLock<PythonRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| pip_install(Path::new(weir_bin), AWSLAMBDARIC, "awslambdaric"))
}

/// `spec` (`NAME==VERSION`, which provides the Python package `module`) installed
/// with pip under the target directory of `weir_bin` (`target/NAME-VERSION`), unless
/// it already is there.
pub fn pip_install(weir_bin: &Path, spec: &str, module: &str) -> PythonRuntime {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for these tests");
    assert!(out.status.success(), "python3 does not run");
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let target = weir_bin
        .parent()
        .and_then(Path::parent)
        .expect("the weir binary lives in target/PROFILE");
    let (name, version) = spec.split_once("==").unwrap_or((spec, "latest"));
    let site = target.join(format!("{name}-{version}"));
    if !site.join(module).is_dir() {
        let tmp = target.join(format!("{name}-{version}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&tmp)
            .arg(spec)
            .output()
            .expect("running pip");
        assert!(
            out.status.success(),
            "pip install {spec} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::fs::rename(&tmp, &site).is_err() {
            // Another run installed it meanwhile.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    PythonRuntime { python, site }
}

/// `tests/functions`, the handlers' directory.
pub fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("functions")
}

impl PythonRuntime {
    /// A `[functions.NAME]` table running `module.handler` from `tests/functions` with
    /// awslambdaric; `env` is added to the environment table (`K = "V", …`), `extra`
    /// after it (other keys).
    pub fn function(&self, name: &str, handler: &str, env: &str, extra: &str) -> String {
        let env = if env.is_empty() {
            String::new()
        } else {
            format!(", {env}")
        };
        format!(
            "[functions.{name}]\ncommand = [{python:?}, \"-m\", \"awslambdaric\", {handler:?}]\ndir = {dir:?}\nenv = {{ PYTHONPATH = {site:?}{env} }}\n{extra}\n",
            python = self.python,
            dir = functions_dir().display().to_string(),
            site = self.site.display().to_string(),
        )
    }
}

/// The Node runtime interface client, `aws-lambda-ric` as `tests/lambda-node/package-lock.json`
/// pins it (with the Express adapter), and `node`.
pub struct NodeRuntime {
    /// The `node` program.
    pub node: String,
    /// The install's `node_modules` (for `NODE_PATH`: the handlers `require` from it).
    pub modules: PathBuf,
}

/// `tests/lambda-node`: the lock file, the installer and the Node handlers.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lambda-node")
}

/// The Node runtime in `$WEIR_LAMBDA_NODE`, else `target/lambda-node` (next to
/// `weir_bin`'s profile directory), where `.ci/test` installs it.
///
/// Unlike `awslambdaric` (a `pip install` of seconds) the tests do not install it on
/// first use: its native part compiles for minutes and needs Debian packages. Panics
/// with the command that installs it when it is missing or does not match the lock file.
pub fn node_runtime(weir_bin: &str) -> &'static NodeRuntime {
    static RUNTIME: OnceLock<NodeRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| find_node(Path::new(weir_bin)))
}

fn find_node(weir_bin: &Path) -> NodeRuntime {
    let dir = match std::env::var_os("WEIR_LAMBDA_NODE") {
        Some(dir) => PathBuf::from(dir),
        None => weir_bin
            .parent()
            .and_then(Path::parent)
            .expect("the weir binary lives in target/PROFILE")
            .join("lambda-node"),
    };
    let install = format!(
        "run `bash tests/lambda-node/install.sh {}` (as .ci/test does; it compiles \
         aws-lambda-ric's native part, minutes, once)",
        dir.display()
    );
    let addon = dir.join("node_modules/aws-lambda-ric/dist/rapid-client.node");
    assert!(
        addon.is_file(),
        "the Node runtime interface client is not installed in {}: {install}",
        dir.display()
    );
    let want = std::fs::read(node_dir().join("package-lock.json")).expect("the lock file");
    assert!(
        std::fs::read(dir.join("package-lock.json")).is_ok_and(|have| have == want),
        "{} holds another install than tests/lambda-node/package-lock.json pins: {install}",
        dir.display()
    );
    let out = Command::new("node")
        .args(["-e", "console.log(process.execPath)"])
        .output()
        .expect("node is needed for the Node Lambda tests");
    assert!(out.status.success(), "node does not run");
    NodeRuntime {
        node: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        modules: dir.join("node_modules"),
    }
}

impl NodeRuntime {
    /// A `[functions.NAME]` table running `module.handler` from `tests/lambda-node` with
    /// aws-lambda-ric; `env` and `extra` as in [`PythonRuntime::function`].
    pub fn function(&self, name: &str, handler: &str, env: &str, extra: &str) -> String {
        let env = if env.is_empty() {
            String::new()
        } else {
            format!(", {env}")
        };
        format!(
            "[functions.{name}]\ncommand = [{node:?}, {ric:?}, {handler:?}]\ndir = {dir:?}\nenv = {{ NODE_PATH = {modules:?}{env} }}\n{extra}\n",
            node = self.node,
            ric = self
                .modules
                .join("aws-lambda-ric/bin/index.mjs")
                .display()
                .to_string(),
            dir = node_dir().display().to_string(),
            modules = self.modules.display().to_string(),
        )
    }
}

/// The processes descended from `pid` (children, their children, …), from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = std::collections::BTreeMap::<u32, Vec<u32>>::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if let Some(ppid) = fields.get(1).and_then(|f| f.parse::<u32>().ok()) {
            parents.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &child in parents.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(child);
            todo.push(child);
        }
    }
    out
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Open descriptors and resident memory (KiB) of process `pid`.
pub fn footprint(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}
