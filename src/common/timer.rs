//! A coarse timer for the per-request timeouts: hyper's header-read timeout and the upstream
//! response timeout. One per worker thread, [`TICK`] resolution.
//!
//! Every request arms and disarms both timeouts, and almost none of them ever fires. With tokio's
//! timer each arm reads the clock and inserts an entry into the runtime's timer wheel, and each
//! disarm takes it out again: about 1 100 of the 47 000 instructions of a proxied request
//! (`bench/run.sh instructions`). Here a timeout reads an atomic tick counter instead of the
//! clock, and arming it is one insert into a slab under an uncontended lock (about 450).
//!
//! A driver task advances the counter every tick and wakes the sleepers that are due. A sleeper
//! fires at most about two ticks late. It is counted from the tick count, which lags the clock by
//! as much as the driver task runs late on a busy worker (milliseconds), so it can fire that much
//! early. Both are nothing next to timeouts counted in seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Resolution of the worker timers.
pub const TICK: Duration = Duration::from_millis(100);

struct Sleeper {
    /// The tick at which it is due.
    due: u64,
    /// Taken when the driver wakes it.
    waker: Option<Waker>,
}

struct Inner {
    origin: Instant,
    tick_us: u64,
    /// Whole ticks since `origin`, as of the driver's last round.
    now: AtomicU64,
    sleepers: Mutex<slab::Slab<Sleeper>>,
}

impl Inner {
    fn ticks_at(&self, t: Instant) -> u64 {
        micros(t.saturating_duration_since(self.origin)) / self.tick_us
    }

    fn sleepers(&self) -> std::sync::MutexGuard<'_, slab::Slab<Sleeper>> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first tick at which at least `d` has passed since now, whatever part of the current
    /// tick has gone by already.
    fn due_after(&self, d: Duration) -> u64 {
        let ticks = micros(d).div_ceil(self.tick_us);
        self.now
            .load(Ordering::Acquire)
            .saturating_add(ticks)
            .saturating_add(1)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A worker's timer: cheap to clone, used from the worker's runtime.
#[derive(Clone)]
pub struct CoarseTimer {
    inner: Arc<Inner>,
}

impl CoarseTimer {
    /// A timer with [`TICK`] resolution; its driver runs on the current tokio runtime and ends
    /// when the last clone of the timer is dropped.
    pub fn start() -> CoarseTimer {
        Self::with_tick(TICK)
    }

    /// Like [`CoarseTimer::start`] with another resolution (tests).
    pub fn with_tick(tick: Duration) -> CoarseTimer {
        let tick_us = micros(tick).max(1);
        let inner = Arc::new(Inner {
            origin: Instant::now(),
            tick_us,
            now: AtomicU64::new(0),
            sleepers: Mutex::new(slab::Slab::new()),
        });
        tokio::spawn(drive(
            Arc::downgrade(&inner),
            Duration::from_micros(tick_us),
        ));
        CoarseTimer { inner }
    }

    /// The current time, to within a tick (no clock read).
    pub fn now(&self) -> Instant {
        let ticks = self.inner.now.load(Ordering::Acquire);
        self.inner.origin + Duration::from_micros(ticks.saturating_mul(self.inner.tick_us))
    }

    /// Resolves once at least `d` has passed.
    pub fn sleep(&self, d: Duration) -> CoarseSleep {
        self.sleep_to(self.inner.due_after(d))
    }

    /// Resolves once `deadline` has passed.
    pub fn sleep_until(&self, deadline: Instant) -> CoarseSleep {
        // The first whole tick at or after the deadline, plus one: a deadline computed from the
        // coarse `now()` may lie up to a tick before the clock.
        let us = micros(deadline.saturating_duration_since(self.inner.origin));
        self.sleep_to(us.div_ceil(self.inner.tick_us).saturating_add(1))
    }

    fn sleep_to(&self, due: u64) -> CoarseSleep {
        CoarseSleep {
            inner: self.inner.clone(),
            due,
            key: None,
            waker: None,
        }
    }

    /// The driver's tick count: the coarse clock as a number (one atomic load).
    pub fn ticks(&self) -> u64 {
        self.inner.now.load(Ordering::Acquire)
    }

    /// Whole ticks in `d`, rounded up.
    pub fn ticks_in(&self, d: Duration) -> u64 {
        micros(d).div_ceil(self.inner.tick_us)
    }

    /// Resolves once the tick count reaches `tick`.
    pub fn sleep_until_tick(&self, tick: u64) -> CoarseSleep {
        self.sleep_to(tick)
    }

    /// `fut`, or [`Elapsed`] if `d` passes first.
    pub fn timeout<F: Future>(&self, d: Duration, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            sleep: self.sleep(d),
        }
    }

    /// Sleepers registered with the driver (tests).
    pub fn pending(&self) -> usize {
        self.inner.sleepers().len()
    }
}

pin_project_lite::pin_project! {
    /// See [`CoarseTimer::timeout`].
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: CoarseSleep,
    }
}

/// A [`Timeout`] ran out.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

