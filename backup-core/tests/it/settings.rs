use backup_core::{Settings, SettingsPatch};
use proptest::prelude::*;

/// The documented rules (DESIGN §3), written independently of the implementation.
fn documented_rules_accept(p: &SettingsPatch) -> bool {
    let v = |x: Option<i64>| x.expect("full patch");
    let in_r = |x: i64, lo: i64, hi: i64| (lo..=hi).contains(&x);
    let total = v(p.max_concurrent_tasks);
    let kinds = [
        v(p.max_concurrent_backups),
        v(p.max_concurrent_checks),
        v(p.max_concurrent_prunes),
        v(p.max_concurrent_restores),
    ];
    let cap = v(p.max_backoff_minutes);
    let base = v(p.backoff_base_seconds);
    in_r(total, 1, 64)
        && kinds.iter().all(|&k| in_r(k, 1, 64) && k <= total)
        && in_r(v(p.cpu_quota_percent), 1, 100)
        && p.bandwidth_limit_mbps
            .expect("full patch")
            .is_none_or(|b| in_r(b, 1, 100_000))
        && in_r(v(p.max_retries), 0, 100)
        && in_r(cap, 1, 1440)
        && in_r(base, 1, 3600)
        && base <= 60 * cap
        && in_r(v(p.backoff_failure_threshold), 0, 100)
}

/// Values around every boundary, so both sides of each rule are hit often.
fn near(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        (lo - 2)..=(lo + 2),
        (hi - 2)..=(hi + 2),
        lo..=hi,
        any::<i64>(),
    ]
}

fn full_patch() -> impl Strategy<Value = SettingsPatch> {
    (
        (
            near(1, 64),
            near(1, 64),
            near(1, 64),
            near(1, 64),
            near(1, 64),
        ),
        (
            near(1, 100),
            proptest::option::of(near(1, 100_000)),
            near(0, 100),
        ),
        (near(1, 1440), near(1, 3600), near(0, 100)),
    )
        .prop_map(
            |((t, b, c, p, r), (cpu, bw, retries), (cap, base, threshold))| SettingsPatch {
                max_concurrent_tasks: Some(t),
                max_concurrent_backups: Some(b),
                max_concurrent_checks: Some(c),
                max_concurrent_prunes: Some(p),
                max_concurrent_restores: Some(r),
                cpu_quota_percent: Some(cpu),
                bandwidth_limit_mbps: Some(bw),
                max_retries: Some(retries),
                max_backoff_minutes: Some(cap),
                backoff_base_seconds: Some(base),
                backoff_failure_threshold: Some(threshold),
                source: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Validation accepts exactly the documented ranges and cross-field rules.
    #[test]
    fn validation_accepts_exactly_the_documented_settings(patch in full_patch()) {
        let result = Settings::default().apply(&patch);
        prop_assert_eq!(result.is_ok(), documented_rules_accept(&patch), "{:?} -> {:?}", patch, result);
        if let Ok(settings) = result {
            // What was accepted is what is stored, and it validates again on its own.
            prop_assert_eq!(settings.to_patch(), patch);
            prop_assert!(settings.validate().is_ok());
        }
    }

    /// A partial patch is validated after merging: the result equals validating the merge.
    #[test]
    fn partial_patches_are_validated_after_merging(base in full_patch(), patch in full_patch(), mask in any::<u16>()) {
        let Ok(current) = Settings::default().apply(&base) else { return Ok(()) };
        let pick = |bit: u16, v: Option<i64>| if mask & (1 << bit) != 0 { v } else { None };
        let partial = SettingsPatch {
            max_concurrent_tasks: pick(0, patch.max_concurrent_tasks),
            max_concurrent_backups: pick(1, patch.max_concurrent_backups),
            max_concurrent_checks: pick(2, patch.max_concurrent_checks),
            max_concurrent_prunes: pick(3, patch.max_concurrent_prunes),
            cpu_quota_percent: pick(4, patch.cpu_quota_percent),
            bandwidth_limit_mbps: if mask & (1 << 5) != 0 { patch.bandwidth_limit_mbps } else { None },
            max_retries: pick(6, patch.max_retries),
            max_backoff_minutes: pick(7, patch.max_backoff_minutes),
            backoff_base_seconds: pick(8, patch.backoff_base_seconds),
            backoff_failure_threshold: pick(9, patch.backoff_failure_threshold),
            max_concurrent_restores: pick(10, patch.max_concurrent_restores),
            source: None,
        };
        let merged = current.to_patch().merge(&partial);
        let result = current.apply(&partial);
        prop_assert_eq!(result.is_ok(), documented_rules_accept(&merged));
        if let Err(e) = result {
            let field = e.field().expect("names a field").to_owned();
            // The error names a field the patch touched whenever the patch touched one of the
            // fields in the failing rule; a field it did not touch cannot be invalid on its own.
            let touched = serde_json::to_value(partial).expect("json");
            prop_assert!(touched.get(&field).is_some(), "{field} not in {touched}");
        }
    }
}

#[test]
fn error_names_field_value_and_range() {
    let patch: SettingsPatch = serde_json::from_str(r#"{"cpuQuotaPercent": 150}"#).expect("json");
    let err = Settings::default().apply(&patch).expect_err("out of range");
    assert_eq!(err.field(), Some("cpuQuotaPercent"));
    let text = err.to_string();
    assert!(text.contains("150") && text.contains("1-100"), "{text}");
}

#[test]
fn the_field_table_names_every_setting_in_order_with_the_ranges_validation_applies() {
    let json = serde_json::to_value(Settings::default()).expect("settings serialize");
    let keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let table: Vec<&str> = backup_core::SETTING_FIELDS.iter().map(|f| f.0).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    let mut sorted_table = table.clone();
    sorted_table.sort_unstable();
    assert_eq!(sorted_keys, sorted_table, "one entry per setting");
    for (field, _, range) in backup_core::SETTING_FIELDS {
        let mut too_big = serde_json::Map::new();
        too_big.insert(field.into(), (range.max + 1).into());
        let patch: SettingsPatch =
            serde_json::from_value(serde_json::Value::Object(too_big)).expect("patch");
        let e = Settings::default()
            .apply(&patch)
            .expect_err("one past the range is refused");
        assert_eq!(e.field(), Some(field), "{e}");
        assert!(e.to_string().contains(&range.to_string()), "{e}");
    }
}
