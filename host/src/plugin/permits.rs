//! Call permits: at most as many plugin calls at once as the instance pool has slots.
//!
//! The pooling allocator pre-allocates `max_instances` slots and refuses an instantiation
//! past them. Kits render in parallel and a kit's validators run in parallel too, so the
//! number of calls in flight is not bounded by any one loop; a call waits here for a slot
//! instead of failing the kit. A holder never waits for a second permit (one call is one
//! instance), so waiting cannot deadlock.

use std::sync::{Condvar, Mutex, PoisonError};

/// A counting semaphore over the engine's instance slots.
pub(crate) struct Permits {
    free: Mutex<u32>,
    freed: Condvar,
}

/// One slot, given back when dropped.
pub(crate) struct Permit<'a> {
    permits: &'a Permits,
}

impl Permits {
    /// `slots` permits (at least one).
    pub(crate) fn new(slots: u32) -> Self {
        Permits {
            free: Mutex::new(slots.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot and takes it.
    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit { permits: self }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self.permits.free.lock().unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        self.permits.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn never_more_holders_than_slots() {
        let permits = Permits::new(2);
        let holding = AtomicU32::new(0);
        let most = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let _permit = permits.acquire();
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        holding.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "two slots, eight callers: {most} held at once"
        );
    }
}
