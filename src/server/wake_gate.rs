//! A connection's watchers (the shutdown signal, the idle watch, the drain timers), polled only
//! when one of them woke the connection's task.
//!
//! The task is woken for every read, every write and every upstream answer, and its watchers
//! almost never have anything to say. Polled on every wake, they cost an HTTP/1.1 request
//! hundreds of instructions: tokio's `Notify` behind the shutdown watch takes a lock each time
//! it is polled. Behind the gate they are polled with a waker of their own, which notes that
//! they asked and then wakes the task; the task polls them again only then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// See the module's documentation.
pub(crate) struct WakeGate {
    flag: Arc<Flag>,
    /// The watchers' waker: one for the connection's life, so a watcher that keeps it (a
    /// coarse-timer sleep) sees the same waker at every poll.
    waker: Waker,
}

struct Flag {
    /// A watcher woke since the task last polled them (or new watchers wait for a first poll).
    woken: AtomicBool,
    /// The task to wake.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl WakeGate {
    /// Open: the first poll polls the watchers.
    pub(crate) fn new() -> WakeGate {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        WakeGate {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }

    /// On every poll of the task (`cx`): the context to poll the watchers with, if one of
    /// them woke since the last time (or they are new). Poll all of them with it, then.
    pub(crate) fn open(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        // First the task's waker, then the flag: a watcher that wakes in between is seen now
        // or wakes the task again.
        self.flag.task.register(cx.waker());
        self.flag
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }

    /// New watchers, never polled: the next [`WakeGate::open`] lets them be.
    pub(crate) fn reopen(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task waker that counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A task's waker, and its count of wakes.
    fn task() -> (Waker, Arc<Count>) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Waker::from(count.clone()), count)
    }

    #[test]
    fn opens_first_then_only_after_a_watcher_woke() {
        let (task, count) = task();
        let cx = Context::from_waker(&task);
        let gate = WakeGate::new();

        let side = gate.open(&cx).expect("new watchers are polled");
        let watcher = side.waker().clone();
        assert!(gate.open(&cx).is_none(), "nothing woke: closed");
        assert!(gate.open(&cx).is_none());

        watcher.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(gate.open(&cx).is_some());
        assert!(gate.open(&cx).is_none());

        gate.reopen();
        assert!(gate.open(&cx).is_some(), "new watchers");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_watchers_waker_is_the_same_at_every_poll() {
        let (task, _) = task();
        let cx = Context::from_waker(&task);
        let gate = WakeGate::new();
        let first = gate.open(&cx).unwrap().waker().clone();
        gate.reopen();
        assert!(gate.open(&cx).unwrap().waker().will_wake(&first));
    }

    #[test]
    fn a_wake_before_the_task_polls_is_kept() {
        let (task, count) = task();
        let cx = Context::from_waker(&task);
        let gate = WakeGate::new();
        let watcher = gate.open(&cx).unwrap().waker().clone();
        // From another thread, as a timer driver or the shutdown signal would.
        std::thread::spawn(move || watcher.wake()).join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(gate.open(&cx).is_some());
    }
}
