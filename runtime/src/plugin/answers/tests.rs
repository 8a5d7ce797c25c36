use super::*;

fn answer_with(cache_control: &str) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from_static(b"{\"keys\":[]}"));
    if !cache_control.is_empty() {
        r.headers_mut()
            .insert(http::header::CACHE_CONTROL, cache_control.parse().unwrap());
    }
    r
}

fn directives(cache_control: &str) -> Directives {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::CACHE_CONTROL, cache_control.parse().unwrap());
    Directives::of(&h)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The `Age` of a hit, or `None` for a fetch.
fn hit_age(l: Lookup) -> Option<u64> {
    match l {
        Lookup::Hit(r) => Some(
            r.headers()[http::header::AGE]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        ),
        Lookup::Fetch { .. } => None,
    }
}

fn fallback_age(l: Lookup) -> Option<u64> {
    match l {
        Lookup::Fetch { fallback: Some(r) } => Some(
            r.headers()[http::header::AGE]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        ),
        other => panic!("expected a fetch with a fallback, got {other:?}"),
    }
}

#[test]
fn request_directives_are_read() {
    assert_eq!(
        directives("no-cache"),
        Directives {
            no_cache: true,
            ..Default::default()
        }
    );
    assert!(directives("max-age=0").no_cache);
    assert!(!directives("max-age=10").no_cache);
    let d = directives("max-stale=3600, stale-if-error=\"86400\"");
    assert_eq!(d.max_stale, Some(secs(3600)));
    assert_eq!(d.stale_if_error, Some(secs(86400)));
    assert_eq!(directives("MAX-STALE").max_stale, Some(MAX_KEPT));
    assert_eq!(directives("max-stale=x").max_stale, Some(Duration::ZERO));
    assert_eq!(directives("stale-if-error").stale_if_error, None);
    assert_eq!(
        Directives::of(&http::HeaderMap::new()),
        Directives::default()
    );
}

#[test]
fn answers_are_kept_as_their_origin_allows() {
    assert_eq!(
        freshness(&answer_with("public, max-age=600")),
        Some((secs(600), Duration::ZERO))
    );
    assert_eq!(
        freshness(&answer_with("")),
        Some((Duration::ZERO, Duration::ZERO))
    );
    assert_eq!(
        freshness(&answer_with("max-age=7200")),
        Some((MAX_FRESH, Duration::ZERO))
    );
    let mut aged = answer_with("max-age=600");
    aged.headers_mut()
        .insert(http::header::AGE, "100".parse().unwrap());
    assert_eq!(freshness(&aged), Some((secs(600), secs(100))));
    for no in ["no-store", "max-age=60, private", "no-cache"] {
        assert_eq!(freshness(&answer_with(no)), None, "{no}");
    }
    let mut varies = answer_with("max-age=60");
    varies
        .headers_mut()
        .insert(http::header::VARY, "accept".parse().unwrap());
    assert_eq!(freshness(&varies), None);
    let mut not_ok = answer_with("max-age=60");
    *not_ok.status_mut() = http::StatusCode::NOT_FOUND;
    assert_eq!(freshness(&not_ok), None);

    let cache = AnswerCache::default();
    let plain = Directives::default();
    let t0 = Instant::now();
    cache.store("p\0u".into(), &answer_with("max-age=7200"), &plain, t0);
    assert_eq!(
        hit_age(cache.lookup("p\0u", &plain, t0 + secs(3599))),
        Some(3599)
    );
    // Fresh at most an hour, whatever max-age says.
    assert_eq!(hit_age(cache.lookup("p\0u", &plain, t0 + secs(3601))), None);
    assert!(cache.lookup("q\0u", &plain, t0).is_fetch());

    // Without max-age, or with max-age=0, nothing is kept for a request that takes
    // only fresh answers.
    for cc in ["", "max-age=0"] {
        cache.store("p\0v".into(), &answer_with(cc), &plain, t0);
        assert_eq!(cache.len(), 1, "{cc}");
    }
    let get = http::Request::get("http://x/").body(()).unwrap();
    assert!(cacheable_request(&get));
    let with_auth = http::Request::get("http://x/")
        .header("authorization", "Bearer t")
        .body(())
        .unwrap();
    assert!(!cacheable_request(&with_auth));
    let post = http::Request::post("http://x/").body(()).unwrap();
    assert!(!cacheable_request(&post));
}

#[test]
fn no_cache_fetches_again_at_most_every_30_s() {
    let cache = AnswerCache::default();
    let no_cache = directives("no-cache");
    let t0 = Instant::now();
    cache.store(
        "k".into(),
        &answer_with("max-age=600"),
        &Directives::default(),
        t0,
    );
    assert_eq!(
        hit_age(cache.lookup("k", &no_cache, t0 + secs(10))),
        Some(10)
    );
    assert!(cache.lookup("k", &no_cache, t0 + secs(31)).is_fetch());
    // That fetch is in flight (or failed): the next no-cache within 30 s of it waits.
    assert_eq!(
        hit_age(cache.lookup("k", &no_cache, t0 + secs(32))),
        Some(32)
    );
    assert!(cache.lookup("k", &no_cache, t0 + secs(62)).is_fetch());
}

