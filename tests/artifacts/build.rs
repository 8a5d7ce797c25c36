//! Builds every plugin (shipped and test-only) from source for wasm32-wasip2, once per
//! test build, and writes their paths into `$OUT_DIR/plugins.rs`; then the example
//! plugins of every language (`examples/plugins/build.sh`), for the conformance suite.
//! `WEIR_SKIP_POLYGLOT=1` builds only the Rust examples (for machines without the other
//! toolchains; CI never sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, cargo workspace relative to the repo root, package, artifact stem)
const PLUGINS: &[(&str, &str, &str, &str)] = &[
    ("PARAM_MAPPING", "plugins", "param-mapping", "param_mapping"),
    (
        "JWT_AUTHORIZER",
        "plugins",
        "jwt-authorizer",
        "jwt_authorizer",
    ),
    ("CORS", "plugins", "cors", "cors"),
    ("ECHO_MAPPER", "tests/plugins", "echo-mapper", "echo_mapper"),
    (
        "COUNTING_AUTHORIZER",
        "tests/plugins",
        "counting-authorizer",
        "counting_authorizer",
    ),
    ("TRAP", "tests/plugins", "trap", "trap"),
    ("SPIN", "tests/plugins", "spin", "spin"),
    ("HOG", "tests/plugins", "hog", "hog"),
    ("HOSTILE", "tests/plugins", "hostile", "hostile"),
    (
        "TRAP_AUTHORIZER",
        "tests/plugins",
        "trap-authorizer",
        "trap_authorizer",
    ),
    ("STAMP_V1", "tests/plugins", "stamp-v1", "stamp_v1"),
    ("STAMP_V2", "tests/plugins", "stamp-v2", "stamp_v2"),
    (
        "CALL_COUNTER",
        "tests/plugins",
        "call-counter",
        "call_counter",
    ),
    ("JSON_INDEX", "tests/plugins", "json-index", "json_index"),
    ("ABI_0_1_0", "tests/plugins", "abi-0-1-0", "abi_0_1_0"),
    (
        "OAUTH_INTROSPECTION",
        "plugins",
        "oauth-introspection",
        "oauth_introspection",
    ),
    (
        "HELLO_FUNCTION",
        "tests/plugins",
        "hello-function",
        "hello_function",
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..").canonicalize().unwrap();
    // Outside OUT_DIR so that dependencies are shared between test builds, but inside
    // the host's target dir so `cargo clean` removes it.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");

    for dir in ["wit", "sdk/src", "sdk/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for workspace in ["plugins", "tests/plugins"] {
        for file in ["Cargo.toml", "Cargo.lock"] {
            println!(
                "cargo:rerun-if-changed={}",
                root.join(workspace).join(file).display()
            );
        }
    }

    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut consts = String::new();
    let mut names = Vec::new();
    for workspace in ["plugins", "tests/plugins"] {
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--manifest-path")
        .arg(root.join(workspace).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
        // Settings of the outer build must not leak into the guest build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running {cargo}: {e}"));
        assert!(
            status.success(),
            "building the plugins of {workspace}/ failed"
        );
    }
    for (konst, workspace, package, stem) in PLUGINS {
        let crate_dir = root.join(workspace).join(package);
        println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join("Cargo.toml").display()
        );
        let wasm = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{stem}.wasm"));
        assert!(wasm.exists(), "{} was not produced", wasm.display());
        consts.push_str(&format!(
            "/// The `{package}` plugin component.\npub const {konst}: &str = {:?};\n",
            wasm.display().to_string()
        ));
        names.push(*konst);
    }
    consts.push_str(&format!(
        "/// Every plugin, as (constant name, path).\npub const ALL: &[(&str, &str)] = &[{}];\n",
        names
            .iter()
            .map(|n| format!("({n:?}, {n})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    consts.push_str(&format!(
        "/// Calls `$m!(CONST)` once per plugin, so a plugin without a test fails to compile.\n#[macro_export]\nmacro_rules! foreach_plugin {{\n    ($m:ident) => {{\n{}    }};\n}}\n",
        names.iter().map(|n| format!("        $m!({n});\n")).collect::<String>()
    ));
    consts.push_str(&polyglot(&root, &target_dir));
    consts.push_str(&functions(&root, &target_dir));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, consts).unwrap();
}

/// Every language with example plugins, in the order the conformance suite reports them.
const LANGUAGES: &[&str] = &["rust", "javascript", "python", "c", "zig"];

/// The sources of the example plugins (not their directories: builds write next to them).
const EXAMPLE_SOURCES: &[&str] = &[
    "build.sh",
    "toolchains.sh",
    "rust/build.sh",
    "rust/Cargo.toml",
    "rust/Cargo.lock",
    "rust/mapper/Cargo.toml",
    "rust/mapper/src",
    "rust/authorizer/Cargo.toml",
    "rust/authorizer/src",
    "javascript/build.sh",
    "javascript/package-lock.json",
    "javascript/mapper.js",
    "javascript/authorizer.js",
    "python/build.sh",
    "python/mapper/app.py",
    "python/authorizer/app.py",
    "c/build.sh",
    "c/common",
    "c/mapper",
    "c/authorizer",
    "zig/build.sh",
    "zig/json.zig",
    "zig/config.zig",
    "zig/heap.zig",
    "zig/mapper",
    "zig/authorizer",
];

/// Builds the example plugins of every language; returns the `POLYGLOT` constants.
fn polyglot(root: &Path, target_dir: &Path) -> String {
    let examples = root.join("examples/plugins");
    for file in EXAMPLE_SOURCES {
        println!("cargo:rerun-if-changed={}", examples.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=WEIR_SKIP_POLYGLOT");
    let skip = std::env::var("WEIR_SKIP_POLYGLOT").is_ok_and(|v| v == "1");
    let languages: Vec<&str> = if skip {
        println!(
            "cargo:warning=WEIR_SKIP_POLYGLOT=1: only the Rust example plugins are built; the conformance suite skips JavaScript, Python, C and Zig"
        );
        vec!["rust"]
    } else {
        LANGUAGES.to_vec()
    };
    let out = target_dir.join("polyglot");
    let mut cmd = Command::new("bash");
    cmd.arg(examples.join("build.sh"))
        .arg("--out")
        .arg(&out)
        .args(&languages)
        // The Rust examples share the other plugins' dependencies.
        .env("CARGO_TARGET_DIR", target_dir);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running examples/plugins/build.sh: {e}"));
    assert!(
        status.success(),
        "building the example plugins failed (see above). Install the toolchains with \
         `bash examples/plugins/toolchains.sh`, or set WEIR_SKIP_POLYGLOT=1 to build only \
         the Rust examples"
    );
    let mut rows = String::new();
    for lang in &languages {
        let path = |world: &str| {
            out.join(lang)
                .join(format!("{world}.wasm"))
                .display()
                .to_string()
        };
        rows.push_str(&format!(
            "    ({lang:?}, {:?}, {:?}),\n",
            path("mapper"),
            path("authorizer")
        ));
    }
    let skipped: Vec<&str> = LANGUAGES
        .iter()
        .copied()
        .filter(|l| !languages.contains(l))
        .collect();
    format!(
        "/// The example plugins per language: (language, mapper component, authorizer component).\n\
         pub const POLYGLOT: &[(&str, &str, &str)] = &[\n{rows}];\n\
         /// Languages whose examples were not built (`WEIR_SKIP_POLYGLOT=1`).\n\
         pub const POLYGLOT_SKIPPED: &[&str] = &{skipped:?};\n"
    )
}

/// Builds the example `wasi:http` functions (`examples/function/build.sh`); returns
/// the `EXAMPLE_FUNCTIONS` constant.
fn functions(root: &Path, target_dir: &Path) -> String {
    let dir = root.join("examples/function");
    for file in ["build.sh", "rust/Cargo.toml", "rust/src", "python/app.py"] {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    let out = target_dir.join("functions");
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running examples/function/build.sh: {e}"));
    assert!(status.success(), "building the example functions failed");
    let skip = std::env::var("WEIR_SKIP_POLYGLOT").is_ok_and(|v| v == "1");
    let rows: String = ["rust", "python"]
        .iter()
        .filter(|lang| !skip || **lang == "rust")
        .map(|lang| {
            let wasm = out.join(format!("hello-{lang}.wasm"));
            assert!(wasm.exists(), "{} was not produced", wasm.display());
            format!("    ({lang:?}, {:?}),\n", wasm.display().to_string())
        })
        .collect();
    format!(
        "/// The example functions: (language, component).\n\
         pub const EXAMPLE_FUNCTIONS: &[(&str, &str)] = &[\n{rows}];\n"
    )
}

/// Installs the wasm32-wasip2 target when rustup is available (a no-op when present).
fn ensure_target() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(root) = sysroot
        && Path::new(&root).join("lib/rustlib/wasm32-wasip2").exists()
    {
        return;
    }
    let ok = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!(
            "cargo:warning=could not install the wasm32-wasip2 target; run `rustup target add wasm32-wasip2`"
        );
    }
}
