use std::collections::HashMap;

use super::*;

/// The issuer's answers by URL, in turn (the last one repeats), and what was asked;
/// and the values kept, with their seconds.
#[derive(Default)]
struct Issuer {
    answers: HashMap<String, Vec<Result<Answer, String>>>,
    asked: Vec<(String, String)>,
    kept: HashMap<String, (Vec<u8>, u64)>,
}

impl Issuer {
    fn answers(mut self, url: &str, answers: Vec<Result<Answer, String>>) -> Self {
        self.answers.insert(url.into(), answers);
        self
    }
}

impl Http for Issuer {
    fn get(&mut self, url: &str, cache_control: &str) -> Result<Answer, String> {
        self.asked.push((url.into(), cache_control.into()));
        let list = self.answers.get_mut(url).ok_or("no such URL")?;
        if list.len() > 1 {
            list.remove(0)
        } else {
            list[0].clone()
        }
    }

    fn kept(&mut self, key: &str) -> Option<Vec<u8>> {
        self.kept.get(key).map(|(v, _)| v.clone())
    }

    fn keep(&mut self, key: &str, value: &[u8], seconds: u64) {
        self.kept.insert(key.into(), (value.to_vec(), seconds));
    }
}

fn ok(body: &str, max_age: Option<u64>, age: u64) -> Result<Answer, String> {
    Ok(Answer {
        status: 200,
        max_age,
        age,
        body: body.as_bytes().to_vec(),
    })
}

const DISCOVERY: &str = "https://idp.example/.well-known/openid-configuration";
const DOC: &str = r#"{"issuer":"https://idp.example","jwks_uri":"https://keys.example/jwks"}"#;
const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}"#;
const KEEP: &str = "max-stale=3600, stale-if-error=86400";
const AGAIN: &str = "no-cache, stale-if-error=86400";

#[test]
fn lifetimes_are_clamped_to_five_minutes_and_an_hour() {
    assert_eq!(lifetime(None), 3600);
    assert_eq!(lifetime(Some(0)), 300);
    assert_eq!(lifetime(Some(60)), 300);
    assert_eq!(lifetime(Some(900)), 900);
    assert_eq!(lifetime(Some(86400)), 3600);
}

#[test]
fn discovery_then_jwks_taking_kept_answers() {
    let mut issuer = Issuer::default()
        .answers(DISCOVERY, vec![ok(DOC, Some(86400), 0)])
        .answers("https://keys.example/jwks", vec![ok(JWKS, Some(60), 200)]);
    let keys = Remote {
        issuer: "https://idp.example/",
        jwks_uri: None,
        http: &mut issuer,
    }
    .keys(false);
    assert!(
        keys.is_err(),
        "discovery names another issuer (trailing slash)"
    );
    issuer.asked.clear();
    let keys = Remote {
        issuer: "https://idp.example",
        jwks_uri: None,
        http: &mut issuer,
    }
    .keys(false)
    .unwrap();
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    // Age 200 is within the 5-min floor of max-age=60: no second request.
    assert_eq!(
        issuer.asked,
        [
            (DISCOVERY.to_owned(), KEEP.to_owned()),
            ("https://keys.example/jwks".to_owned(), KEEP.to_owned())
        ]
    );
}

#[test]
fn a_kept_answer_past_its_lifetime_is_asked_for_again() {
    let url = "https://keys.example/jwks";
    for (max_age, age, again) in [
        (None, 3599, false),
        (None, 3601, true),
        (Some(60), 301, true),
        (Some(600), 599, false),
        (Some(600), 601, true),
        (Some(7200), 3601, true),
    ] {
        let mut issuer =
            Issuer::default().answers(url, vec![ok(JWKS, max_age, age), ok(JWKS, max_age, 0)]);
        Remote {
            issuer: "x",
            jwks_uri: Some(url),
            http: &mut issuer,
        }
        .keys(false)
        .unwrap();
        let asked: Vec<&str> = issuer.asked.iter().map(|(_, cc)| cc.as_str()).collect();
        let want: &[&str] = if again { &[KEEP, AGAIN] } else { &[KEEP] };
        assert_eq!(asked, want, "max-age {max_age:?}, age {age}");
    }
}

