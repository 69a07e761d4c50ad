//! A queued request's ticket: removed from Redis when the request gives up its place.

use std::sync::Arc;

use super::script::QueueKeys;
use super::Inner;

/// The ticket of a waiting request. Dropped while armed (the future was dropped, or failed),
/// it removes itself from the queue in a task on the current tokio runtime; if there is none,
/// or the removal fails, the ticket's lease expires and the next script on the key purges it.
pub(super) struct Ticket {
    inner: Arc<Inner>,
    keys: QueueKeys,
    id: String,
    armed: bool,
}

impl Ticket {
    pub(super) fn new(inner: Arc<Inner>, keys: QueueKeys, id: String) -> Self {
        Ticket {
            inner,
            keys,
            id,
            armed: true,
        }
    }

    pub(super) fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The request left (or its ticket is gone): nothing to remove.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let keys = self.keys.clone();
        let id = std::mem::take(&mut self.id);
        runtime.spawn(async move {
            // Best effort: a failure leaves the ticket to its lease.
            let _ = inner.run(&inner.cancel, &keys, id.as_bytes()).await;
        });
    }
}
