//! Waiting for the process to be asked to stop: SIGTERM (what Kubernetes
//! sends a pod's containers) or SIGINT. Used by the operator and by the
//! long-running binlog archiver.

/// Returns when SIGTERM or SIGINT arrives (only SIGINT where SIGTERM cannot
/// be listened for).
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