/// Advance the tick count every tick; wake the sleepers that are due.
async fn drive(weak: Weak<Inner>, tick: Duration) {
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.ticks_at(Instant::now());
        inner.now.store(now, Ordering::Release);
        for (_, s) in inner.sleepers().iter_mut() {
            if s.due <= now {
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }
}

/// A sleep on a [`CoarseTimer`]. Registered with the driver only once polled, and taken out
/// when dropped.
pub struct CoarseSleep {
    inner: Arc<Inner>,
    due: u64,
    key: Option<usize>,
    /// The waker registered with the driver: polled again by the same task (the usual case,
    /// e.g. a connection's idle watch polled on every wake of its connection), the sleep
    /// takes no lock.
    waker: Option<Waker>,
}

impl CoarseSleep {
    fn is_due(&self) -> bool {
        self.inner.now.load(Ordering::Acquire) >= self.due
    }

    fn deregister(&mut self) {
        if let Some(k) = self.key.take() {
            self.inner.sleepers().try_remove(k);
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.is_due() {
            this.deregister();
            return Poll::Ready(());
        }
        // The driver takes a registered waker only once the sleep is due, which the check
        // above sees: a waker still registered is this one.
        if this.key.is_some() && this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let mut sleepers = this.inner.sleepers();
        match this.key.and_then(|k| sleepers.get_mut(k)) {
            Some(s) => match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            },
            None => {
                this.key = Some(sleepers.insert(Sleeper {
                    due: this.due,
                    waker: Some(cx.waker().clone()),
                }));
            }
        }
        drop(sleepers);
        this.waker = Some(cx.waker().clone());
        // The driver may have ticked (on another thread) while this registered.
        if this.is_due() {
            this.deregister();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseTimer::sleep(self, duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseTimer::sleep_until(self, deadline))
    }

    fn now(&self) -> Instant {
        CoarseTimer::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn fires_about_on_time() {
        // Early by at most the driver's lateness: on a loaded machine (the test suite runs in
        // parallel) that can be a few ticks, hence the slack.
        let slack = T * 5;
        let timer = CoarseTimer::with_tick(T);
        for d in [
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(300),
        ] {
            let started = Instant::now();
            timer.sleep(d).await;
            let took = started.elapsed();
            assert!(took + slack >= d, "{d:?}: fired after {took:?}");
            assert!(took < d + T * 10, "{d:?}: fired only after {took:?}");
        }
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn deadline_from_coarse_now_is_kept() {
        let timer = CoarseTimer::with_tick(T);
        tokio::time::sleep(T * 3 / 2).await;
        let started = Instant::now();
        let d = Duration::from_millis(300);
        timer.sleep_until(timer.now() + d).await;
        let took = started.elapsed();
        assert!(took + T * 5 >= d, "fired after {took:?}");
        assert!(took < d + T * 10, "fired only after {took:?}");
    }

    #[tokio::test]
    async fn a_dropped_sleep_leaves_nothing_registered() {
        let timer = CoarseTimer::with_tick(T);
        let never = async {
            std::future::pending::<()>().await;
        };
        let r = tokio::time::timeout(Duration::from_millis(30), async {
            tokio::select! {
                _ = timer.sleep(Duration::from_secs(3600)) => {},
                _ = never => {},
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(timer.pending(), 0);

        // Armed and disarmed many times, as per request: the slab does not grow.
        for _ in 0..1000 {
            let s = timer.sleep(Duration::from_secs(10));
            let mut s = std::pin::pin!(s);
            let waker = std::task::Waker::noop();
            assert!(s
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending());
        }
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn polled_again_by_the_same_task_then_by_another() {
        let timer = CoarseTimer::with_tick(T);
        let s = timer.sleep(Duration::from_millis(100));
        let mut s = std::pin::pin!(s);
        let noop = Waker::noop();
        for _ in 0..3 {
            assert!(s.as_mut().poll(&mut Context::from_waker(noop)).is_pending());
        }
        assert_eq!(timer.pending(), 1);
        // Awaited by this task now: its waker replaces the first, and the driver wakes it.
        tokio::time::timeout(Duration::from_secs(2), s)
            .await
            .expect("the new waker was woken");
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn timeout_passes_the_answer_or_gives_up() {
        let timer = CoarseTimer::with_tick(T);
        let quick = timer.timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let started = Instant::now();
        let slow = timer
            .timeout(Duration::from_millis(300), std::future::pending::<()>())
            .await;
        assert_eq!(slow, Err(Elapsed));
        assert!(started.elapsed() + T * 5 >= Duration::from_millis(300));
        assert_eq!(timer.pending(), 0);
    }

    #[tokio::test]
    async fn now_follows_the_clock_to_within_a_tick() {
        let timer = CoarseTimer::with_tick(T);
        tokio::time::sleep(T * 5).await;
        let real = Instant::now();
        let coarse = timer.now();
        assert!(coarse <= real);
        assert!(real - coarse < T * 25, "{:?} behind", real - coarse);
    }
}
