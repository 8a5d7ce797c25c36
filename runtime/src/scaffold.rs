//! `weir plugin new`: a project for a plugin of one's own, in any language of
//! `examples/plugins/` (Rust, JavaScript, Python, C, Zig), from templates built into
//! the binary (`runtime/templates/`).
//!
//! A project builds as it is written: the WIT package is copied in, the tools are
//! pinned to the versions the gateway is tested with (the Rust SDK and its
//! dependencies; the npm lock file of the JavaScript examples; the versions
//! `examples/plugins/toolchains.sh` installs), and it has a build script, a README with
//! the commands to build, check and load it, a sample request for `weir plugin check
//! --request`, and a first test where the language has a runner. The templates take
//! their pins from the files the examples build with, so the two cannot drift (the
//! tests below hold them to it).

use std::path::{Path, PathBuf};

use crate::config::World;

/// The languages `weir plugin new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust with `weir-sdk`.
    Rust,
    /// JavaScript with jco's QuickJS backend.
    JavaScript,
    /// Python with componentize-py.
    Python,
    /// C with wit-bindgen's C bindings, clang and wasi-libc.
    C,
    /// Zig over the same C bindings.
    Zig,
}

impl Lang {
    /// The language's name in `examples/plugins/`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::JavaScript => "javascript",
            Lang::Python => "python",
            Lang::C => "c",
            Lang::Zig => "zig",
        }
    }
}

// The WIT package every project is built against: the one this gateway serves.
use crate::plugin::{WIT, wit_version};

/// The versions the templates pin, from the files the examples build with.
mod pins {
    /// The toolchain the gateway (and its Rust examples) build with.
    pub const RUST_TOOLCHAIN: &str = include_str!("../../rust-toolchain.toml");
    /// The host workspace: the SDK's dependency versions.
    pub const WORKSPACE: &str = include_str!("../../Cargo.toml");
    /// The JavaScript examples' npm lock file.
    pub const NPM_LOCK: &str = include_str!("../../examples/plugins/javascript/package-lock.json");
    /// The JavaScript examples' package.json.
    pub const NPM_PACKAGE: &str = include_str!("../../examples/plugins/javascript/package.json");
    /// The pinned polyglot tools.
    pub const TOOLCHAINS: &str = include_str!("../../examples/plugins/toolchains.sh");
}

/// The C examples' JSON scanner (`json.c`, `json.h`), copied into each C project.
const C_JSON: (&str, &str) = (
    include_str!("../../examples/plugins/c/common/json.c"),
    include_str!("../../examples/plugins/c/common/json.h"),
);

/// The Zig examples' allocator, copied into each Zig project.
const ZIG_HEAP: &str = include_str!("../../examples/plugins/zig/heap.zig");

/// The Rust SDK's sources, copied into each Rust project.
const SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("types.rs", include_str!("../../sdk/src/types.rs")),
    ("host.rs", include_str!("../../sdk/src/host.rs")),
    ("json.rs", include_str!("../../sdk/src/json.rs")),
    ("signatures.rs", include_str!("../../sdk/src/signatures.rs")),
    ("http.rs", include_str!("../../sdk/src/http.rs")),
    ("mapper.rs", include_str!("../../sdk/src/mapper.rs")),
    ("authorizer.rs", include_str!("../../sdk/src/authorizer.rs")),
    ("cors.rs", include_str!("../../sdk/src/cors.rs")),
];

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../templates/", $path))
    };
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a package.
    #[error(
        "invalid plugin name `{0}`: use 1 to 64 lower-case letters, digits and `-`, starting with a letter"
    )]
    BadName(String),
    /// No templates for this world.
    #[error("`weir plugin new` has no templates for the `{0}` world")]
    NoTemplate(&'static str),
    /// The directory exists and is not empty.
    #[error("{0} exists and is not empty; choose another name or --dir")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One file of a project: its path in the project, its text, whether it is a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    /// Relative path.
    pub path: String,
    /// Content.
    pub text: String,
    /// Whether it is executable.
    pub executable: bool,
}

