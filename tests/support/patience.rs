//! How long a liveness wait in a test may take.

use std::time::Duration;

/// How many times its nominal wait a liveness wait gets before it fails:
/// `ORDINAL_E2E_PATIENCE` (default 3). The nominal waits fit an idle
/// 2-core machine; CI shares its machine, where a step can take several
/// times as long without anything being wrong. A wait that ends early costs
/// nothing, so only a failing run takes longer. Safety assertions (what is
/// lost, who is writable) never depend on it.
pub fn patient(nominal: Duration) -> Duration {
    let factor = std::env::var("ORDINAL_E2E_PATIENCE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|f| *f >= 1.0)
        .unwrap_or(3.0);
    nominal.mul_f64(factor)
}