#[test]
fn max_stale_takes_answers_past_their_freshness() {
    let cache = AnswerCache::default();
    let stale = directives("max-stale=3600");
    let t0 = Instant::now();
    // No max-age: kept for a request that takes stale answers, and served with its Age.
    cache.store("k".into(), &answer_with(""), &stale, t0);
    assert_eq!(
        hit_age(cache.lookup("k", &stale, t0 + secs(3600))),
        Some(3600)
    );
    assert!(cache.lookup("k", &stale, t0 + secs(3601)).is_fetch());
    assert!(
        cache
            .lookup("k", &Directives::default(), t0 + secs(1))
            .is_fetch(),
        "a request that takes only fresh answers fetches"
    );
    // With max-age, staleness counts from the end of freshness.
    cache.store("m".into(), &answer_with("max-age=300"), &stale, t0);
    assert_eq!(
        hit_age(cache.lookup("m", &stale, t0 + secs(3900))),
        Some(3900)
    );
    assert!(cache.lookup("m", &stale, t0 + secs(3901)).is_fetch());
    // Nothing is kept past MAX_KEPT, whatever the request takes.
    cache.store("n".into(), &answer_with(""), &stale, t0);
    let any = directives("max-stale");
    assert!(hit_age(cache.lookup("n", &any, t0 + MAX_KEPT - secs(1))).is_some());
    assert!(cache.lookup("n", &any, t0 + MAX_KEPT).is_fetch());
    assert!(cache.lookup("n", &any, t0 + MAX_KEPT + secs(1)).is_fetch());
}

#[test]
fn stale_if_error_keeps_the_last_good_answer() {
    let cache = AnswerCache::default();
    let d = directives("max-stale=60, stale-if-error=86400");
    let t0 = Instant::now();
    cache.store("k".into(), &answer_with("max-age=600"), &d, t0);
    // Past max-stale: fetch, with the kept answer to fall back on.
    assert_eq!(
        fallback_age(cache.lookup("k", &d, t0 + secs(700))),
        Some(700)
    );
    // That attempt failed (nothing stored): within 30 s the kept answer is served
    // without asking the origin again; after, the origin is asked again.
    assert_eq!(hit_age(cache.lookup("k", &d, t0 + secs(720))), Some(720));
    assert_eq!(
        fallback_age(cache.lookup("k", &d, t0 + secs(731))),
        Some(731)
    );
    // no-cache with stale-if-error: the same, the kept answer as the fallback.
    let refetch = directives("no-cache, stale-if-error=86400");
    assert_eq!(
        fallback_age(cache.lookup("k", &refetch, t0 + secs(800))),
        Some(800)
    );
    // Past stale-if-error's window there is no fallback.
    let short = directives("stale-if-error=10");
    assert!(matches!(
        cache.lookup("k", &short, t0 + secs(900)),
        Lookup::Fetch { fallback: None }
    ));
    // A new answer replaces the kept one; one that may not be kept removes it.
    cache.store("k".into(), &answer_with("max-age=600"), &d, t0 + secs(1000));
    assert_eq!(hit_age(cache.lookup("k", &d, t0 + secs(1001))), Some(1));
    cache.store("k".into(), &answer_with("no-store"), &d, t0 + secs(1002));
    assert!(matches!(
        cache.lookup("k", &d, t0 + secs(1003)),
        Lookup::Fetch { fallback: None }
    ));
}

#[test]
fn the_cache_is_bounded() {
    let cache = AnswerCache::default();
    let t0 = Instant::now();
    // However small the answers, the cache keeps at most MAX_CACHED_ENTRIES.
    for i in 0..MAX_CACHED_ENTRIES + 100 {
        cache.store(
            format!("p\0u{i}"),
            &answer_with("max-age=60"),
            &Directives::default(),
            t0,
        );
        assert!(cache.len() <= MAX_CACHED_ENTRIES, "{}", cache.len());
    }
    let big = http::Response::new(Bytes::from(vec![b'x'; MAX_CACHED_BODY + 1]));
    cache.store("big".into(), &big, &directives("max-stale"), t0);
    assert!(cache.lookup("big", &directives("max-stale"), t0).is_fetch());
}

impl Lookup {
    fn is_fetch(&self) -> bool {
        matches!(self, Lookup::Fetch { .. })
    }
}

#[test]
fn a_request_that_waited_takes_the_answer_fetched_meanwhile() {
    let cache = AnswerCache::default();
    let t0 = Instant::now();
    cache.store(
        "k".into(),
        &answer_with("max-age=60"),
        &Directives::default(),
        t0,
    );
    assert!(
        cache
            .fetched_since("k", t0 + secs(1), t0 + secs(2))
            .is_none()
    );
    cache.store(
        "k".into(),
        &answer_with("max-age=60"),
        &Directives::default(),
        t0 + secs(3),
    );
    let r = cache
        .fetched_since("k", t0 + secs(1), t0 + secs(4))
        .unwrap();
    assert_eq!(r.headers()[http::header::AGE], "1");
    assert!(cache.fetched_since("other", t0, t0).is_none());
}
