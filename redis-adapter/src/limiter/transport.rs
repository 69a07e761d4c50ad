//! The round trips behind a check: the command for a prepared check, the deadline around it,
//! `NOSCRIPT` recovery and cluster redirects, pipelines for batches, and reading the reply.

use super::*;

impl RedisLimiter {
    pub(super) fn command(&self, p: &Prepared, by_sha: bool) -> Cmd {
        if let Some(g) = p.params {
            let split = match p.now {
                Now::Nanos(n) => Some((n / dynamic::UNIT, n % dynamic::UNIT)),
                Now::Server => None,
            };
            let args = [p.cost, g.interval_nanos(), g.burst()];
            return self
                .inner
                .dynamic
                .command_args(by_sha, &p.key, &args, split);
        }
        let split = match p.now {
            Now::Nanos(n) => Some((n / self.inner.plan.unit, n % self.inner.plan.unit)),
            Now::Server => None,
        };
        self.inner.script.command(by_sha, &p.key, p.cost, split)
    }

    pub(super) async fn within<T>(
        &self,
        label: &str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisLimiterError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisLimiterError::from_redis(e, label)),
            Err(_) => Err(RedisLimiterError::Timeout {
                after: self.inner.timeout,
            }),
        }
    }

    /// One check, one round trip. The only resends are of commands a server refused without
    /// running them: a `NOSCRIPT` (once, by body) and, on a cluster, `MOVED` and `ASK`
    /// redirections (up to [`MAX_REDIRECTS`]).
    pub(super) async fn remote(&self, p: &Prepared) -> Result<Decision, RedisLimiterError> {
        self.remote_until(p, tokio::time::Instant::now() + self.inner.timeout)
            .await
    }

    pub(super) async fn remote_until(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<Decision, RedisLimiterError> {
        let reply = self
            .send_script(&p.key, deadline, true, |by_sha| self.command(p, by_sha))
            .await?;
        self.finish(p, reply)
    }

    /// Sends one script call (built by `command(by_sha)`) on this limiter's connection before
    /// `deadline` and returns the reply. The only resends are of calls a server refused without
    /// running them: a `NOSCRIPT` (once, by body) and, on a cluster, `MOVED` and `ASK`
    /// redirections (up to [`MAX_REDIRECTS`]). `key` names the call in errors; with
    /// `count_round_trips`, every send counts in [`stats`](RedisLimiter::stats).
    pub(crate) async fn send_script(
        &self,
        key: &[u8],
        deadline: tokio::time::Instant,
        count_round_trips: bool,
        mut command: impl FnMut(bool) -> Cmd,
    ) -> Result<Value, RedisLimiterError> {
        let mut conn = self.inner.conn.clone();
        let cluster = matches!(conn, Conn::Cluster(_));
        let (mut by_sha, mut redirect, mut redirects) = (true, None::<Redirect>, 0);
        loop {
            if let Err(unsent) = self.ready(&conn, deadline).await {
                return Err(unsent.error_for(key, self.inner.timeout));
            }
            if count_round_trips {
                self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            }
            let cmd = command(by_sha);
            let sent = match &redirect {
                None => tokio::time::timeout_at(deadline, conn.req_packed_command(&cmd)).await,
                Some(to) => tokio::time::timeout_at(deadline, conn.send_redirected(&cmd, to)).await,
            };
            let err = match sent {
                Err(_) => return Err(self.timed_out()),
                Ok(Ok(v)) if by_sha && is_noscript(&v) => {
                    // The script never ran: sending its body is safe and caches it again.
                    by_sha = false;
                    continue;
                }
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
            };
            if by_sha && err.kind() == redis::ErrorKind::NoScriptError {
                by_sha = false;
                continue;
            }
            if cluster && redirects < MAX_REDIRECTS {
                if let Some(to) = Redirect::of(&err) {
                    redirects += 1;
                    redirect = Some(to);
                    continue;
                }
                if matches!(redirect, Some(Redirect::Moved(_))) && is_unknown_node(&err) {
                    // Not sent: no connection to that node yet. The `MOVED` made the client
                    // refresh its slot map, so routing by slot reaches the new owner.
                    redirects += 1;
                    redirect = None;
                    continue;
                }
            }
            return Err(RedisLimiterError::from_redis(
                err,
                &String::from_utf8_lossy(key),
            ));
        }
    }

    /// Many checks in one pipeline; entries answered `NOSCRIPT` (whose script never ran) are
    /// resent once by body, no other entry ever is. On a cluster every entry must hash to one
    /// slot.
    pub(super) async fn remote_pipelined(
        &self,
        pending: &[(usize, Prepared)],
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut conn = self.inner.conn.clone();
        let first = self
            .send_pipeline(&mut conn, pending.iter().map(|(_, p)| p), true, deadline)
            .await;
        let replies = match first {
            Ok(v) => v,
            Err(Failure::Redirected(_)) => {
                return self
                    .one_by_one(pending.iter().map(|(_, p)| p), deadline)
                    .await
            }
            Err(failure) => {
                return pending
                    .iter()
                    .map(|(_, p)| Err(failure.error_for(&p.key, self.inner.timeout)))
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(pending.len());
        let mut retry = Vec::new();
        for (idx, ((_, p), reply)) in pending.iter().zip(replies).enumerate() {
            match reply {
                Reply::NoScript => {
                    out.push(None);
                    retry.push(idx);
                }
                Reply::Value(reply) => out.push(Some(self.finish(p, reply))),
            }
        }
        if !retry.is_empty() {
            let again = self
                .send_pipeline(
                    &mut conn,
                    retry.iter().map(|&idx| &pending[idx].1),
                    false,
                    deadline,
                )
                .await;
            match again {
                Ok(v) => {
                    for (&idx, reply) in retry.iter().zip(v) {
                        let p = &pending[idx].1;
                        out[idx] = Some(match reply {
                            Reply::Value(reply) => self.finish(p, reply),
                            Reply::NoScript => Err(bad_reply(format!(
                                "NOSCRIPT in reply to the script's body for {}",
                                String::from_utf8_lossy(&p.key)
                            ))),
                        });
                    }
                }
                Err(Failure::Redirected(_)) => {
                    let answers = self
                        .one_by_one(retry.iter().map(|&idx| &pending[idx].1), deadline)
                        .await;
                    for (&idx, answer) in retry.iter().zip(answers) {
                        out[idx] = Some(answer);
                    }
                }
                Err(failure) => {
                    for &idx in &retry {
                        out[idx] = Some(Err(
                            failure.error_for(&pending[idx].1.key, self.inner.timeout)
                        ));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(bad_reply("missing pipeline reply".into()))))
            .collect()
    }

    /// The checks of a cluster transaction that was redirected (so none of them ran), each
    /// sent on its own, following its own redirections, concurrently.
    pub(super) async fn one_by_one<'p>(
        &self,
        checks: impl Iterator<Item = &'p Prepared>,
        deadline: tokio::time::Instant,
    ) -> Vec<Result<Decision, RedisLimiterError>> {
        futures_util::future::join_all(checks.map(|p| self.remote_until(p, deadline))).await
    }

    /// Sends the checks as one pipeline (by SHA or by body) and returns one reply per check.
    ///
    /// On a single node the pipeline is plain and every reply arrives on its own. The cluster
    /// client collapses a pipeline's replies into its first error, which would hide which
    /// entries ran; there the pipeline is a `MULTI`/`EXEC` transaction instead: the script
    /// cache cannot change during `EXEC`, so a `NOSCRIPT` means no entry ran, and any other
    /// error is a failure of the whole (never resent).
    pub(super) async fn send_pipeline<'p>(
        &self,
        conn: &mut Conn,
        checks: impl ExactSizeIterator<Item = &'p Prepared>,
        by_sha: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Reply>, Failure> {
        let n = checks.len();
        let mut pipe = redis::pipe();
        for p in checks {
            pipe.add_command(self.command(p, by_sha));
        }
        self.ready(conn, deadline).await?;
        self.inner
            .round_trips
            .fetch_add(n as u64, Ordering::Relaxed);
        let count_mismatch = |got: usize| Failure::Count(got, n);
        match conn {
            Conn::Single(_) => {
                match tokio::time::timeout_at(deadline, conn.req_packed_commands(&pipe, 0, n)).await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(e)) => Err(Failure::Redis(e.into())),
                    Ok(Ok(v)) if v.len() == n => Ok(v.into_iter().map(Reply::from).collect()),
                    Ok(Ok(v)) => Err(count_mismatch(v.len())),
                }
            }
            Conn::Cluster(_) => {
                pipe.atomic();
                // The replies to MULTI and to each queued command are skipped; EXEC's is kept.
                match tokio::time::timeout_at(deadline, conn.req_packed_commands(&pipe, n + 1, 1))
                    .await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(e)) if e.kind() == redis::ErrorKind::NoScriptError => {
                        Ok((0..n).map(|_| Reply::NoScript).collect())
                    }
                    // Redirected at queueing or at `EXEC`: the transaction was discarded.
                    Ok(Err(e)) if Redirect::of(&e).is_some() => Err(Failure::Redirected(e.into())),
                    Ok(Err(e)) => Err(Failure::Transaction(e.into())),
                    Ok(Ok(mut v)) => match v.pop() {
                        Some(Value::Array(replies)) if v.is_empty() && replies.len() == n => {
                            Ok(replies.into_iter().map(Reply::from).collect())
                        }
                        Some(Value::Array(replies)) if v.is_empty() => {
                            Err(count_mismatch(replies.len()))
                        }
                        other => Err(Failure::Reply(format!(
                            "expected EXEC's array of {n} replies, got {other:?}"
                        ))),
                    },
                }
            }
        }
    }

    /// Waits for the connection under the call's deadline: a failure here sent nothing.
    pub(super) async fn ready(
        &self,
        conn: &Conn,
        deadline: tokio::time::Instant,
    ) -> Result<(), Failure> {
        match tokio::time::timeout_at(deadline, conn.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Redis(e.into())),
            Err(_) => Err(Failure::NoConnection),
        }
    }

    pub(super) fn timed_out(&self) -> RedisLimiterError {
        RedisLimiterError::Timeout {
            after: self.inner.timeout,
        }
    }

    /// Parses a script reply and feeds the near cache.
    pub(super) fn finish(&self, p: &Prepared, reply: Value) -> Result<Decision, RedisLimiterError> {
        if let Some(g) = p.params {
            return parse_reply(reply, &p.key, g.burst(), dynamic::UNIT);
        }
        let plan = &self.inner.plan;
        let decision = parse_reply(reply, &p.key, plan.capacity, plan.unit)?;
        if let (Some(near), Some(local), true) = (
            &self.inner.near,
            p.local,
            decision.is_denied() && p.cost > 0,
        ) {
            near.record(&p.key, p.cost, local, &decision);
        }
        Ok(decision)
    }
}
