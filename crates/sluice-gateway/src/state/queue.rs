//! A route's concurrency limit with a bounded priority queue in front.
//!
//! At most `max_concurrency` requests of the route run at once. Others wait: highest priority
//! first, and within a priority in turn by tenant (weighted: a tenant of weight 3 takes three
//! turns to another's one), so one tenant's flood cannot starve the rest.
//! A full queue turns away a lowest-priority waiter (the newest of the tenant with the most
//! waiting) for a higher-priority newcomer, or the newcomer if none is lower. A waiter gives up
//! at the queue timeout or its deadline. Each route's queue is live state, kept across reloads;
//! the limits come from the current config.
//!
//! The lock is the route's own, taken only by routes with a queue, for a few list operations.
//!
//! A place is always owned by a [`Permit`]: a release hands the permit itself to the next
//! waiter, so a waiter that leaves after the handover (its client gone, a timeout) drops the
//! permit and the place passes on; a waiter that leaves while queued leaves the queue at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_config::QueueConfig;
use tokio::sync::oneshot;

/// Why a request did not get a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// The queue was full of requests at least as important.
    Full,
    /// A more important request took its place in a full queue.
    Displaced,
    /// It waited as long as it may.
    Timeout,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<Permit>,
}

/// A tenant's waiters at one priority, in order, and the turns it has had in this round.
#[derive(Debug)]
struct Line {
    tenant: Arc<str>,
    weight: u32,
    served: u32,
    waiters: VecDeque<Waiter>,
}

/// One priority level: tenants in turn, each with its waiters in order.
#[derive(Debug, Default)]
struct Level {
    tenants: VecDeque<Line>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    queued: usize,
    /// By priority, highest last (so `last_key_value` is the most important).
    levels: BTreeMap<u8, Level>,
    next_id: u64,
}

#[derive(Debug, Default)]
pub struct RouteQueue {
    state: Mutex<State>,
}

/// A place among the route's running requests; dropping it hands the place to the next waiter.
#[derive(Debug)]
pub struct Permit {
    /// `None` once defused: a permit no waiter took back, whose place the release loop keeps.
    queue: Option<Arc<RouteQueue>>,
    /// How long the request waited for its place.
    pub waited: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release();
        }
    }
}

/// A waiter's slot in the queue while its `acquire` is pending: if the future is dropped there
/// (the client left), the slot goes at once rather than when a release would find it.
struct Queued<'a> {
    queue: &'a RouteQueue,
    id: u64,
}

impl Queued<'_> {
    /// The waiter was taken out of the queue already (handed a place, or displaced).
    fn taken_out(self) {
        std::mem::forget(self); // a reference and an id: nothing to free
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.queue.remove(self.id);
    }
}