/// The files of a new project `name` for `world` in `lang`.
pub fn project(name: &str, world: World, lang: Lang) -> Result<Vec<ProjectFile>, ScaffoldError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    // The worlds with templates, as an index into the per-world lists below. (A world
    // added to the gateway gets no project until it has templates of its own.)
    #[allow(unreachable_patterns)]
    let kind = match world {
        World::Mapper => 0,
        World::Authorizer => 1,
        World::Cors => 2,
        other => return Err(ScaffoldError::NoTemplate(other.name())),
    };
    let crate_name = name.replace('-', "_");
    let world_name = world.name();
    let request = [
        template!("common/mapper.json"),
        template!("common/authorizer.json"),
        template!("common/cors.json"),
    ][kind];
    let load_example = [
        "config = { greeting = \"hi\" }",
        "config = { token = \"a-long-random-token\" }",
        "config = { allow_origins = [\"https://app.example\"] }",
    ][kind];
    let mut files: Vec<(String, String, bool)> = vec![
        ("wit/weir.wit".into(), WIT.into(), false),
        ("request.json".into(), request.into(), false),
    ];
    match lang {
        Lang::Rust => {
            let source = [
                template!("rust/mapper.rs"),
                template!("rust/authorizer.rs"),
                template!("rust/cors.rs"),
            ][kind];
            files.extend([
                (
                    "Cargo.toml".into(),
                    template!("rust/Cargo.toml").into(),
                    false,
                ),
                (
                    "Cargo.lock".into(),
                    template!("rust/Cargo.lock").into(),
                    false,
                ),
                (
                    ".cargo/config.toml".into(),
                    template!("rust/cargo-config.toml").into(),
                    false,
                ),
                (
                    "rust-toolchain.toml".into(),
                    pins::RUST_TOOLCHAIN.into(),
                    false,
                ),
                ("build.sh".into(), template!("rust/build.sh").into(), true),
                (
                    "README.md".into(),
                    template!("rust/README.md").into(),
                    false,
                ),
                ("src/lib.rs".into(), source.into(), false),
                (".gitignore".into(), "/target\n/*.wasm\n".into(), false),
                ("weir-sdk/Cargo.toml".into(), sdk_manifest(), false),
            ]);
            for (file, text) in SDK {
                files.push((format!("weir-sdk/src/{file}"), (*text).into(), false));
            }
        }
        Lang::JavaScript => {
            let source = [
                template!("javascript/mapper.js"),
                template!("javascript/authorizer.js"),
                template!("javascript/cors.js"),
            ][kind];
            let lock = pins::NPM_LOCK.replace("weir-example-plugins-js", name);
            files.extend([
                ("package.json".into(), npm_package(name), false),
                ("package-lock.json".into(), lock, false),
                (
                    "build.sh".into(),
                    template!("javascript/build.sh").into(),
                    true,
                ),
                (
                    "README.md".into(),
                    template!("javascript/README.md").into(),
                    false,
                ),
                ("plugin.js".into(), source.into(), false),
                (
                    ".gitignore".into(),
                    "/node_modules\n/*.wasm\n".into(),
                    false,
                ),
            ]);
        }
        Lang::Python => {
            let (app, logic, test) = [
                (
                    template!("python/mapper/app.py"),
                    template!("python/mapper/logic.py"),
                    template!("python/mapper/test_logic.py"),
                ),
                (
                    template!("python/authorizer/app.py"),
                    template!("python/authorizer/logic.py"),
                    template!("python/authorizer/test_logic.py"),
                ),
                (
                    template!("python/cors/app.py"),
                    template!("python/cors/logic.py"),
                    template!("python/cors/test_logic.py"),
                ),
            ][kind];
            files.extend([
                ("build.sh".into(), template!("python/build.sh").into(), true),
                (
                    "README.md".into(),
                    template!("python/README.md").into(),
                    false,
                ),
                ("app.py".into(), app.into(), false),
                ("logic.py".into(), logic.into(), false),
                ("test_logic.py".into(), test.into(), false),
                (
                    ".gitignore".into(),
                    "/*.wasm\n/wit_world\n/componentize_py_*\n__pycache__/\n".into(),
                    false,
                ),
            ]);
        }
        Lang::C => {
            let source = [
                template!("c/mapper.c"),
                template!("c/authorizer.c"),
                template!("c/cors.c"),
            ][kind];
            let config = template!("c/config.part").replace("WORLD", world_name);
            files.extend([
                (
                    "plugin.c".into(),
                    source.replace("@CONFIG@", &config),
                    false,
                ),
                ("json.c".into(), C_JSON.0.into(), false),
                ("json.h".into(), C_JSON.1.into(), false),
                ("build.sh".into(), template!("c/build.sh").into(), true),
                ("README.md".into(), template!("c/README.md").into(), false),
                (".gitignore".into(), "/build\n/*.wasm\n".into(), false),
            ]);
        }
        Lang::Zig => {
            let source = [
                template!("zig/mapper.zig"),
                template!("zig/authorizer.zig"),
                template!("zig/cors.zig"),
            ][kind];
            let prelude = template!("zig/prelude.part").replace("WORLD", world_name);
            files.extend([
                (
                    "plugin.zig".into(),
                    source.replace("@PRELUDE@", &prelude),
                    false,
                ),
                ("heap.zig".into(), ZIG_HEAP.into(), false),
                ("build.sh".into(), template!("zig/build.sh").into(), true),
                ("README.md".into(), template!("zig/README.md").into(), false),
                (".gitignore".into(), "/build\n/*.wasm\n".into(), false),
            ]);
        }
    }
    let wit_version = wit_version();
    let componentize_py = shell_pin(pins::TOOLCHAINS, "COMPONENTIZE_PY_VERSION");
    let wit_bindgen = shell_pin(pins::TOOLCHAINS, "WIT_BINDGEN_VERSION");
    let wasm_tools = shell_pin(pins::TOOLCHAINS, "WASM_TOOLS_VERSION");
    let ziglang = shell_pin(pins::TOOLCHAINS, "ZIGLANG_VERSION");
    // The C policy takes one origin (a string; the others take a list).
    let load_example = match (lang, world) {
        (Lang::C | Lang::Zig, World::Cors) => "config = { allow_origin = \"https://app.example\" }",
        _ => load_example,
    };
    Ok(files
        .into_iter()
        .map(|(path, text, executable)| ProjectFile {
            text: text
                .replace("{{name}}", name)
                .replace("{{crate}}", &crate_name)
                .replace("{{world}}", world_name)
                .replace("{{wit_version}}", wit_version)
                .replace("{{load_example}}", load_example)
                .replace("{{componentize_py}}", &componentize_py)
                .replace("{{wit_bindgen}}", &wit_bindgen)
                .replace("{{wasm_tools}}", &wasm_tools)
                .replace("{{ziglang}}", &ziglang),
            path,
            executable,
        })
        .collect())
}

