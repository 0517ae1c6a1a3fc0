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
