//! The signals that stop `serve` (and `mock`): SIGTERM and SIGINT, installed before the process
//! says it is ready. A handler installed only when it is first awaited leaves a window in which
//! the default action still applies: a service manager's SIGTERM sent right after `READY=1`
//! would kill the process without a drain and without `STOPPING=1`.

/// Installed stop signals; [`StopSignals::wait`] resolves when one arrives.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers now (inside the runtime).
    pub fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for SIGTERM or SIGINT (Ctrl-C where there are no Unix signals, or where they could
    /// not be installed).
    pub async fn wait(self) {
        #[cfg(unix)]
        {
            let StopSignals { term, int } = self;
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Some(mut one), None) | (None, Some(mut one)) => {
                    one.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
