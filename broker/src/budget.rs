//! The broker-wide in-flight memory budget (`max_inflight_bytes`).
//!
//! Every request holds, at any moment, only what it has actually received (request bodies)
//! or is about to produce (a GetRecords answer): it [`Budget::open`]s a [`Reservation`]
//! declaring the most it may need — its `Content-Length` (or the body limit when it sends
//! none) plus its answer — and then [`Reservation::grow`]s it as bytes arrive. So a client
//! that sends headers and then nothing, or trickles a body, holds (almost) nothing, and a few
//! such clients cannot starve the rest.
//!
//! Growing reservations on demand could deadlock: many bodies half received, the budget
//! spent, each waiting for more. A grant is therefore only made when it leaves the budget in
//! a *safe* state (the banker's algorithm, for one resource): an order exists in which every
//! open reservation can reach its declared need from what is free plus what the ones before
//! it release. A grant that would make the state unsafe waits until enough is released. A
//! safe state always lets some request finish, so a burst larger than the budget becomes
//! waiting (back-pressure), never a deadlock; and requests whose client stops sending are
//! ended by the server's body timeouts, which releases what they held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The budget: a fixed number of bytes shared by every request in flight.
#[derive(Debug)]
pub struct Budget {
    total: u64,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug, Default)]
struct State {
    free: u64,
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// The remaining needs of open reservations, as a multiset (need → count), so the
    /// common case — everything still needed fits in what is free — is checked at once.
    needs: BTreeMap<u64, usize>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    held: u64,
    remaining: u64,
}

impl State {
    fn add_need(&mut self, need: u64) {
        if need > 0 {
            *self.needs.entry(need).or_default() += 1;
        }
    }

    fn remove_need(&mut self, need: u64) {
        if need == 0 {
            return;
        }
        if let Some(n) = self.needs.get_mut(&need) {
            *n -= 1;
            if *n == 0 {
                self.needs.remove(&need);
            }
        }
    }

    /// Whether giving `bytes` more to reservation `id` leaves a safe state.
    fn can_grant(&self, id: u64, bytes: u64) -> bool {
        let Some(entry) = self.open.get(&id) else {
            return false;
        };
        if bytes > self.free {
            return false;
        }
        let free = self.free - bytes;
        let mine = entry.remaining.saturating_sub(bytes);
        // Fast path: every open reservation could finish from what stays free.
        let largest_other = self.needs.keys().next_back().copied().unwrap_or(0);
        if free >= largest_other.max(mine) {
            return true;
        }
        // The banker's check: finish the smallest needs first; each one that finishes
        // releases what it holds.
        let mut order: Vec<Entry> = self
            .open
            .iter()
            .map(|(&k, &e)| {
                if k == id {
                    Entry {
                        held: e.held + bytes,
                        remaining: mine,
                    }
                } else {
                    e
                }
            })
            .collect();
        order.sort_unstable_by_key(|e| e.remaining);
        let mut avail = free;
        for e in order {
            if e.remaining > avail {
                return false;
            }
            avail += e.held;
        }
        true
    }
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Arc<Budget> {
        Arc::new(Budget {
            total,
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
            released: Notify::new(),
        })
    }

    /// The budget's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by requests now.
    pub fn held(&self) -> u64 {
        self.total - self.state.lock().free
    }

    /// Requests holding or expecting part of the budget now.
    pub fn open_reservations(&self) -> usize {
        self.state.lock().open.len()
    }

    /// Opens a reservation that may grow to `need` bytes (capped at the whole budget);
    /// it holds nothing yet. Dropping it releases whatever it holds.
    pub fn open(self: &Arc<Self>, need: u64) -> Reservation {
        let need = need.min(self.total);
        let mut s = self.state.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.open.insert(
            id,
            Entry {
                held: 0,
                remaining: need,
            },
        );
        s.add_need(need);
        Reservation {
            budget: self.clone(),
            id,
        }
    }

