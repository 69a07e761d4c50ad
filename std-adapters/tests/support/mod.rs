//! A scripted primary for the failover tests: each call takes the next step of a script (or the
//! default step once the script runs out), and everything it was asked and charged is recorded.
#![allow(dead_code)]

/// Real Redis and Memcached processes for the outage tests.
pub mod servers;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use traffik::{AsyncLimiter, Decision, ErrorKind, LimiterError};

/// What one call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Admit and record the charge.
    Allow,
    /// Deny with this retry_after in ns.
    Deny(u64),
    /// Fail with an error of this kind.
    Fail(ErrorKind),
    /// Never answer.
    Hang,
    /// Answer with `Allow` after this long (tokio time).
    Slow(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeError(pub ErrorKind);

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scripted failure ({:?})", self.0)
    }
}

impl std::error::Error for FakeError {}

impl LimiterError for FakeError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

#[derive(Debug)]
pub struct Scripted {
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Step>,
    /// Calls of each method.
    pub checks: AtomicU64,
    pub peeks: AtomicU64,
    pub resets: AtomicU64,
    /// Every (key, cost) admitted, in order.
    charged: Mutex<Vec<(String, u64)>>,
    /// Whether `check_now`/`peek_now` answer the steps that need no waiting (as an in-process
    /// limiter would); otherwise they always return `None`, like a networked store.
    answers_now: bool,
}

impl Scripted {
    pub fn new(script: impl IntoIterator<Item = Step>, default: Step) -> Self {
        Scripted {
            script: Mutex::new(script.into_iter().collect()),
            default: Mutex::new(default),
            checks: AtomicU64::new(0),
            peeks: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            charged: Mutex::new(Vec::new()),
            answers_now: false,
        }
    }

    /// The same, answering on the spot (`check_now`/`peek_now`) every step that needs no
    /// waiting; `Hang` and `Slow` steps give `None` there and stay next in the script.
    pub fn answering_now(mut self) -> Self {
        self.answers_now = true;
        self
    }

    /// Always does `step`.
    pub fn always(step: Step) -> Self {
        Self::new([], step)
    }

    /// Appends steps to the script.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    /// From now on, does `step` once the script is used up.
    pub fn set_default(&self, step: Step) {
        *self.default.lock().unwrap() = step;
    }

    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::SeqCst)
    }

    pub fn charged(&self) -> Vec<(String, u64)> {
        self.charged.lock().unwrap().clone()
    }

    /// The next step if it can be done on the spot (taken), else `None` (left in place).
    fn next_now(&self) -> Option<Step> {
        if !self.answers_now {
            return None;
        }
        let mut script = self.script.lock().unwrap();
        let step = script
            .front()
            .copied()
            .unwrap_or_else(|| *self.default.lock().unwrap());
        if matches!(step, Step::Hang | Step::Slow(_)) {
            return None;
        }
        script.pop_front();
        Some(step)
    }

    /// A step that needs no waiting, done on the spot.
    fn run_now(&self, step: Step, key: &str, cost: u64) -> Result<Decision, FakeError> {
        match step {
            Step::Deny(ns) => Ok(Decision::deny(100, 0, ns, ns)),
            Step::Fail(kind) => Err(FakeError(kind)),
            Step::Allow => {
                self.charged.lock().unwrap().push((key.to_owned(), cost));
                Ok(Decision::allow(100, 99, 1))
            }
            Step::Hang | Step::Slow(_) => unreachable!("next_now never takes a waiting step"),
        }
    }

    fn next(&self) -> Step {
        let scripted = self.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| *self.default.lock().unwrap())
    }

    async fn run(&self, step: Step, key: &str, cost: u64) -> Result<Decision, FakeError> {
        match step {
            Step::Allow => {
                self.charged.lock().unwrap().push((key.to_owned(), cost));
                Ok(Decision::allow(100, 99, 1))
            }
            Step::Deny(ns) => Ok(Decision::deny(100, 0, ns, ns)),
            Step::Fail(kind) => Err(FakeError(kind)),
            Step::Hang => std::future::pending().await,
            Step::Slow(d) => {
                tokio::time::sleep(d).await;
                self.charged.lock().unwrap().push((key.to_owned(), cost));
                Ok(Decision::allow(100, 99, 1))
            }
        }
    }
}

impl AsyncLimiter<str> for Scripted {
    type Error = FakeError;

    fn check(
        &self,
        key: &str,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, FakeError>> + Send {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let step = self.next();
        self.run(step, key, cost)
    }

    fn peek(&self, key: &str) -> impl Future<Output = Result<Decision, FakeError>> + Send {
        self.peeks.fetch_add(1, Ordering::SeqCst);
        let step = self.next();
        async move {
            match step {
                Step::Allow => Ok(Decision::allow(100, 42, 1)),
                other => self.run(other, key, 0).await,
            }
        }
    }

    fn check_now(&self, key: &str, cost: u64) -> Option<Result<Decision, FakeError>> {
        let step = self.next_now()?;
        self.checks.fetch_add(1, Ordering::SeqCst);
        Some(self.run_now(step, key, cost))
    }

    fn peek_now(&self, key: &str) -> Option<Result<Decision, FakeError>> {
        let step = self.next_now()?;
        self.peeks.fetch_add(1, Ordering::SeqCst);
        Some(match step {
            Step::Allow => Ok(Decision::allow(100, 42, 1)),
            other => self.run_now(other, key, 0),
        })
    }

    fn reset(&self, _key: &str) -> impl Future<Output = Result<(), FakeError>> + Send {
        self.resets.fetch_add(1, Ordering::SeqCst);
        let step = self.next();
        async move {
            match step {
                Step::Fail(kind) => Err(FakeError(kind)),
                Step::Hang => std::future::pending().await,
                _ => Ok(()),
            }
        }
    }
}
