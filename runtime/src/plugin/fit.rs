//! Why a component does not fit its world, in a plugin author's terms. wasmtime names
//! the import it could not link (`component imports instance `…``); this says what
//! that import is for: an interface of a newer WIT than the gateway serves, one that
//! only another world imports, or outgoing HTTP where the world has none.

use std::sync::LazyLock;

use crate::config::World;

/// The WIT package this gateway serves (its newest version; earlier ones are subsets).
pub const WIT: &str = include_str!("../../../wit/weir.wit");

/// [`WIT`]'s version, as its `package weir:plugin@…;` line gives it.
pub fn wit_version() -> &'static str {
    WIT.lines()
        .find_map(|l| l.trim().strip_prefix("package weir:plugin@"))
        .map_or("?", |v| v.trim_end_matches(';'))
}

/// The package's version, and which `weir:plugin` interfaces each world imports.
struct Served {
    version: (u32, u32, u32),
    /// `(world, interface)` for every `import` line of a world.
    imports: Vec<(String, String)>,
}

static SERVED: LazyLock<Served> = LazyLock::new(|| {
    let version = parse_version(wit_version()).unwrap_or_default();
    let mut imports = Vec::new();
    let mut world: Option<&str> = None;
    for line in WIT.lines() {
        if let Some(name) = line.strip_prefix("world ") {
            world = name.split_whitespace().next();
        } else if line.starts_with('}') {
            world = None;
        } else if let (Some(w), Some(iface)) = (world, line.trim().strip_prefix("import ")) {
            imports.push((w.to_owned(), iface.trim_end_matches(';').to_owned()));
        }
    }
    Served { version, imports }
});

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// A sentence on why `world` cannot link the import that `error` (wasmtime's message)
/// names, when there is more to say than the message does.
pub fn hint(world: World, error: &str) -> Option<String> {
    let (_, rest) = error.split_once("imports instance `")?;
    let (import, _) = rest.split_once('`')?;
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    if let Some(iface) = name.strip_prefix("weir:plugin/") {
        let served = &*SERVED;
        let (a, b, c) = served.version;
        if parse_version(version).is_some_and(|v| v > served.version) {
            return Some(format!(
                "it was built against weir:plugin@{version}, newer than the {a}.{b}.{c} this \
                 gateway serves: build it against the WIT of this release, or upgrade the gateway"
            ));
        }
        let worlds: Vec<&str> = served
            .imports
            .iter()
            .filter(|(_, i)| i == iface)
            .map(|(w, _)| w.as_str())
            .collect();
        return Some(if worlds.is_empty() {
            format!("weir:plugin@{a}.{b}.{c} has no interface `{iface}`")
        } else if !worlds.contains(&world.name()) {
            let list = worlds
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "`weir:plugin/{iface}` is imported only by the {list} world, not by `{}`",
                world.name()
            )
        } else {
            return None;
        });
    }
    if name.starts_with("wasi:http/") && matches!(world, World::Mapper | World::Cors) {
        return Some(format!(
            "outgoing HTTP (`{name}`) is for authorizers (with `allow_outbound`) and \
             functions; a `{}` plugin cannot make requests",
            world.name()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wasmtime's message for a mapper that calls `signatures.verify`.
    const MAPPER_WITH_SIGNATURES: &str = "component imports instance \
        `weir:plugin/signatures@0.1.5`, but a matching implementation was not found in the \
        linker: instance export `verify` has the wrong type: function implementation is missing";

    #[test]
    fn the_served_wit_is_read_from_the_package() {
        let served = &*SERVED;
        assert!(served.version >= (0, 1, 5), "{:?}", served.version);
        assert_eq!(parse_version(wit_version()), Some(served.version));
        let has = |w: &str, i: &str| served.imports.iter().any(|(a, b)| a == w && b == i);
        assert!(has("authorizer", "signatures"));
        assert!(has("mapper", "host") && has("cors", "json"));
        assert!(!has("mapper", "signatures") && !has("cors", "signatures"));
    }

    #[test]
    fn an_interface_of_another_world_is_named_with_its_world() {
        let hint = hint(World::Mapper, MAPPER_WITH_SIGNATURES).unwrap();
        assert_eq!(
            hint,
            "`weir:plugin/signatures` is imported only by the `authorizer` world, not by `mapper`"
        );
        let cors = MAPPER_WITH_SIGNATURES.replace("0.1.5", "0.1.0");
        assert!(
            super::hint(World::Cors, &cors)
                .unwrap()
                .contains("not by `cors`")
        );
    }

    #[test]
    fn a_newer_wit_says_which_version_the_gateway_serves() {
        let newer = MAPPER_WITH_SIGNATURES.replace("signatures@0.1.5", "host@0.9.0");
        let hint = hint(World::Mapper, &newer).unwrap();
        assert!(
            hint.contains("built against weir:plugin@0.9.0, newer than the 0.1."),
            "{hint}"
        );
        let unknown = MAPPER_WITH_SIGNATURES.replace("signatures", "telepathy");
        let hint = super::hint(World::Authorizer, &unknown).unwrap();
        assert!(hint.contains("has no interface `telepathy`"), "{hint}");
    }

    #[test]
    fn outgoing_http_is_only_for_authorizers_and_functions() {
        let http = "component imports instance `wasi:http/outgoing-handler@0.2.6`, but a \
            matching implementation was not found in the linker";
        let hint = hint(World::Mapper, http).unwrap();
        assert!(
            hint.contains("a `mapper` plugin cannot make requests"),
            "{hint}"
        );
        assert_eq!(super::hint(World::Authorizer, http), None);
    }

    #[test]
    fn other_messages_get_no_hint() {
        assert_eq!(hint(World::Mapper, "export `map-request` not found"), None);
        // An interface the world does import: the message itself is the explanation.
        let host = MAPPER_WITH_SIGNATURES.replace("signatures", "host");
        assert_eq!(hint(World::Mapper, &host), None);
        let wasi = "component imports instance `wasi:sockets/tcp@0.2.0`, but …";
        assert_eq!(hint(World::Mapper, wasi), None);
    }
}
