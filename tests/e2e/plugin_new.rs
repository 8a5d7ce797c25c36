//! `weir plugin new`: each language's project, for each world, builds as it is written,
//! passes its own first test where the language has a runner, and passes `weir plugin
//! check` with its sample request. Rust always; JavaScript, Python, C and Zig unless
//! `WEIR_SKIP_POLYGLOT=1` (their toolchains come from `examples/plugins/toolchains.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use weir_tests::artifacts::{ECHO_MAPPER, POLYGLOT_SKIPPED};

/// The target dir the test plugins were built in: the projects' builds share its
/// compiled dependencies.
fn wasm_target_dir() -> PathBuf {
    Path::new(ECHO_MAPPER)
        .ancestors()
        .nth(3)
        .expect("<target>/wasm32-wasip2/release/x.wasm")
        .to_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A command with the outer cargo build's settings removed and the pinned polyglot
/// tools on PATH.
fn command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let tools = std::env::var_os("WEIR_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/weir/toolchains")
        });
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env(
        "PATH",
        format!(
            "{}:{}:{path}",
            tools.join("cargo/bin").display(),
            tools.join("python/bin").display()
        ),
    );
    cmd.env("CARGO_TARGET_DIR", wasm_target_dir());
    cmd
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Writes, builds, tests and checks one project; returns the plugin's answer to the
/// project's own sample request, and what `weir plugin check` wrote on stderr.
fn build_and_check(root: &Path, lang: &str, world: &str) -> (Value, String) {
    let name = format!("{}-{world}", prefix(lang));
    let dir = root.join(&name);
    let mut new = command(env!("CARGO_BIN_EXE_weir"), root);
    new.args(["plugin", "new", &name, "--world", world, "--lang", lang]);
    run(new, &format!("weir plugin new {name}"));
    if lang == "js" {
        // The pinned jco, as toolchains.sh installed it for the examples (the same
        // package-lock.json): what `npm ci` in the project would fetch.
        let modules = repo().join("examples/plugins/javascript/node_modules");
        assert!(modules.is_dir(), "run bash examples/plugins/toolchains.sh");
        std::os::unix::fs::symlink(modules, dir.join("node_modules")).unwrap();
    }
    if lang == "rust" || lang == "python" {
        let mut test = command("bash", &dir);
        test.args(["build.sh", "test"]);
        run(test, &format!("{name}: bash build.sh test"));
    }
    let mut build = command("bash", &dir);
    build.arg("build.sh");
    run(build, &format!("{name}: bash build.sh"));
    let wasm = dir.join(format!("{name}.wasm"));
    let mut check = command(env!("CARGO_BIN_EXE_weir"), &dir);
    check.args(["plugin", "check"]).arg(&wasm).args([
        "--world",
        world,
        "--request",
        "request.json",
    ]);
    check.env("RUST_LOG", "info");
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name}: plugin check: {stdout}{stderr}"
    );
    let answer = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
    (answer, stderr)
}

/// The start of a project's name in `lang`.
fn prefix(lang: &str) -> &str {
    &lang[..lang.len().min(2)]
}

#[test]
fn new_projects_build_test_and_pass_plugin_check() {
    let root = weir_tests::test_dir();
    let mut langs = vec!["rust"];
    if POLYGLOT_SKIPPED.is_empty() {
        langs.extend(["js", "python", "c", "zig"]);
    } else {
        eprintln!("plugin new: WEIR_SKIP_POLYGLOT=1, checking Rust projects only");
    }
    for lang in langs {
        let prefix = prefix(lang);
        let (out, stderr) = build_and_check(&root, lang, "mapper");
        if lang == "js" {
            // `console.log` reaches the gateway's log, and an absent option (no
            // authorizer ran, so no principal) is `null`, as the docs say.
            assert!(
                stderr.contains("map-request GET /pets/7 (GET /pets/{id}, principal null)"),
                "{stderr}"
            );
        }
        let headers = &out["map_request"]["forward"]["headers"];
        assert!(
            headers
                .as_array()
                .unwrap()
                .contains(&json!(["x-hello", format!("hello from {prefix}-mapper")])),
            "{lang}: {out}"
        );
        assert!(
            out["map_response"]["headers"]
                .as_array()
                .unwrap()
                .contains(&json!(["x-mapped-by", format!("{prefix}-mapper")])),
            "{lang}: {out}"
        );
        let (out, _) = build_and_check(&root, lang, "authorizer");
        assert_eq!(
            out["authorize"]["allow"]["principal_id"], "user",
            "{lang}: {out}"
        );
        let (out, _) = build_and_check(&root, lang, "cors");
        assert_eq!(out["preflight"]["status"], 204, "{lang}: {out}");
        assert!(
            out["preflight"]["headers"]
                .as_array()
                .unwrap()
                .contains(&json!([
                    "access-control-allow-origin",
                    "https://app.example"
                ])),
            "{lang}: {out}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn plugin_new_refuses_bad_names_and_full_directories() {
    let root = weir_tests::test_dir();
    let weir = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .current_dir(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let out = weir(&["plugin", "new", "Bad_Name", "--world", "mapper"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid plugin name"));
    let out = weir(&["plugin", "new", "ok", "--world", "mapper"]);
    assert!(out.status.success());
    let out = weir(&["plugin", "new", "ok", "--world", "cors"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
    std::fs::remove_dir_all(&root).unwrap();
}
