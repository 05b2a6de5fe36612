//! One access token per audience, kept ahead of its expiry.
//!
//! A request takes the held token without waiting on anything but a read lock. Once a token
//! nears its end (`refresh_due`), the first request that notices starts a refresh in the
//! background and goes on with the token it has; only a missing or all-but-expired token is
//! fetched inline. So a slow or hanging authority delays no request while a token is valid,
//! and a refresh of one audience never holds up another.
//!
//! `azure_identity`'s own cache returns its held token until 5 minutes before expiry, so a
//! refresh starts inside that margin, or it would get the same token back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// `azure_identity` refreshes at 300 s left; start just inside that.
const REFRESH_AHEAD: Duration = Duration::from_secs(270);
/// Less than this left: not worth sending, fetch inline.
const MIN_LEFT: Duration = Duration::from_secs(30);
/// After a failed background refresh, the next try waits this long.
const RETRY_GAP: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Held {
    pub token: String,
    pub expires: SystemTime,
    fetched: SystemTime,
}

impl Held {
    pub fn new(token: String, expires: SystemTime) -> Held {
        Held { token, expires, fetched: SystemTime::now() }
    }

    fn left(&self, now: SystemTime) -> Duration {
        self.expires.duration_since(now).unwrap_or_default()
    }

    /// Time to refresh: within `REFRESH_AHEAD` of the end, or past half of a short token's life.
    fn refresh_due(&self, now: SystemTime) -> bool {
        let life = self.expires.duration_since(self.fetched).unwrap_or_default();
        self.left(now) < REFRESH_AHEAD.min(life / 2)
    }
}

#[derive(Default)]
struct Slot {
    held: RwLock<Option<Held>>,
    /// Set while a background refresh runs, with the earliest time of the next one.
    refreshing: Mutex<(bool, Option<SystemTime>)>,
    /// One inline fetch at a time per audience.
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Tokens {
    fn slot(&self, audience: &str) -> Arc<Slot> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(audience.to_string()).or_default().clone()
    }

    /// Forgets every held token (after a 401, or a rotated secret).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The token for `audience`. `fetch` asks the authority; it is awaited here only when no
    /// usable token is held, and otherwise spawned (at most one at a time per audience).
    pub async fn get<E, F, Fut>(&self, audience: &str, fetch: F) -> Result<String, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Held, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let slot = self.slot(audience);
        let now = SystemTime::now();
        if let Some(h) = current(&slot)
            && h.left(now) > MIN_LEFT
        {
            if h.refresh_due(now) && start_refresh(&slot, now) {
                let (s, f, audience) = (slot.clone(), fetch(), audience.to_string());
                tokio::spawn(async move {
                    let r = f.await;
                    finish_refresh(&s, r, &audience);
                });
            }
            return Ok(h.token);
        }
        let _one = slot.fetch.lock().await;
        if let Some(h) = current(&slot)
            && h.left(SystemTime::now()) > MIN_LEFT
        {
            return Ok(h.token);
        }
        let h = fetch().await?;
        let token = h.token.clone();
        *slot.held.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
        Ok(token)
    }
}

fn current(slot: &Slot) -> Option<Held> {
    slot.held.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Claims the background refresh, unless one runs or the last one failed moments ago.
fn start_refresh(slot: &Slot, now: SystemTime) -> bool {
    let mut r = slot.refreshing.lock().unwrap_or_else(|p| p.into_inner());
    if r.0 || r.1.is_some_and(|not_before| now < not_before) {
        return false;
    }
    *r = (true, None);
    true
}

fn finish_refresh<E: std::fmt::Display>(slot: &Slot, r: Result<Held, E>, audience: &str) {
    let mut next = None;
    match r {
        Ok(h) => *slot.held.write().unwrap_or_else(|p| p.into_inner()) = Some(h),
        Err(e) => {
            tracing::warn!(audience, error = %e, "refreshing an access token ahead of its expiry failed; the current one is used meanwhile");
            next = Some(SystemTime::now() + RETRY_GAP);
        }
    }
    *slot.refreshing.lock().unwrap_or_else(|p| p.into_inner()) = (false, next);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Hands out `t1`, `t2`, … with the given seconds left, in turn, each issued an hour
    /// before it ends (so one with 200 s left is late in its life); `None` hangs.
    fn authority(
        lifetimes: Vec<Option<u64>>,
    ) -> (Arc<AtomicU32>, impl Fn() -> futures::future::BoxFuture<'static, Result<Held, String>>) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let f = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let life = lifetimes.get(n as usize).copied().flatten();
            Box::pin(async move {
                match life {
                    Some(s) => {
                        let expires = SystemTime::now() + Duration::from_secs(s);
                        let fetched = expires - Duration::from_secs(3600);
                        Ok(Held { token: format!("t{}", n + 1), expires, fetched })
                    }
                    None => futures::future::pending().await,
                }
            }) as futures::future::BoxFuture<'static, Result<Held, String>>
        };
        (calls, f)
    }

    #[tokio::test]
    async fn a_token_is_fetched_once_and_served_from_memory() {
        let (calls, fetch) = authority(vec![Some(3600)]);
        let t = Tokens::default();
        for _ in 0..5 {
            assert_eq!(t.get("https://manage.office.com", &fetch).await.unwrap(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_near_its_end_is_refreshed_in_the_background_while_it_is_still_served() {
        // t1 has 200 s left: due for a refresh, still good to send. The refresh hangs.
        let (calls, fetch) = authority(vec![Some(200), None]);
        let t = Tokens::default();
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t1");
        let served = tokio::time::timeout(Duration::from_secs(5), t.get("a", &fetch)).await;
        assert_eq!(served.expect("not held up by the hanging refresh").unwrap(), "t1");
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh at a time");
    }

    #[tokio::test]
    async fn the_refreshed_token_replaces_the_old_one_and_audiences_are_apart() {
        let (calls, fetch) = authority(vec![Some(200), Some(3600), Some(3600)]);
        let t = Tokens::default();
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t1");
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t1");
        let start = std::time::Instant::now();
        while t.get("a", &fetch).await.unwrap() != "t2" {
            assert!(start.elapsed() < Duration::from_secs(5), "the background refresh lands");
            tokio::task::yield_now().await;
        }
        assert_eq!(t.get("b", &fetch).await.unwrap(), "t3", "another audience has its own token");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        t.clear();
        let (_, fresh) = authority(vec![Some(3600)]);
        assert_eq!(t.get("a", &fresh).await.unwrap(), "t1", "cleared: fetched again");
    }

    #[tokio::test]
    async fn an_expired_token_is_fetched_inline() {
        let (calls, fetch) = authority(vec![Some(10), Some(3600)]);
        let t = Tokens::default();
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t1");
        assert_eq!(t.get("a", &fetch).await.unwrap(), "t2", "10 s left is not worth sending");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