    fn try_grant(&self, id: u64, bytes: u64) -> bool {
        let mut s = self.state.lock();
        // A request that sends more than it declared (a chunked body has no declaration;
        // its need is the body limit) raises its own need first.
        let Some(entry) = s.open.get(&id).copied() else {
            return false;
        };
        if bytes > entry.remaining {
            s.remove_need(entry.remaining);
            s.add_need(bytes);
            s.open.get_mut(&id).expect("present").remaining = bytes;
        }
        if !s.can_grant(id, bytes) {
            return false;
        }
        let e = s.open.get_mut(&id).expect("present");
        let before = e.remaining;
        e.held += bytes;
        e.remaining -= bytes;
        let after = e.remaining;
        s.free -= bytes;
        s.remove_need(before);
        s.add_need(after);
        true
    }

    fn close(&self, id: u64) {
        let mut s = self.state.lock();
        if let Some(e) = s.open.remove(&id) {
            s.free += e.held;
            s.remove_need(e.remaining);
        }
        drop(s);
        self.released.notify_waiters();
    }
}

/// One request's share of the budget.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    id: u64,
}

impl Reservation {
    /// Takes `bytes` more from the budget, waiting while that would leave it unsafe.
    pub async fn grow(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let bytes = bytes.min(self.budget.total);
        loop {
            let released = self.budget.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.budget.try_grant(self.id, bytes) {
                return;
            }
            released.await;
        }
    }

    /// Takes `bytes` more now if that is safe.
    pub fn try_grow(&self, bytes: u64) -> bool {
        self.budget.try_grant(self.id, bytes.min(self.budget.total))
    }

    /// Bytes this reservation holds.
    pub fn held(&self) -> u64 {
        self.budget
            .state
            .lock()
            .open
            .get(&self.id)
            .map_or(0, |e| e.held)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.close(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reservation_holds_only_what_it_was_granted() {
        let b = Budget::new(100);
        let r = b.open(80);
        assert_eq!(b.held(), 0);
        r.grow(30).await;
        assert_eq!((b.held(), r.held()), (30, 30));
        drop(r);
        assert_eq!(b.held(), 0);
        assert_eq!(b.open_reservations(), 0);
    }

    #[tokio::test]
    async fn idle_declarations_do_not_block_others() {
        let b = Budget::new(100);
        // Many requests that declared the most and sent nothing.
        let stalled: Vec<_> = (0..1000).map(|_| b.open(100)).collect();
        let r = b.open(60);
        assert!(r.try_grow(60), "a live request is served at once");
        drop(r);
        drop(stalled);
    }

    #[tokio::test]
    async fn unsafe_grants_wait_instead_of_deadlocking() {
        let b = Budget::new(100);
        let a = b.open(60);
        let c = b.open(60);
        assert!(a.try_grow(50));
        // Giving c 50 would leave 0 free while both still need 10: neither could finish.
        assert!(!c.try_grow(50));
        // c may take what still leaves a finish order (a finishes from the 10 left).
        assert!(c.try_grow(40));
        assert!(!c.try_grow(1));
        assert!(a.try_grow(10));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let c2 = c;
                c2.grow(20).await;
                assert_eq!(c2.held(), 60);
                drop(c2);
                b.held()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "c waits while a holds 60");
        drop(a);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_budget_completes() {
        // 40 requests of 30 against a budget of 100, each growing in steps of 5.
        let b = Budget::new(100);
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let r = b.open(30);
                for _ in 0..6 {
                    r.grow(5).await;
                    tokio::task::yield_now().await;
                }
                assert!(b.held() <= 100);
            }));
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("no deadlock");
        assert_eq!(b.held(), 0);
    }

    #[tokio::test]
    async fn sending_more_than_declared_raises_the_need() {
        let b = Budget::new(100);
        let r = b.open(10);
        r.grow(30).await;
        assert_eq!(r.held(), 30);
    }
}
