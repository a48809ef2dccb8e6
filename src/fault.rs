//! Test-only fault injection, so the integration tests can prove what the
//! gateway does when a stage dies or hangs. `PLANTGATE_TEST_FAULT=KIND:STAGE`
//! (e.g. `panic:edge`, `wedge:edge`) is honoured only in debug builds; a
//! release binary ignores it.

/// Whether the fault `kind` is injected into `stage`.
pub fn injected(kind: &str, stage: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var("PLANTGATE_TEST_FAULT").is_ok_and(|v| {
            v.split_once(':')
                .is_some_and(|(k, s)| k == kind && s == stage)
        })
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = (kind, stage);
        false
    }
}
