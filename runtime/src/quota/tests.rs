//! Period boundaries in UTC, rollover and persistence, with time chosen by the test.

use super::*;

// Unix times of a few UTC instants.
const LEAP_DAY_1PM: i64 = 1_709_211_600; // 2024-02-29 13:00, a Thursday
const MARCH_1_2024: i64 = 1_709_251_200;
const FEB_1_2024: i64 = 1_706_745_600;
const NEW_YEARS_EVE_LAST_SECOND: i64 = 1_735_689_599; // 2024-12-31 23:59:59
const JAN_1_2025: i64 = 1_735_689_600;
const MONDAY: i64 = 1_767_571_200; // 2026-01-05 00:00
const SUNDAY_NOON: i64 = 1_768_132_800; // 2026-01-11 12:00
const NEXT_MONDAY: i64 = 1_768_176_000; // 2026-01-12 00:00

#[test]
fn days_start_at_utc_midnight() {
    assert_eq!(
        period_start(QuotaPeriod::Day, LEAP_DAY_1PM),
        MARCH_1_2024 - DAY
    );
    assert_eq!(period_end(QuotaPeriod::Day, LEAP_DAY_1PM), MARCH_1_2024);
    assert_eq!(period_start(QuotaPeriod::Day, JAN_1_2025), JAN_1_2025);
    assert_eq!(period_start(QuotaPeriod::Day, -43_200), -DAY);
}

#[test]
fn weeks_start_on_monday() {
    assert_eq!(period_start(QuotaPeriod::Week, MONDAY), MONDAY);
    assert_eq!(period_start(QuotaPeriod::Week, SUNDAY_NOON), MONDAY);
    assert_eq!(period_end(QuotaPeriod::Week, SUNDAY_NOON), NEXT_MONDAY);
    assert_eq!(
        period_start(QuotaPeriod::Week, MONDAY - 1),
        MONDAY - 7 * DAY
    );
    // 1969-12-29 was a Monday.
    assert_eq!(period_start(QuotaPeriod::Week, 0), -259_200);
}

#[test]
fn months_start_on_the_first_including_leap_februaries() {
    assert_eq!(period_start(QuotaPeriod::Month, LEAP_DAY_1PM), FEB_1_2024);
    assert_eq!(period_end(QuotaPeriod::Month, LEAP_DAY_1PM), MARCH_1_2024);
    assert_eq!(
        period_end(QuotaPeriod::Month, NEW_YEARS_EVE_LAST_SECOND),
        JAN_1_2025
    );
    assert_eq!(period_start(QuotaPeriod::Month, JAN_1_2025), JAN_1_2025);
    assert_eq!(period_start(QuotaPeriod::Month, -43_200), -2_678_400);
}

#[test]
fn calendar_round_trips_for_every_day_of_four_centuries() {
    for days in -146_097..146_097 {
        let (y, m, d) = civil_date(days);
        assert_eq!(days_since_epoch(y, m, d), days, "{y}-{m}-{d}");
    }
}

fn quotas(limit: u64, period: QuotaPeriod, file: Option<PathBuf>) -> Quotas {
    Quotas::new(
        vec![
            ("alice".into(), Some(QuotaRule { limit, period })),
            ("free".into(), None),
        ],
        file,
    )
}

#[test]
fn a_quota_runs_out_and_rolls_over_with_the_period() {
    let q = quotas(3, QuotaPeriod::Day, None);
    let alice = KeyId(0);
    let t = NEW_YEARS_EVE_LAST_SECOND - 10;
    let left: Vec<_> = (0..3)
        .map(|_| q.consume(alice, t).unwrap().unwrap().remaining)
        .collect();
    assert_eq!(left, [2, 1, 0]);
    let refused = q.consume(alice, t).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(11));
    assert_eq!(&*refused.key, "alice");
    assert!(q.check(alice, NEW_YEARS_EVE_LAST_SECOND).is_err());
    // A new UTC day: a fresh quota.
    assert!(q.check(alice, JAN_1_2025).is_ok());
    assert_eq!(q.consume(alice, JAN_1_2025).unwrap().unwrap().remaining, 2);
    // Keys without a quota are never counted.
    assert_eq!(q.consume(KeyId(1), t), Ok(None));
    assert_eq!(q.consume(KeyId(9), t), Ok(None));
}

#[test]
fn check_counts_nothing() {
    let q = quotas(1, QuotaPeriod::Week, None);
    for _ in 0..5 {
        assert!(q.check(KeyId(0), MONDAY).is_ok());
    }
    assert!(q.consume(KeyId(0), SUNDAY_NOON).is_ok());
    assert!(q.check(KeyId(0), SUNDAY_NOON).is_err());
    assert!(q.check(KeyId(0), NEXT_MONDAY).is_ok());
}

#[test]
fn counters_survive_a_restart_within_the_period_only() {
    let dir = std::env::temp_dir().join(format!("weir-quota-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("quotas.json");
    let _ = std::fs::remove_file(&path);

    let q = quotas(5, QuotaPeriod::Month, Some(path.clone()));
    assert_eq!(q.load(FEB_1_2024), Ok(0), "a missing file is an empty one");
    assert!(!q.flush().unwrap(), "nothing to write yet");
    for _ in 0..3 {
        q.consume(KeyId(0), FEB_1_2024).unwrap();
    }
    assert!(q.flush().unwrap());
    assert!(!q.flush().unwrap(), "unchanged since the last write");
    assert!(!dir.join("quotas.json.tmp").exists());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        r#"{"version":1,"counters":{"alice":{"period":"MONTH","start":1706745600,"used":3}}}"#
    );

    // Same month: the count carries on.
    let again = quotas(5, QuotaPeriod::Month, Some(path.clone()));
    assert_eq!(again.load(LEAP_DAY_1PM), Ok(1));
    assert_eq!(
        again
            .consume(KeyId(0), LEAP_DAY_1PM)
            .unwrap()
            .unwrap()
            .remaining,
        1
    );
    // Next month: the old count is ignored.
    let later = quotas(5, QuotaPeriod::Month, Some(path.clone()));
    assert_eq!(later.load(MARCH_1_2024), Ok(0));
    assert_eq!(
        later
            .consume(KeyId(0), MARCH_1_2024)
            .unwrap()
            .unwrap()
            .remaining,
        4
    );
    // A plan whose period changed does not inherit the count.
    let daily = quotas(5, QuotaPeriod::Day, Some(path.clone()));
    assert_eq!(daily.load(FEB_1_2024), Ok(0));

    std::fs::write(&path, "not json").unwrap();
    assert!(
        quotas(5, QuotaPeriod::Month, Some(path))
            .load(FEB_1_2024)
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn counts_carry_over_to_quotas_compiled_from_the_same_state() {
    let state = Arc::new(QuotaState::default());
    let rule = Some(QuotaRule {
        limit: 3,
        period: QuotaPeriod::Day,
    });
    let before = Quotas::with_state(vec![("alice".into(), rule)], None, &state);
    before.consume(KeyId(0), JAN_1_2025).unwrap();
    // A reload that moved alice to another index keeps her count.
    let after = Quotas::with_state(
        vec![("bob".into(), rule), ("alice".into(), rule)],
        None,
        &state,
    );
    let left = after.consume(KeyId(1), JAN_1_2025).unwrap().unwrap();
    assert_eq!(left.remaining, 1);
    assert_eq!(
        after
            .consume(KeyId(0), JAN_1_2025)
            .unwrap()
            .unwrap()
            .remaining,
        2
    );
}
