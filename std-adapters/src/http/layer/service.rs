//! [`RateLimit`]: the service a [`RateLimitLayer`](super::RateLimitLayer) wraps around another.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use http_body_util::Either;
use smallvec::SmallVec;
use tower_service::Service;
use traffik_core::{AsyncLimiter, Decision};

use super::future::ResponseFuture;
use super::gate::{self, Gate, Item, Items, Refusal};
use super::Shared;
use crate::http::key::{Extracted, Extraction, HttpKey};
use crate::http::policy::{MissingKeyOutcome, Policy};
use crate::http::response::{
    prepare_headers, problem, service_unavailable, set_retry_after, too_many_requests,
    write_headers, BackendErrorOutcome, BackendFailure, Denial, DenyBody, Existing, HeaderItem,
    PolicyQuota, PreparedHeaders, RateLimitBody, RateLimitInfo,
};

/// A service rate-limited by a [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, L> {
    inner: S,
    shared: Arc<Shared<L>>,
}

impl<S, L> RateLimit<S, L> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<L>>) -> Self {
        RateLimit { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, L> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, L> std::fmt::Debug for RateLimit<S, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A key extraction still running, for policy `.0`.
type PendingKey = (
    usize,
    Pin<Box<dyn Future<Output = Extracted> + Send + 'static>>,
);

/// What a policy's extraction means for this request.
enum Resolved {
    Apply(Item),
    Skip,
    Reject(Response<DenyBody>),
}

fn resolve<L>(index: usize, policy: &Policy<L>, extracted: Extracted, parts: &Parts) -> Resolved {
    let key = match extracted {
        Extracted::Key(key) => key,
        Extracted::Exempt => return Resolved::Skip,
        Extracted::Missing(why) => match policy.missing {
            MissingKeyOutcome::Shared => HttpKey::new(),
            MissingKeyOutcome::Skip => return Resolved::Skip,
            MissingKeyOutcome::Reject(status) => {
                return Resolved::Reject(problem(status, "about:blank", &why.to_string(), &[]))
            }
        },
    };
    let deferred = policy.charge_if.is_some();
    Resolved::Apply(Item::new(index, key, policy.cost.of(parts), deferred))
}

impl<S, L, B, ResBody> Service<Request<B>> for RateLimit<S, L>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Send + 'static,
    L: AsyncLimiter<[u8]> + 'static,
{
    type Response = Response<RateLimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, L, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let (mut parts, body) = req.into_parts();
        if shared.bypass.as_ref().is_some_and(|r| r.matches(&parts)) {
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        let mut items = Items::new();
        let mut pending: SmallVec<[PendingKey; 1]> = SmallVec::new();
        for (i, policy) in shared.policies.iter().enumerate() {
            if !policy.rule.matches(&parts) {
                continue;
            }
            // The builder refuses policies without an extractor.
            let Some(extractor) = &policy.key else {
                continue;
            };
            match extractor.extract(&parts) {
                Extraction::Ready(e) => match resolve(i, policy, e, &parts) {
                    Resolved::Apply(item) => items.push(item),
                    Resolved::Skip => {}
                    Resolved::Reject(res) => return ResponseFuture::ready(res.map(Either::Right)),
                },
                Extraction::Pending(fut) => pending.push((i, fut)),
            }
        }
        if items.is_empty() && pending.is_empty() {
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        // One policy charged before the handler: the gate's only question would be one
        // check. It is asked here, and an admission goes on without building the gate.
        let mut first = None;
        if let ([item], true) = (&mut items[..], pending.is_empty()) {
            if !item.deferred {
                let limiter = &shared.policies[item.policy].limiter;
                match limiter.check_now(item.key.as_bytes(), item.cost) {
                    Some(Ok(d)) if d.is_allowed() => {
                        item.decision = Some(d);
                        item.charged = true;
                        return admit_final(shared, &mut self.inner, &items, parts, body);
                    }
                    // A refusal or a failure is the gate's answer to its first question;
                    // `None` (the limiter must be awaited) leaves the gate to ask again.
                    answer => first = answer,
                }
            }
        }
        let mut gate = Gate::new(items);
        if let Some(result) = first {
            let asked = gate.ask();
            debug_assert_eq!(asked, Some(gate::Ask::Check(0)));
            if let Err(e) = &result {
                gate::report(shared, &gate, e);
            }
            if let Some(refusal) = gate.answer(result, shared.fail_open()) {
                return ResponseFuture::ready(refuse(shared, &gate, refusal, &parts));
            }
        }
        if pending.is_empty() {
            match gate::drive_now(shared, &mut gate) {
                Some(Ok(())) => {
                    if !gate.items.iter().any(|i| i.deferred) {
                        return admit_final(shared, &mut self.inner, &gate.items, parts, body);
                    }
                    insert_info(shared, &gate.items, &mut parts);
                    let fut = self.inner.call(Request::from_parts(parts, body));
                    return ResponseFuture::inner(fut, Post::new(Arc::clone(&self.shared), gate));
                }
                Some(Err(refusal)) => {
                    return ResponseFuture::ready(refuse(shared, &gate, refusal, &parts))
                }
                // A limiter must be awaited: go on below from where the gate stopped.
                None => {}
            }
        }
        // The inner service was made ready for this call: take it, leaving a clone in place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::boxed(Box::pin(slow_path(
            shared, inner, parts, body, gate, pending,
        )))
    }
}