impl RouteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Places taken now: requests running, and places handed to a waiter that has yet to look.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Waits for a place, or is turned away.
    pub async fn acquire(
        self: &Arc<Self>,
        cfg: &QueueConfig,
        priority: u8,
        (tenant, weight): (&Arc<str>, u32),
        deadline: Instant,
    ) -> Result<Permit, Turned> {
        let started = Instant::now();
        let (id, rx) = {
            let mut s = self.lock();
            if s.running < cfg.max_concurrency && s.queued == 0 {
                s.running += 1;
                return Ok(Permit {
                    queue: Some(self.clone()),
                    waited: Duration::ZERO,
                });
            }
            if s.queued >= cfg.max_queued && !displace_lower(&mut s, priority) {
                return Err(Turned::Full);
            }
            s.next_id += 1;
            let id = s.next_id;
            let (tx, rx) = oneshot::channel();
            let level = s.levels.entry(priority).or_default();
            match level.tenants.iter_mut().find(|l| &l.tenant == tenant) {
                Some(line) => line.waiters.push_back(Waiter { id, tx }),
                None => level.tenants.push_back(Line {
                    tenant: tenant.clone(),
                    weight: weight.max(1),
                    served: 0,
                    waiters: VecDeque::from([Waiter { id, tx }]),
                }),
            }
            s.queued += 1;
            (id, rx)
        };
        // If this future is dropped while it waits (the client left), `queued` takes the waiter
        // out of the queue and `rx` drops a permit already handed over, which passes the place
        // on; neither holds the lock while the other runs.
        let mut rx = rx;
        let queued = Queued { queue: self, id };
        let wait = cfg.timeout.min(deadline.saturating_duration_since(started));
        let got = match tokio::time::timeout(wait, &mut rx).await {
            Ok(got) => {
                queued.taken_out();
                got.map_err(|_| Turned::Displaced)
            }
            Err(_) => {
                // Out of time: leave the queue — unless a place was handed over meanwhile.
                drop(queued);
                rx.try_recv().map_err(|_| Turned::Timeout)
            }
        };
        got.map(|mut permit| {
            permit.waited = started.elapsed();
            permit
        })
    }

    /// Takes waiter `id` out of the queue, if it is still there.
    fn remove(&self, id: u64) {
        let mut s = self.lock();
        let mut found = false;
        for level in s.levels.values_mut() {
            for line in &mut level.tenants {
                if let Some(at) = line.waiters.iter().position(|w| w.id == id) {
                    line.waiters.remove(at);
                    found = true;
                }
            }
            level.tenants.retain(|l| !l.waiters.is_empty());
        }
        s.levels.retain(|_, l| !l.tenants.is_empty());
        if found {
            s.queued -= 1;
        }
    }

    /// A running request finished: the most important waiter (tenants in weighted turn) takes
    /// its place — the permit itself, so the place passes on even if that waiter never looks.
    fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        let mut permit = Permit {
            queue: Some(self.clone()),
            waited: Duration::ZERO,
        };
        while let Some(w) = next_waiter(&mut s) {
            match w.tx.send(permit) {
                Ok(()) => return,           // the place passes on: `running` is unchanged
                Err(back) => permit = back, // that waiter has left; try the next
            }
        }
        // Nobody waits: the place is free. Defused, so dropping it does not release again.
        permit.queue = None;
        s.running -= 1;
    }
}

/// Takes the most important waiter out of the queue: the highest priority, tenants in weighted
/// turn within it.
fn next_waiter(s: &mut State) -> Option<Waiter> {
    loop {
        let mut entry = s.levels.last_entry()?;
        let level = entry.get_mut();
        let Some(mut line) = level.tenants.pop_front() else {
            entry.remove();
            continue;
        };
        let next = line.waiters.pop_front();
        line.served += 1;
        if line.served < line.weight && !line.waiters.is_empty() {
            level.tenants.push_front(line);
        } else if !line.waiters.is_empty() {
            line.served = 0;
            level.tenants.push_back(line);
        }
        if level.tenants.is_empty() {
            entry.remove();
        }
        if let Some(w) = next {
            s.queued -= 1;
            return Some(w);
        }
    }
}