#[test]
fn refresh_asks_again_and_failures_are_errors() {
    let url = "https://keys.example/jwks";
    let mut issuer = Issuer::default().answers(url, vec![ok(JWKS, None, 0)]);
    Remote {
        issuer: "x",
        jwks_uri: Some(url),
        http: &mut issuer,
    }
    .keys(true)
    .unwrap();
    assert_eq!(issuer.asked, [(url.to_owned(), AGAIN.to_owned())]);

    let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(MAX_DOCUMENT));
    for (answer, why) in [
        (Err("ConnectionRefused".to_owned()), "ConnectionRefused"),
        (
            Ok(Answer {
                status: 503,
                ..Answer::default()
            }),
            "answered 503",
        ),
        (ok(&big, None, 0), "over the 150000 allowed"),
        (ok("{\"keys\": 1}", None, 0), "not a JWKS document"),
    ] {
        let mut issuer = Issuer::default().answers(url, vec![answer]);
        let e = Remote {
            issuer: "x",
            jwks_uri: Some(url),
            http: &mut issuer,
        }
        .keys(false)
        .unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    // Exactly the cap is fine.
    let pad = MAX_DOCUMENT - r#"{"keys":[],"p":""}"#.len();
    let at_cap = format!(r#"{{"keys":[],"p":"{}"}}"#, "x".repeat(pad));
    assert_eq!(at_cap.len(), MAX_DOCUMENT);
    let mut issuer = Issuer::default().answers(url, vec![ok(&at_cap, None, 0)]);
    assert!(
        Remote {
            issuer: "x",
            jwks_uri: Some(url),
            http: &mut issuer
        }
        .keys(false)
        .is_ok()
    );
}

/// The keys of an issuer whose config names its `jwks_uri`.
fn keys_at(issuer: &mut Issuer, jwks_uri: &str, refresh: bool) -> Result<Vec<Jwk>, String> {
    Remote {
        issuer: "x",
        jwks_uri: Some(jwks_uri),
        http: issuer,
    }
    .keys(refresh)
}

#[test]
fn the_key_set_is_kept_for_what_is_left_of_its_lifetime_and_discoverys() {
    let jwks = "https://keys.example/jwks";
    // The key set is fresh for 900 - 100 s; discovery for 3600 - 3000 = 600 s.
    let mut issuer = Issuer::default()
        .answers(DISCOVERY, vec![ok(DOC, None, 3000)])
        .answers(jwks, vec![ok(JWKS, Some(900), 100)]);
    let mut remote = Remote {
        issuer: "https://idp.example",
        jwks_uri: None,
        http: &mut issuer,
    };
    remote.keys(false).unwrap();
    // Later calls read the kept set: no requests.
    let keys = remote.keys(false).unwrap();
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    assert_eq!(issuer.asked.len(), 2);
    assert_eq!(
        issuer.kept[KEPT_JWKS],
        (JWKS.as_bytes().to_vec(), 600),
        "the shorter of the two lifetimes left"
    );

    // A refresh asks the gateway, whatever is kept, and keeps what it answers.
    let other = r#"{"keys":[{"kty":"RSA","kid":"k2","n":"AQAB","e":"AQAB"}]}"#;
    issuer
        .answers
        .insert(jwks.into(), vec![ok(other, Some(900), 0)]);
    issuer.asked.clear();
    let keys = keys_at(&mut issuer, jwks, true).unwrap();
    assert_eq!(keys[0].kid.as_deref(), Some("k2"));
    assert_eq!(issuer.asked, [(jwks.to_owned(), AGAIN.to_owned())]);
    assert_eq!(issuer.kept[KEPT_JWKS], (other.as_bytes().to_vec(), 900));

    // A stale answer (the issuer down, the gateway's last good one) is used, not kept.
    let mut issuer = Issuer::default().answers(jwks, vec![ok(JWKS, None, 4000)]);
    keys_at(&mut issuer, jwks, false).unwrap();
    assert!(issuer.kept.is_empty());
    // What is kept but unreadable is fetched again.
    issuer
        .kept
        .insert(KEPT_JWKS.into(), (b"not json".to_vec(), 60));
    issuer.answers.insert(jwks.into(), vec![ok(JWKS, None, 0)]);
    issuer.asked.clear();
    keys_at(&mut issuer, jwks, false).unwrap();
    assert_eq!(issuer.asked.len(), 1);
    assert_eq!(issuer.kept[KEPT_JWKS], (JWKS.as_bytes().to_vec(), 3600));
}
