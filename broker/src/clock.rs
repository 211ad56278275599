//! Wall-clock time, injected wherever time is data: arrival timestamps, iterator expiry,
//! retention and the rolling reshard window.
//!
//! The broker reads time only through [`Clock`]. A test clock runs at real speed but can be
//! moved forward (`--test-clock`), so tests can expire iterators and records without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The broker's wall clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { offset_ms: None }
    }

    /// The system clock plus an offset that [`Clock::advance`] can increase.
    pub fn adjustable() -> Clock {
        Clock {
            offset_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Whether this clock can be advanced.
    pub fn is_adjustable(&self) -> bool {
        self.offset_ms.is_some()
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> Millis {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        system
            + self
                .offset_ms
                .as_ref()
                .map_or(0, |o| o.load(Ordering::Relaxed))
    }

    /// Moves an adjustable clock forward. Returns false on the system clock.
    pub fn advance(&self, ms: Millis) -> bool {
        match &self.offset_ms {
            Some(o) => {
                o.fetch_add(ms.max(0), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustable_clock_moves_forward() {
        let c = Clock::adjustable();
        let before = c.now_ms();
        assert!(c.advance(3_600_000));
        assert!(c.now_ms() >= before + 3_600_000);
        assert!(!Clock::system().advance(1));
    }
}