/// `weir plugin new`: writes the project into `dir` (default `./NAME`) and says so;
/// exit 2 for a bad name or a directory in use.
pub fn run(name: &str, world: World, lang: Lang, dir: Option<PathBuf>) -> std::process::ExitCode {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    match project(name, world, lang).and_then(|files| write(&dir, &files)) {
        Ok(()) => {
            println!(
                "{}: a {} plugin in {}; see its README.md",
                dir.display(),
                world.name(),
                lang.name()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Writes the project into `dir` (which must not exist, or be empty).
pub fn write(dir: &Path, files: &[ProjectFile]) -> Result<(), ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &f.text).map_err(io(&path))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

/// A dependency's spec in the host workspace's `[workspace.dependencies]`, as written.
fn workspace_dep(name: &str) -> String {
    pins::WORKSPACE
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or("\"*\"")
        .to_owned()
}

/// The copied SDK's manifest: the workspace's versions of its dependencies.
fn sdk_manifest() -> String {
    let version = pins::WORKSPACE
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap_or("\"0.1.0\"")
        .trim_matches('"');
    template!("rust/weir-sdk.toml")
        .replace("{{sdk_version}}", version)
        .replace("{{serde}}", &workspace_dep("serde"))
        .replace("{{serde_json}}", &workspace_dep("serde_json"))
        .replace("{{wit_bindgen}}", &workspace_dep("wit-bindgen"))
        .replace("{{wasip2}}", &workspace_dep("wasip2"))
}

/// A `NAME=VALUE` pin of a shell script.
fn shell_pin(script: &str, name: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

/// The JavaScript project's package.json: the examples' tools, as their lock file
/// pins them.
fn npm_package(name: &str) -> String {
    let example: serde_json::Value =
        serde_json::from_str(pins::NPM_PACKAGE).unwrap_or(serde_json::Value::Null);
    let package = serde_json::json!({
        "name": name,
        "private": true,
        "type": "module",
        "description": "A Weir plugin (made by `weir plugin new`)",
        "scripts": { "build": "bash build.sh" },
        "devDependencies": example["devDependencies"],
        "overrides": example["overrides"],
    });
    format!("{package:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, version) of each registry package in a Cargo.lock.
    fn registry_packages(lock: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for entry in lock.split("[[package]]").skip(1) {
            let field = |key: &str| {
                entry
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            if field("source").is_some() {
                out.push((field("name").unwrap(), field("version").unwrap()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_rust_lock_pins_what_the_rust_examples_build_with() {
        let examples = include_str!("../../examples/plugins/rust/Cargo.lock");
        let template = registry_packages(template!("rust/Cargo.lock"));
        assert!(template.len() > 10, "{template:?}");
        assert_eq!(template, registry_packages(examples));
    }

    #[test]
    fn names_must_name_a_package() {
        for bad in ["", "Foo", "1x", "a_b", "a b", &"x".repeat(65)] {
            assert!(project(bad, World::Mapper, Lang::Rust).is_err(), "{bad:?}");
        }
        assert!(project("my-mapper2", World::Mapper, Lang::Rust).is_ok());
    }

    #[test]
    fn projects_are_filled_in_and_pinned() {
        for lang in [
            Lang::Rust,
            Lang::JavaScript,
            Lang::Python,
            Lang::C,
            Lang::Zig,
        ] {
            for world in [World::Mapper, World::Authorizer, World::Cors] {
                let files = project("my-plugin", world, lang).unwrap();
                for f in &files {
                    assert!(
                        !f.text.contains("{{"),
                        "{} {}: {} keeps a placeholder",
                        lang.name(),
                        world.name(),
                        f.path
                    );
                }
                let readme = files.iter().find(|f| f.path == "README.md").unwrap();
                for want in [
                    "build.sh",
                    "weir plugin check my-plugin.wasm",
                    "[plugins.my_plugin]",
                ] {
                    assert!(readme.text.contains(want), "{} README: {want}", lang.name());
                }
                assert!(
                    files
                        .iter()
                        .any(|f| f.path == "wit/weir.wit" && f.text == WIT)
                );
            }
        }
        // The SDK's dependencies are the workspace's.
        let files = project("p", World::Mapper, Lang::Rust).unwrap();
        let sdk = &files
            .iter()
            .find(|f| f.path == "weir-sdk/Cargo.toml")
            .unwrap()
            .text;
        assert!(sdk.contains("wit-bindgen = \"0."), "{sdk}");
        assert!(!sdk.contains("\"*\""), "{sdk}");
        // The JavaScript project pins the examples' tools.
        let files = project("p", World::Mapper, Lang::JavaScript).unwrap();
        let package = &files
            .iter()
            .find(|f| f.path == "package.json")
            .unwrap()
            .text;
        assert!(
            package.contains("\"@bytecodealliance/jco\": \"1."),
            "{package}"
        );
        // The Python project pins componentize-py as toolchains.sh does.
        let files = project("p", World::Mapper, Lang::Python).unwrap();
        let build = &files.iter().find(|f| f.path == "build.sh").unwrap().text;
        let pin = shell_pin(pins::TOOLCHAINS, "COMPONENTIZE_PY_VERSION");
        assert!(pin.starts_with("0."), "{pin}");
        assert!(build.contains(&pin), "{build}");
    }
}
