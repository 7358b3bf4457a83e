//! The devcluster smoke test (`smoke.sh`) as a cargo test. It starts a real
//! control plane and takes about a minute, so it only runs when asked:
//!
//!   DEVCLUSTER_SMOKE=1 cargo test -p devcluster --test smoke -- --nocapture

use std::process::Command;

#[test]
fn smoke() {
    if std::env::var_os("DEVCLUSTER_SMOKE").is_none() {
        eprintln!("skipped: set DEVCLUSTER_SMOKE=1 to run devcluster/smoke.sh");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/smoke.sh");
    let status = Command::new("bash")
        .arg(script)
        .status()
        .expect("running smoke.sh");
    assert!(status.success(), "smoke.sh failed: {status}");
}
