use super::*;

fn table(keys: &[&str]) -> RouteTable {
    let parsed: Vec<RouteKey> = keys.iter().map(|k| k.parse().unwrap()).collect();
    RouteTable::new(&parsed).unwrap()
}

fn hit(t: &RouteTable, method: &str, path: &str) -> Option<usize> {
    t.lookup(method, path).map(|m| m.route)
}

#[test]
fn parses_and_prints_every_form() {
    for key in [
        "$default",
        "GET /",
        "GET /pets",
        "POST /pets/{id}",
        "ANY /files/{path+}",
        "DELETE /a/{b}/c/{d}",
    ] {
        let parsed: RouteKey = key.parse().unwrap();
        assert_eq!(parsed.to_string(), key);
    }
}

#[test]
fn rejects_bad_keys_with_a_reason() {
    let cases = [
        ("GET", RouteKeyError::Shape),
        ("FETCH /x", RouteKeyError::Method("FETCH".into())),
        ("get /x", RouteKeyError::Method("get".into())),
        ("GET x", RouteKeyError::Slash),
        ("GET /a//b", RouteKeyError::EmptySegment),
        ("GET /a/{b", RouteKeyError::Param("{b".into())),
        ("GET /a/x{b}", RouteKeyError::Param("x{b}".into())),
        ("GET /a/{}", RouteKeyError::Param("{}".into())),
        ("GET /{p+}/x", RouteKeyError::GreedyNotLast("p".into())),
        ("GET /{a}/{a}", RouteKeyError::DuplicateParam("a".into())),
    ];
    for (key, want) in cases {
        assert_eq!(key.parse::<RouteKey>().unwrap_err(), want, "{key}");
    }
}

#[test]
fn captures_params_and_greedy_paths() {
    let t = table(&["GET /pets/{id}", "ANY /files/{path+}"]);
    let m = t.lookup("GET", "/pets/42").unwrap();
    assert_eq!(m.params, [("id".to_owned(), "42".to_owned())]);
    let m = t.lookup("PUT", "/files/a/b/c.txt").unwrap();
    assert_eq!(m.route, 1);
    assert_eq!(m.params, [("path".to_owned(), "a/b/c.txt".to_owned())]);
    assert_eq!(
        hit(&t, "GET", "/files/"),
        None,
        "greedy needs one character"
    );
    assert_eq!(hit(&t, "GET", "/pets/42/x"), None);
}

#[test]
fn most_specific_path_wins_then_exact_method() {
    let t = table(&[
        "GET /pets/{id}",  // 0
        "GET /pets/dog",   // 1
        "ANY /pets/{id}",  // 2
        "ANY /pets/cat",   // 3
        "GET /{proxy+}",   // 4
        "$default",        // 5
        "POST /pets/{id}", // 6
    ]);
    assert_eq!(hit(&t, "GET", "/pets/dog"), Some(1), "literal beats param");
    assert_eq!(hit(&t, "GET", "/pets/7"), Some(0), "exact method beats ANY");
    assert_eq!(
        hit(&t, "GET", "/pets/cat"),
        Some(3),
        "literal ANY beats param GET"
    );
    assert_eq!(hit(&t, "PUT", "/pets/7"), Some(2));
    assert_eq!(
        hit(&t, "POST", "/pets/dog"),
        Some(6),
        "a literal of another method is no match"
    );
    assert_eq!(
        hit(&t, "GET", "/other/thing"),
        Some(4),
        "greedy beats $default"
    );
    assert_eq!(hit(&t, "DELETE", "/other"), Some(5));
}

#[test]
fn no_default_means_no_match() {
    let t = table(&["GET /a"]);
    assert_eq!(hit(&t, "GET", "/b"), None);
    assert_eq!(hit(&t, "POST", "/a"), None);
}

#[test]
fn conflicts_name_both_routes() {
    let keys: Vec<RouteKey> = ["GET /pets/{id}", "GET /pets/{name}"]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect();
    let err = RouteTable::new(&keys).err().unwrap();
    assert_eq!(err.key, "GET /pets/{name}");
    assert_eq!(err.with, "GET /pets/{id}");
    let keys: Vec<RouteKey> = ["GET /a", "GET /a"]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect();
    assert!(RouteTable::new(&keys).is_err());
}
#[test]
fn finds_dot_segments_plain_and_encoded() {
    for bad in [
        "/a/../b",
        "/..",
        "/a/.",
        "/%2e%2e/x",
        "/a/%2E/b",
        "/.%2e/x",
        "/x/%2e.",
    ] {
        assert!(has_dot_segment(bad), "{bad}");
    }
    for good in [
        "/",
        "/a/b",
        "/a..b",
        "/.well-known/x",
        "/a/...",
        "/%2e%2e%2e",
        "/a%2fb",
    ] {
        assert!(!has_dot_segment(good), "{good}");
    }
}
