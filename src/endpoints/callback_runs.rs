//! One run per login callback. WeChat can call the callback twice for one login, and a
//! browser that navigates again drops the first answer (and the session cookie in it). The
//! second callback for a state that is still being finished waits for the first run and gets
//! its answer, cookies included. A run goes on in a task of its own, so its answer is ready
//! even when the request that started it has gone (hyper drops a request's future when its
//! client goes away). A run is known only while it is in progress: a repeat after it ended is
//! what the "completed" login cookie is for, and never gets a session cookie.
//!
//! Only a request that proved the state is its browser's (the login cookie's binding) gets
//! here, and each run is one pending login, taken once: the map holds at most as many runs as
//! there are logins being finished, for as long as a code exchange takes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use crate::common::http_util::Body;

/// How a callback run ended, for every request that waited on it.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The answer of the run: the login's redirect with its cookies, the next round, a page.
    Answer(Answer),
    /// No login was pending under the state (already finished, or never started here): each
    /// request decides by its own cookies.
    NoPending,
}

/// A gateway answer (headers and a body in memory), to be sent as often as it is asked for.
#[derive(Clone)]
pub(crate) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// The answer `r` carries. The gateway's own answers are whole in memory: nothing waits.
    pub(crate) fn of(r: Response<Body>) -> Answer {
        let (parts, body) = r.into_parts();
        // A `Full` body is one frame, ready at once.
        let body = http_body_util::BodyExt::collect(body)
            .now_or_never()
            .and_then(Result::ok)
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The answer, once more.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut r = Response::new(Full::new(self.body.clone()));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

type Run = Shared<BoxFuture<'static, Outcome>>;

/// Forgets a run when dropped: at the end of its task.
struct Forget(Arc<CallbackRuns>, String);

impl Drop for Forget {
    fn drop(&mut self) {
        self.0
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// The callback runs in progress, by state nonce.
#[derive(Default)]
pub(crate) struct CallbackRuns {
    runs: Mutex<HashMap<String, Run>>,
}

impl CallbackRuns {
    /// The run for `nonce`: the one in progress (and `run` is dropped unpolled), or `run`
    /// started now in a task of its own.
    pub(crate) fn join_or_start(
        self: &Arc<Self>,
        nonce: &str,
        run: impl Future<Output = Outcome> + Send + 'static,
    ) -> Run {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = runs.get(nonce) {
            return r.clone();
        }
        let (me, key) = (self.clone(), nonce.to_owned());
        // The entry goes when the run ends. It is inserted below under this same lock, which
        // the task must take first: it cannot go before it is there.
        let task = tokio::spawn(async move {
            // Removed however the run ends, a panic included.
            let _forget = Forget(me, key);
            run.await
        });
        let run: Run = async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a login callback's run failed");
                Outcome::NoPending
            })
        }
        .boxed()
        .shared();
        runs.insert(nonce.to_owned(), run.clone());
        run
    }

    /// Runs in progress (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn answer(text: &'static str) -> Outcome {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().append("set-cookie", "a=1".parse().unwrap());
        Outcome::Answer(Answer::of(r))
    }

    #[tokio::test]
    async fn a_second_caller_waits_for_the_first_run_and_gets_its_answer() {
        let runs = Arc::new(CallbackRuns::default());
        let started = Arc::new(AtomicUsize::new(0));
        let start = |started: Arc<AtomicUsize>| async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer("first")
        };
        let a = runs.join_or_start("n1", start(started.clone()));
        let b = runs.join_or_start("n1", start(started.clone()));
        let other = runs.join_or_start("n2", start(started.clone()));
        // The first caller goes away: its run goes on, and the second gets the answer.
        drop(a);
        let Outcome::Answer(got) = b.await else {
            panic!("no answer")
        };
        let r = got.response();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["set-cookie"], "a=1");
        assert!(matches!(other.await, Outcome::Answer(_)));
        assert_eq!(started.load(Ordering::SeqCst), 2, "one run per nonce");
        // Ended runs are forgotten: a later call starts anew.
        tokio::task::yield_now().await;
        assert_eq!(runs.len(), 0);
        let c = runs.join_or_start("n1", async { Outcome::NoPending });
        assert!(matches!(c.await, Outcome::NoPending));
    }

    #[tokio::test]
    async fn a_run_that_panics_ends_as_no_pending_login() {
        let runs = Arc::new(CallbackRuns::default());
        let r = runs.join_or_start("n", async { panic!("boom") });
        assert!(matches!(r.await, Outcome::NoPending));
        tokio::task::yield_now().await;
        assert_eq!(runs.len(), 0);
    }
}