/// Passes on a request admitted on the spot whose decisions are all final (no policy charged by
/// outcome): the quota goes into its extensions and its headers are made now, so the future
/// needs neither the items nor the shared state.
fn admit_final<S, L, B, ResBody>(
    shared: &Shared<L>,
    inner: &mut S,
    items: &[Item],
    mut parts: Parts,
    body: B,
) -> ResponseFuture<S::Future, L, ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    insert_info(shared, items, &mut parts);
    let headers = allowed_headers(shared, items);
    ResponseFuture::decorated(inner.call(Request::from_parts(parts, body)), headers)
}

/// The rest of a request whose keys or limiters must be awaited.
async fn slow_path<S, L, B, ResBody>(
    shared: Arc<Shared<L>>,
    mut inner: S,
    mut parts: Parts,
    body: B,
    mut gate: Gate,
    pending: SmallVec<[PendingKey; 1]>,
) -> Result<Response<RateLimitBody<ResBody>>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    L: AsyncLimiter<[u8]>,
{
    if !pending.is_empty() {
        // The gate has not started: it is rebuilt with every key, in policy order.
        let mut items = std::mem::take(&mut gate.items);
        for (i, fut) in pending {
            let extracted = fut.await;
            match resolve(i, &shared.policies[i], extracted, &parts) {
                Resolved::Apply(item) => items.push(item),
                Resolved::Skip => {}
                Resolved::Reject(res) => return Ok(res.map(Either::Right)),
            }
        }
        if items.is_empty() {
            let res = inner.call(Request::from_parts(parts, body)).await?;
            return Ok(res.map(Either::Left));
        }
        items.sort_by_key(|item| item.policy);
        gate = Gate::new(items);
    }
    if let Err(refusal) = gate::drive(&shared, &mut gate).await {
        return Ok(refuse(&shared, &gate, refusal, &parts));
    }
    insert_info(&shared, &gate.items, &mut parts);
    let res = inner.call(Request::from_parts(parts, body)).await?;
    let (mut head, body) = res.into_parts();
    let mut post = Post::new(shared, gate);
    post.owe(&head);
    post.charge().await;
    post.decorate(&mut head.headers);
    Ok(Response::from_parts(head, Either::Left(body)))
}

/// Puts each applied policy's quota in the request's extensions.
fn insert_info<L>(shared: &Shared<L>, items: &[Item], parts: &mut Parts) {
    if !shared.quota_info {
        return;
    }
    let info = RateLimitInfo {
        policies: items
            .iter()
            .filter_map(|item| {
                let d = item.decision?;
                Some(PolicyQuota {
                    name: Arc::clone(&shared.policies[item.policy].name),
                    limit: d.limit(),
                    remaining: d.remaining(),
                    reset: d.reset_after(),
                })
            })
            .collect(),
    };
    // One map operation in the usual case; a rate-limit layer further out already recorded
    // its policies when there was a value: those come first, these join them.
    if let Some(mut outer) = parts.extensions.insert(info) {
        if let Some(mine) = parts.extensions.get_mut::<RateLimitInfo>() {
            outer.policies.append(&mut mine.policies);
            *mine = outer;
        }
    }
}

