//! Counts panics raised outside the test code itself (in the gateway, or
//! in hyper, h2 or rustls under it), so an attack test can assert that
//! attacker bytes never made anything panic: a panic in a spawned
//! connection task only ends that task and would otherwise go unnoticed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static OUTSIDE_TESTS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Starts counting (once per test binary); the default hook still prints.
pub fn watch() {
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info.location().is_some_and(|l| l.file().starts_with("tests/"));
            if !in_tests {
                OUTSIDE_TESTS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Panics outside the test code since `watch` (in any test of this binary).
pub fn outside_tests() -> usize {
    OUTSIDE_TESTS.load(Ordering::SeqCst)
}
