//! The bounded queue of charges the fallback admitted while the primary could not be asked, and
//! the small join that sends a batch of them to the primary at once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

/// `(owned key, cost)` pairs, oldest first, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct ReplayQueue<O> {
    items: Mutex<VecDeque<(O, u64)>>,
    /// Mirrors `items.len()`, so the hot path can see "nothing pending" without the lock.
    len: AtomicUsize,
    capacity: usize,
    /// Set while one caller is replaying, so batches are not sent twice over.
    busy: AtomicBool,
}

impl<O> ReplayQueue<O> {
    pub(crate) fn new(capacity: usize) -> Self {
        ReplayQueue {
            items: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            capacity,
            busy: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(O, u64)>> {
        // Nothing panics while holding the lock, and a queue left mid-push is still a valid
        // queue, so a poisoned lock is simply taken over.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, items: &VecDeque<(O, u64)>) {
        // Relaxed: `len` is a hint for the lock-free fast path; the queue itself is read under
        // the mutex, and a stale hint only delays a replay to the next successful call.
        self.len.store(items.len(), Ordering::Relaxed);
    }

    /// Most charges it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether anything is waiting. One relaxed load.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        // Relaxed: see `publish`.
        self.len.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn pending(&self) -> u64 {
        // Relaxed: see `publish`.
        self.len.load(Ordering::Relaxed) as u64
    }

    /// Queues a charge; `false` if the queue is full (the charge is dropped).
    pub(crate) fn push(&self, key: O, cost: u64) -> bool {
        let mut items = self.lock();
        if items.len() >= self.capacity {
            return false;
        }
        items.push_back((key, cost));
        self.publish(&items);
        true
    }

    /// Puts charges back at the front (a replay failed before charging); those that no longer
    /// fit are returned to be counted as dropped.
    pub(crate) fn requeue(&self, mut back: Vec<(O, u64)>) -> usize {
        let mut items = self.lock();
        let room = self.capacity.saturating_sub(items.len());
        let dropped = back.len().saturating_sub(room);
        back.truncate(room);
        for item in back.into_iter().rev() {
            items.push_front(item);
        }
        self.publish(&items);
        dropped
    }

    /// Takes up to `n` of the oldest charges.
    pub(crate) fn take(&self, n: usize) -> Vec<(O, u64)> {
        let mut items = self.lock();
        let n = n.min(items.len());
        let batch = items.drain(..n).collect();
        self.publish(&items);
        batch
    }

    /// Drops every queued charge for which `matches` holds; returns how many.
    pub(crate) fn remove(&self, mut matches: impl FnMut(&O) -> bool) -> usize {
        let mut items = self.lock();
        let before = items.len();
        items.retain(|(k, _)| !matches(k));
        self.publish(&items);
        before - items.len()
    }

    /// The right to replay, if no one else holds it.
    pub(crate) fn claim(&self) -> Option<Claim<'_, O>> {
        // Acquire here and Release in `Claim::drop`, the usual try-lock pairing. More than
        // enough: the flag only excludes a second replayer, and the queue it works on is read
        // and written under its own mutex. Relaxed on failure: the loser just leaves.
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Claim(self))
    }
}

/// Held by the one caller replaying; releases the right when dropped (also on cancellation).
pub(crate) struct Claim<'a, O>(&'a ReplayQueue<O>);

impl<O> Drop for Claim<'_, O> {
    fn drop(&mut self) {
        // Release: see `claim`.
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Polls every future of a batch until all are done, handing each output to `done` as it
/// arrives. Dropped before the end, it hands the unfinished count to `cancelled`.
pub(crate) struct JoinAll<F: Future, D: FnMut(usize, F::Output), X: FnMut(usize)> {
    futures: Vec<Option<Pin<Box<F>>>>,
    left: usize,
    done: D,
    cancelled: X,
}

impl<F: Future, D: FnMut(usize, F::Output), X: FnMut(usize)> JoinAll<F, D, X> {
    pub(crate) fn new(futures: impl IntoIterator<Item = F>, done: D, cancelled: X) -> Self {
        let futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
        let left = futures.len();
        JoinAll {
            futures,
            left,
            done,
            cancelled,
        }
    }
}

// The futures are boxed, so the join itself never needs to stay put.
impl<F: Future, D: FnMut(usize, F::Output), X: FnMut(usize)> Unpin for JoinAll<F, D, X> {}

impl<F: Future, D: FnMut(usize, F::Output), X: FnMut(usize)> Future for JoinAll<F, D, X> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for (i, slot) in this.futures.iter_mut().enumerate() {
            if let Some(fut) = slot {
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    *slot = None;
                    this.left -= 1;
                    (this.done)(i, out);
                }
            }
        }
        if this.left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<F: Future, D: FnMut(usize, F::Output), X: FnMut(usize)> Drop for JoinAll<F, D, X> {
    fn drop(&mut self) {
        if self.left != 0 {
            (self.cancelled)(self.left);
        }
    }
}
