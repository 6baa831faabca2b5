//! The suites' rule for tests that cannot run here: outside CI they skip,
//! saying why; under `CI` (set, and not empty, `0` or `false`) they fail.

/// Whether this run is CI's: `CI` set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Called where a test cannot run: panics with `reason` under CI, else prints
/// `skipped: <reason>` (the caller then returns).
///
/// # Panics
/// Under CI, always (at the caller's line).
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    assert!(
        !in_ci(),
        "CI=true: a test that cannot run here fails: {reason}"
    );
    println!("skipped: {reason}");
}