/// The headers of an admitted request's response (`None` when allowed responses carry none).
fn allowed_headers<L>(shared: &Shared<L>, items: &[Item]) -> Option<PreparedHeaders> {
    if !shared.headers.on_allowed {
        return None;
    }
    let items: SmallVec<[HeaderItem<'_>; 2]> = items
        .iter()
        .filter_map(|item| {
            let d = item.decision?;
            Some(header_item(
                &shared.policies[item.policy],
                d,
                d.reset_after(),
            ))
        })
        .collect();
    prepare_headers(&items, shared.headers, shared.policy_list_for(items.len()))
}

/// The response to a request the gate did not admit.
fn refuse<L: AsyncLimiter<[u8]>, B>(
    shared: &Shared<L>,
    gate: &Gate,
    refusal: Refusal<L::Error>,
    parts: &Parts,
) -> Response<RateLimitBody<B>> {
    match refusal {
        Refusal::Deny { item, never } => {
            let it = &gate.items[item];
            let policy = &shared.policies[it.policy];
            let decision = it.decision.unwrap_or_else(|| Decision::deny(0, 0, 0, 0));
            let decisions: SmallVec<[(&str, Decision); 2]> = gate
                .items
                .iter()
                .filter_map(|i| Some((&*shared.policies[i.policy].name, i.decision?)))
                .collect();
            let denial = Denial {
                policy: &policy.name,
                decision,
                cost: it.cost,
                never_admissible: never,
                decisions: &decisions,
                parts,
            };
            let mut res = match &shared.on_denied {
                Some(hook) => hook(&denial),
                None => too_many_requests(&denial),
            };
            if !never {
                set_retry_after(res.headers_mut(), decision.retry_after());
            }
            let headers: SmallVec<[HeaderItem<'_>; 2]> = gate
                .items
                .iter()
                .enumerate()
                .filter_map(|(j, other)| {
                    let d = other.decision?;
                    let t = if j == item && !never {
                        d.retry_after()
                    } else {
                        d.reset_after()
                    };
                    Some(header_item(&shared.policies[other.policy], d, t))
                })
                .collect();
            // Denials always carry the headers, whatever `on_allowed` says.
            write_headers(
                res.headers_mut(),
                &headers,
                shared.headers,
                Existing::Keep,
                shared.policy_list_for(headers.len()),
            );
            res.map(Either::Right)
        }
        Refusal::Fail { item, error } => {
            let policy = &shared.policies[gate.items[item].policy];
            let res = match &shared.on_error {
                BackendErrorOutcome::Respond(hook) => hook(&BackendFailure {
                    policy: &policy.name,
                    error: &error,
                    parts,
                }),
                BackendErrorOutcome::Unavailable { retry_after } => {
                    service_unavailable(&policy.name, *retry_after)
                }
                // Fail-open never ends the gate with `Fail`; answer as the default would.
                BackendErrorOutcome::Allow => {
                    service_unavailable(&policy.name, std::time::Duration::from_secs(1))
                }
            };
            res.map(Either::Right)
        }
    }
}

fn header_item<L>(policy: &Policy<L>, d: Decision, t: std::time::Duration) -> HeaderItem<'_> {
    HeaderItem {
        name: &policy.name,
        policy_item: &policy.policy_item,
        limit: d.limit(),
        remaining: d.remaining(),
        t,
    }
}

/// What is left to do once the inner service has answered: the charges by outcome, then the
/// headers.
pub(crate) struct Post<L> {
    shared: Arc<Shared<L>>,
    items: Items,
}

impl<L: AsyncLimiter<[u8]>> Post<L> {
    fn new(shared: Arc<Shared<L>>, gate: Gate) -> Self {
        Post {
            shared,
            items: gate.items,
        }
    }

    /// Marks the charges by outcome this response asks for.
    pub(crate) fn owe(&mut self, head: &http::response::Parts) {
        for item in &mut self.items {
            if item.deferred && !item.charged && !item.failed {
                let policy = &self.shared.policies[item.policy];
                item.owed = policy.charge_if.as_ref().is_some_and(|f| f(head));
            }
        }
    }

    fn settle(shared: &Shared<L>, item: &mut Item, result: Result<Decision, L::Error>) {
        item.owed = false;
        if let Err(e) = &result {
            let name = &shared.policies[item.policy].name;
            super::report_failure(name, e, "charging a response's outcome");
        }
        // The response is already decided: a denial or an error here cannot change it. A
        // denial still updates what the headers report (nothing left).
        if let Ok(d) = result {
            item.charged = d.is_allowed();
            item.decision = Some(d);
        }
    }

    /// Makes the owed charges on the spot; false if one needs its future.
    pub(crate) fn charge_now(&mut self) -> bool {
        for item in &mut self.items {
            if item.owed {
                let limiter = &self.shared.policies[item.policy].limiter;
                match limiter.check_now(item.key.as_bytes(), item.cost) {
                    Some(result) => Self::settle(&self.shared, item, result),
                    None => return false,
                }
            }
        }
        true
    }

    /// Makes the owed charges, awaiting the limiters.
    pub(crate) async fn charge(&mut self) {
        for item in &mut self.items {
            if item.owed {
                let limiter = &self.shared.policies[item.policy].limiter;
                let result = match limiter.check_now(item.key.as_bytes(), item.cost) {
                    Some(r) => r,
                    None => limiter.check(item.key.as_bytes(), item.cost).await,
                };
                Self::settle(&self.shared, item, result);
            }
        }
    }

    /// Adds the rate-limit headers of an admitted request's response.
    pub(crate) fn decorate(&self, headers: &mut http::HeaderMap) {
        if let Some(prepared) = allowed_headers(&self.shared, &self.items) {
            prepared.write(headers, Existing::Append);
        }
    }

    /// Whether any policy is charged by outcome (otherwise only headers are left to add).
    pub(crate) fn has_deferred(&self) -> bool {
        self.items.iter().any(|i| i.deferred)
    }
}
