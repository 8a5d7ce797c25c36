//! `weir validate` against broken configs, each next to the exact error it must print
//! (`tests/ui/invalid/NAME.toml` and `NAME.err`). Set `WEIR_BLESS=1` to rewrite the
//! `.err` files after an intended change, then review the diff.

use std::path::Path;
use std::process::Command;

fn validate(path: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let dir = path.parent().unwrap().display().to_string();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace(&dir, "$DIR"),
        String::from_utf8_lossy(&out.stderr).replace(&dir, "$DIR"),
    )
}

#[test]
fn broken_configs_name_the_offending_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui/invalid");
    let dir = dir.canonicalize().unwrap();
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for toml in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let (ok, _, stderr) = validate(toml);
        assert!(!ok, "{} must fail validation", toml.display());
        let golden = toml.with_extension("err");
        if bless {
            std::fs::write(&golden, &stderr).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}; run with WEIR_BLESS=1", golden.display()));
        assert_eq!(stderr, want, "{}", toml.display());
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} golden configs found");
}

#[test]
fn a_valid_config_passes() {
    let dir = weir_tests::test_dir();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[plugins.params]
file = {:?}
world = "mapper"
[[routes]]
key = "GET /x"
integration = {{ type = "mock" }}
request_mapping = "params"
"#,
            weir_tests::artifacts::PARAM_MAPPING
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = validate(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "$DIR/weir.toml: ok (1 routes, 1 plugins)");
}