/// Turns away a waiter of the lowest priority below `priority` — the newest of the tenant with
/// the most waiting there, so a flood pays for itself; `false` if there is none.
fn displace_lower(s: &mut State, priority: u8) -> bool {
    let Some(mut entry) = s.levels.first_entry() else {
        return false;
    };
    if *entry.key() >= priority {
        return false;
    }
    let level = entry.get_mut();
    if let Some(line) = level.tenants.iter_mut().max_by_key(|l| l.waiters.len()) {
        line.waiters.pop_back(); // dropping its sender tells it
    }
    level.tenants.retain(|l| !l.waiters.is_empty());
    if level.tenants.is_empty() {
        entry.remove();
    }
    s.queued -= 1;
    true
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `f` once with a waker that does nothing: the test decides when a waiter looks.
    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn cfg(concurrency: usize, queued: usize) -> QueueConfig {
        QueueConfig {
            max_concurrency: concurrency,
            max_queued: queued,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn places_go_by_priority_then_tenant_in_turn() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 10);
        let far = Instant::now() + Duration::from_secs(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = q.acquire(&c, 5, (&a, 1), far).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, prio, tenant) in [
            ("a-low-1", 1, a.clone()),
            ("a-low-2", 1, a.clone()),
            ("b-low-1", 1, b.clone()),
            ("a-high", 9, a.clone()),
        ] {
            let (q, c, order) = (q.clone(), c, order.clone());
            tasks.push(tokio::spawn(async move {
                let p = q.acquire(&c, prio, (&tenant, 1), far).await.unwrap();
                order.lock().unwrap().push(name);
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(q.queued(), 4);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a-high", "a-low-1", "b-low-1", "a-low-2"]);
    }

    #[tokio::test]
    async fn a_full_queue_turns_away_the_least_important_and_waiters_time_out() {
        let q = Arc::new(RouteQueue::default());
        let c = QueueConfig {
            timeout: Duration::from_millis(100),
            ..cfg(1, 1)
        };
        let t: Arc<str> = Arc::from("t");
        let far = Instant::now() + Duration::from_secs(10);
        let _running = q.acquire(&c, 5, (&t, 1), far).await.unwrap();
        let low = {
            let (q, t) = (q.clone(), t.clone());
            tokio::spawn(async move { q.acquire(&c, 1, (&t, 1), far).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(q.acquire(&c, 1, (&t, 1), far).await.unwrap_err(), Turned::Full);
        let high = {
            let (q, t) = (q.clone(), t.clone());
            tokio::spawn(async move { q.acquire(&c, 9, (&t, 1), far).await.map(|_| ()) })
        };
        assert_eq!(low.await.unwrap().unwrap_err(), Turned::Displaced);
        assert_eq!(
            high.await.unwrap().unwrap_err(),
            Turned::Timeout,
            "nothing finished in 100 ms"
        );
        assert_eq!(q.queued(), 0);
    }

    #[tokio::test]
    async fn a_heavier_tenant_takes_more_turns_but_never_all_of_them() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 100);
        let far = Instant::now() + Duration::from_secs(10);
        let (big, small): (Arc<str>, Arc<str>) = (Arc::from("big"), Arc::from("small"));
        let first = q.acquire(&c, 5, (&big, 3), far).await.unwrap();
        let order = Arc::new(Mutex::new(String::new()));
        let mut tasks = Vec::new();
        // The small tenant queues first, then a flood from the big one.
        for (tenant, weight, n) in [(small.clone(), 1, 4), (big.clone(), 3, 12)] {
            for _ in 0..n {
                let (q, order, tenant) = (q.clone(), order.clone(), tenant.clone());
                tasks.push(tokio::spawn(async move {
                    let p = q.acquire(&c, 5, (&tenant, weight), far).await.unwrap();
                    order.lock().unwrap().push_str(&tenant[..1]);
                    drop(p);
                }));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), "sbbbsbbbsbbbsbbb");
    }

    #[tokio::test]
    async fn a_full_queue_turns_away_the_noisiest_tenants_newest() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 4);
        let far = Instant::now() + Duration::from_secs(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let held = q.acquire(&c, 5, (&a, 1), far).await.unwrap();
        let mut low = Vec::new();
        // The noisy tenant queues first; the quiet one's single waiter joins last.
        for (name, tenant) in [("a1", &a), ("a2", &a), ("a3", &a), ("b1", &b)] {
            let (q, tenant) = (q.clone(), tenant.clone());
            low.push((
                name,
                tokio::spawn(async move { q.acquire(&c, 1, (&tenant, 1), far).await.map(drop) }),
            ));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let high = {
            let q = q.clone();
            tokio::spawn(async move { q.acquire(&c, 9, (&b, 1), far).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        high.await.unwrap().unwrap();
        let mut outcome = Vec::new();
        for (name, t) in low {
            outcome.push((name, t.await.unwrap().is_ok()));
        }
        assert_eq!(outcome, [("a1", true), ("a2", true), ("a3", false), ("b1", true)]);
    }

    #[tokio::test]
    async fn a_place_handed_to_a_waiter_that_leaves_before_it_looks_is_not_lost() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 10);
        let far = Instant::now() + Duration::from_secs(10);
        let t: Arc<str> = Arc::from("t");
        let running = q.acquire(&c, 5, (&t, 1), far).await.unwrap();
        let mut waiter = Box::pin(q.acquire(&c, 5, (&t, 1), far));
        assert!(poll_once(waiter.as_mut()).is_pending());
        drop(running); // the place goes to the waiter…
        drop(waiter); // …which leaves before it looks
        assert_eq!((q.running(), q.queued()), (0, 0), "the place is free again");
        let _again = q.acquire(&c, 5, (&t, 1), far).await.unwrap();
        assert_eq!(q.running(), 1);
    }

    #[tokio::test]
    async fn a_handed_place_whose_waiter_left_passes_to_the_next() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 10);
        let far = Instant::now() + Duration::from_secs(10);
        let t: Arc<str> = Arc::from("t");
        let running = q.acquire(&c, 5, (&t, 1), far).await.unwrap();
        let mut first = Box::pin(q.acquire(&c, 5, (&t, 1), far));
        let mut second = Box::pin(q.acquire(&c, 5, (&t, 1), far));
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        drop(running);
        drop(first);
        assert_eq!((q.running(), q.queued()), (1, 0), "the second has it now");
        let Poll::Ready(Ok(place)) = poll_once(second.as_mut()) else {
            panic!("the second waiter has the place");
        };
        drop(place);
        assert_eq!((q.running(), q.queued()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_leaves_the_queue_at_once() {
        let q = Arc::new(RouteQueue::default());
        let c = cfg(1, 1);
        let far = Instant::now() + Duration::from_secs(10);
        let t: Arc<str> = Arc::from("t");
        let running = q.acquire(&c, 5, (&t, 1), far).await.unwrap();
        let mut waiter = Box::pin(q.acquire(&c, 5, (&t, 1), far));
        assert!(poll_once(waiter.as_mut()).is_pending());
        assert_eq!(q.queued(), 1);
        drop(waiter);
        assert_eq!((q.running(), q.queued()), (1, 0), "its slot in the queue is free");
        let mut next = Box::pin(q.acquire(&c, 5, (&t, 1), far));
        assert!(poll_once(next.as_mut()).is_pending(), "queued, not turned away as full");
        drop(running);
        assert!(matches!(poll_once(next.as_mut()), Poll::Ready(Ok(_))));
        assert_eq!((q.running(), q.queued()), (0, 0));
    }

    proptest::proptest! {
        /// However waiters of any priority and tenant arrive, and whenever they leave — while
        /// queued, after a place was handed to them but before they look, or holding it — no
        /// place is lost or counted twice: nobody waits while a place is free, the queue keeps
        /// its bound, everyone still waiting at the end is served, and the route ends with
        /// nothing running and nothing queued. Futures are polled by hand, so "before it looks"
        /// is exact.
        #[test]
        fn no_place_is_lost_however_waiters_leave(
            concurrency in 1usize..4,
            bound in 1usize..8,
            ops in proptest::collection::vec((0u8..5, 0usize..64), 1..80),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async move {
                let q = Arc::new(RouteQueue::default());
                let c = cfg(concurrency, bound);
                let far = Instant::now() + Duration::from_secs(60);
                let tenants: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
                let mut waiting = Vec::new();
                let mut held = Vec::new();
                for (op, n) in ops {
                    match op {
                        // Arrives (and looks once).
                        0 | 1 => {
                            let (prio, tenant, weight) = ((n % 4) as u8, &tenants[n / 4 % 3], (n / 12 % 3) as u32 + 1);
                            let mut f = Box::pin(q.acquire(&c, prio, (tenant, weight), far));
                            match poll_once(f.as_mut()) {
                                Poll::Ready(Ok(p)) => held.push(p),
                                Poll::Ready(Err(turned)) => assert_eq!(turned, Turned::Full),
                                Poll::Pending => waiting.push(f),
                            }
                        }
                        // A waiter looks.
                        2 if !waiting.is_empty() => {
                            let i = n % waiting.len();
                            if let Poll::Ready(r) = poll_once(waiting[i].as_mut()) {
                                drop(waiting.swap_remove(i));
                                match r {
                                    Ok(p) => held.push(p),
                                    Err(turned) => assert_eq!(turned, Turned::Displaced),
                                }
                            }
                        }
                        // A waiter leaves without looking again: queued, or handed a place.
                        3 if !waiting.is_empty() => drop(waiting.swap_remove(n % waiting.len())),
                        // A running request finishes (or its client leaves).
                        4 if !held.is_empty() => drop(held.swap_remove(n % held.len())),
                        _ => {}
                    }
                    let (running, queued) = (q.running(), q.queued());
                    assert!(running >= held.len() && running <= concurrency, "{running} running, {} held", held.len());
                    assert!(queued <= bound && queued <= waiting.len(), "{queued} queued");
                    assert!(queued == 0 || running == concurrency, "{queued} wait while a place is free");
                }
                held.clear();
                // Each round, every waiter holding a handed place finishes at once and passes it on.
                for _ in 0..=waiting.len() {
                    waiting.retain_mut(|f| poll_once(f.as_mut()).is_pending());
                }
                assert!(waiting.is_empty(), "{} would wait forever", waiting.len());
                assert_eq!((q.running(), q.queued()), (0, 0));
            });
        }

        /// Within one priority, places go to tenants in weighted turn: the order served is
        /// exactly what a reference weighted round-robin over the tenants' lines gives.
        #[test]
        fn tenants_are_served_in_weighted_turn(
            arrivals in proptest::collection::vec(0usize..4, 1..40),
            weights in proptest::collection::vec(1u32..4, 4),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let served = rt.block_on(async {
                let q = Arc::new(RouteQueue::default());
                let c = cfg(1, 100);
                let far = Instant::now() + Duration::from_secs(60);
                let names: Vec<Arc<str>> = ["t0", "t1", "t2", "t3"].into_iter().map(Arc::from).collect();
                let held = q.acquire(&c, 5, (&names[0], 1), far).await.unwrap();
                let served = Arc::new(Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for &t in &arrivals {
                    let (queue, served, name, w) = (q.clone(), served.clone(), names[t].clone(), weights[t]);
                    tasks.push(tokio::spawn(async move {
                        let p = queue.acquire(&c, 5, (&name, w), far).await.unwrap();
                        served.lock().unwrap().push(t);
                        drop(p);
                    }));
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                }
                drop(held);
                for t in tasks {
                    t.await.unwrap();
                }
                served.lock().unwrap().clone()
            });
            // The reference: lines in order of each tenant's first arrival.
            let mut lines: VecDeque<(usize, u32, usize)> = VecDeque::new(); // (tenant, turns had, waiting)
            for &t in &arrivals {
                match lines.iter_mut().find(|l| l.0 == t) {
                    Some(l) => l.2 += 1,
                    None => lines.push_back((t, 0, 1)),
                }
            }
            let mut expected = Vec::new();
            while let Some(mut l) = lines.pop_front() {
                expected.push(l.0);
                l.1 += 1;
                l.2 -= 1;
                if l.2 > 0 && l.1 < weights[l.0] {
                    lines.push_front(l);
                } else if l.2 > 0 {
                    l.1 = 0;
                    lines.push_back(l);
                }
            }
            proptest::prop_assert_eq!(served, expected);
        }

        /// However requests of any priority, tenant and weight arrive at a full route, the queue
        /// never holds more than its bound; every one is either served or turned away, once; and
        /// those served come out highest priority first.
        #[test]
        fn the_queue_is_bounded_and_serves_by_priority(
            arrivals in proptest::collection::vec((0u8..4, 0usize..3, 1u32..4), 1..40),
            bound in 1usize..12,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async move {
                let q = Arc::new(RouteQueue::default());
                let c = cfg(1, bound);
                let far = Instant::now() + Duration::from_secs(60);
                let tenants: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
                let held = q.acquire(&c, 9, (&tenants[0], 1), far).await.unwrap();
                let served = Arc::new(Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for (prio, tenant, weight) in arrivals.iter().copied() {
                    let (queue, served, tenant) = (q.clone(), served.clone(), tenants[tenant].clone());
                    tasks.push(tokio::spawn(async move {
                        match queue.acquire(&c, prio, (&tenant, weight), far).await {
                            Ok(p) => {
                                served.lock().unwrap().push(prio);
                                drop(p);
                                None
                            }
                            Err(turned) => Some(turned),
                        }
                    }));
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    assert!(q.queued() <= bound, "{} waiting, bound {bound}", q.queued());
                }
                let waiting = q.queued();
                drop(held);
                let mut turned = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        None => {}
                        Some(Turned::Full | Turned::Displaced) => turned += 1,
                        Some(Turned::Timeout) => panic!("nobody waits a minute here"),
                    }
                }
                let served = served.lock().unwrap().clone();
                assert_eq!(served.len() + turned, arrivals.len(), "each once");
                assert_eq!(served.len(), waiting, "those waiting at the release are served");
                assert!(served.windows(2).all(|w| w[0] >= w[1]), "by priority: {served:?}");
                assert_eq!(q.queued(), 0);
            });
        }
    }
}
