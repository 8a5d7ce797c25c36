use super::*;

fn pool(text: &str) -> Pool {
    let config = Config::parse(text).unwrap();
    let mut errors = Vec::new();
    let set = Pools::default().prepare(&config, Path::new("."), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let pool = set.into_values().next().unwrap();
    Arc::into_inner(pool).unwrap()
}

const THREE: &str = r#"
[upstreams.p]
targets = [{ url = "http://a:1", weight = 3 }, { url = "http://b:1", weight = 2 }, { url = "http://c:1" }]
"#;

#[test]
fn round_robin_gives_each_target_exactly_its_weight_interleaved() {
    let p = pool(THREE);
    let picks: Vec<usize> = (0..6)
        .map(|_| p.pick(&p.members(), &HeaderMap::new(), &[]).unwrap())
        .collect();
    let count = |t| picks.iter().filter(|&&i| i == t).count();
    assert_eq!((count(0), count(1), count(2)), (3, 2, 1));
    // Smooth: never all of a target's share in a row.
    assert!(
        picks.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
        "{picks:?}"
    );
}

#[test]
fn a_retry_goes_to_another_target_and_unavailable_ones_are_skipped() {
    let p = pool(THREE);
    for _ in 0..20 {
        let first = p.pick(&p.members(), &HeaderMap::new(), &[]).unwrap();
        let second = p.pick(&p.members(), &HeaderMap::new(), &[first]).unwrap();
        assert_ne!(first, second);
    }
    p.set_checked(&p.members().targets[0], false);
    p.set_checked(&p.members().targets[1], false);
    assert!((0..10).all(|_| p.pick(&p.members(), &HeaderMap::new(), &[]) == Some(2)));
    // The only available target is tried again rather than none.
    assert_eq!(p.pick(&p.members(), &HeaderMap::new(), &[2]), Some(2));
    p.set_checked(&p.members().targets[2], false);
    assert_eq!(p.pick(&p.members(), &HeaderMap::new(), &[]), None);
}

#[test]
fn hash_keeps_a_key_on_its_target_and_moves_only_a_leaving_targets_keys() {
    let p = pool(&THREE.replace(
        "[upstreams.p]",
        "[upstreams.p]\nbalance = \"hash:$request.header.x-user\"",
    ));
    let target = |user: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-user", user.parse().unwrap());
        p.pick(&p.members(), &h, &[]).unwrap()
    };
    let before: Vec<usize> = (0..300).map(|u| target(&format!("user-{u}"))).collect();
    assert_eq!(
        before,
        (0..300)
            .map(|u| target(&format!("user-{u}")))
            .collect::<Vec<_>>()
    );
    for t in 0..3 {
        let n = before.iter().filter(|&&i| i == t).count();
        assert!(n > 20, "target {t} got {n} of 300 keys");
    }
    p.set_checked(&p.members().targets[2], false);
    for (u, &was) in before.iter().enumerate() {
        let now = target(&format!("user-{u}"));
        if was != 2 {
            assert_eq!(now, was, "user-{u} moved though its target stayed");
        } else {
            assert_ne!(now, 2);
        }
    }
}

#[test]
fn consecutive_failures_eject_within_the_share() {
    let p = pool(&THREE.replace(
        "[upstreams.p]",
        "[upstreams.p]\npassive = { consecutive_failures = 2, eject = \"1h\", max_ejected = \"34%\" }",
    ));
    p.report(&p.members(), 0, false);
    p.report(&p.members(), 0, true);
    p.report(&p.members(), 0, false);
    assert!(
        p.members().targets[0].available(),
        "a success resets the count"
    );
    p.report(&p.members(), 0, false);
    assert!(!p.members().targets[0].available());
    p.report(&p.members(), 1, false);
    p.report(&p.members(), 1, false);
    assert!(
        p.members().targets[1].available(),
        "34% of three targets: one ejected at most"
    );
}

#[test]
fn the_budget_allows_a_share_of_first_attempts() {
    let p = pool(&THREE.replace(
        "[upstreams.p]",
        "[upstreams.p]\nretries = { budget = \"20%\" }",
    ));
    let banked = (0..100).take_while(|_| p.withdraw()).count();
    assert_eq!(banked, 10);
    for _ in 0..10 {
        p.deposit();
    }
    assert!(p.withdraw());
    assert!(p.withdraw());
    assert!(!p.withdraw(), "ten requests at 20% earn two retries");
}

#[test]
fn least_request_prefers_the_less_loaded() {
    let p = pool(&THREE.replace(
        "[upstreams.p]",
        "[upstreams.p]\nbalance = \"least_request\"",
    ));
    let _busy: Vec<InFlight> = (0..50)
        .flat_map(|_| {
            [
                p.begin(&p.members().targets[0]),
                p.begin(&p.members().targets[1]),
            ]
        })
        .collect();
    let idle = (0..1000)
        .filter(|_| p.pick(&p.members(), &HeaderMap::new(), &[]) == Some(2))
        .count();
    // Target 2 (weight 1 of 6) wins every draw it is in: about 42% of picks, against
    // its 17% share when loads are equal.
    assert!(idle > 300, "{idle}");
}

#[test]
fn resolved_addresses_become_targets_and_a_failed_lookup_keeps_the_last_ones() {
    let p = pool(
        r#"
[upstreams.p]
targets = [{ url = "http://pets.test:9000", weight = 2 }, { url = "http://10.0.0.9:9000" }]
resolve = "1s"
"#,
    );
    let ids = |p: &Pool| -> Vec<String> {
        p.members()
            .targets
            .iter()
            .map(|t| t.id.to_string())
            .collect()
    };
    assert_eq!(ids(&p), ["http://pets.test:9000", "http://10.0.0.9:9000"]);
    let a: SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let b: SocketAddr = "[::1]:9000".parse().unwrap();
    assert!(p.set_resolved(&[Some(vec![a, b]), None]));
    assert_eq!(
        ids(&p),
        [
            "http://127.0.0.1:9000",
            "http://[::1]:9000",
            "http://10.0.0.9:9000"
        ]
    );
    let members = p.members();
    assert!(members.targets[..2].iter().all(|t| t.weight == 2));
    assert_eq!(&*members.targets[1].base, "http://pets.test:9000");
    // Health follows an address that stays.
    p.set_checked(&members.targets[0], false);
    assert!(
        !p.set_resolved(&[None, None]),
        "a failed lookup changes nothing"
    );
    assert!(p.set_resolved(&[Some(vec![a]), None]));
    assert_eq!(ids(&p), ["http://127.0.0.1:9000", "http://10.0.0.9:9000"]);
    assert!(!p.members().targets[0].available());
    // A request that picked the address that left still holds it.
    assert_eq!(&*members.targets[1].id, "http://[::1]:9000");
}
