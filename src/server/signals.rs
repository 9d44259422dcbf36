//! The process's signals: SIGTERM and SIGINT ask for shutdown, SIGHUP for a reload. Each is
//! taken over from its default action (ending the process) when installed, so install them
//! before the listener starts: a signal sent right after "listening" (a reload script, an
//! orchestrator stopping a pod that just started) then gets its graceful handling.

#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};

/// One signal taken over; `None` if the kernel refused (it keeps its default action).
#[cfg(unix)]
fn take(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
        .ok()
}

/// The next delivery of `sig`; never, if it could not be taken over.
#[cfg(unix)]
async fn next(sig: &mut Option<Signal>) {
    let delivered = match sig {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !delivered {
        std::future::pending::<()>().await;
    }
}

/// SIGTERM and SIGINT. Install on the runtime, before the listener starts.
pub struct ShutdownSignal {
    #[cfg(unix)]
    term: Option<Signal>,
    #[cfg(unix)]
    int: Option<Signal>,
}

impl ShutdownSignal {
    pub fn install() -> Self {
        ShutdownSignal {
            #[cfg(unix)]
            term: take(SignalKind::terminate(), "SIGTERM"),
            #[cfg(unix)]
            int: take(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves on SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.int) => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
    }
}

/// SIGHUP. Install on the runtime, before the listener starts.
pub struct ReloadSignal {
    #[cfg(unix)]
    hup: Option<Signal>,
}

impl ReloadSignal {
    pub fn install() -> Self {
        ReloadSignal {
            #[cfg(unix)]
            hup: take(SignalKind::hangup(), "SIGHUP; reload by signal is off"),
        }
    }

    /// Resolves on each SIGHUP; never where there is none.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        next(&mut self.hup).await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Once installed, a SIGHUP is delivered to `recv`, not to the default action (which would
    /// end this test process), also when it arrives before anyone waits.
    #[tokio::test]
    async fn a_signal_before_the_wait_is_kept() {
        let mut hup = ReloadSignal::install();
        // SAFETY: sends SIGHUP to this process, whose handler is now tokio's.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
        tokio::time::timeout(Duration::from_secs(5), hup.recv())
            .await
            .expect("the SIGHUP was seen");
    }
}
