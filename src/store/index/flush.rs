//! The group flush: many concurrent commits share one fsync of the index.

use std::io;
use std::sync::{Condvar, Mutex};

/// Group commit: a caller needs a flush that *started* after its write; while one
/// flush runs, later callers wait and the next flush serves all of them at once.
#[derive(Default)]
pub(super) struct GroupFlush {
    state: Mutex<FlushState>,
    done: Condvar,
}

#[derive(Default)]
struct FlushState {
    started: u64,
    completed: u64,
    running: bool,
    waiting: usize,
}

impl GroupFlush {
    pub(super) fn flush(&self, flush: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let needed = state.started + 1;
        loop {
            if state.completed >= needed {
                return Ok(());
            }
            if state.running {
                state.waiting += 1;
                state = self.done.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
                state.waiting -= 1;
            } else {
                state.running = true;
                state.started += 1;
                let generation = state.started;
                drop(state);
                // Even if the flush panics, the guard lets the next caller run one.
                let mut running = Running { group: self, completed: None };
                let result = flush();
                if result.is_ok() {
                    running.completed = Some(generation);
                }
                drop(running);
                // A failed flush fails its caller; waiters retry with their own flush.
                result?;
                state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}

/// Ends a flush, however it ends: records what it completed and wakes the waiters, in
/// one critical section so no waiter starts a flush it does not need.
struct Running<'a> {
    group: &'a GroupFlush,
    completed: Option<u64>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.group.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.running = false;
        if let Some(generation) = self.completed {
            state.completed = generation;
        }
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn callers_arriving_during_a_flush_share_the_next_one() {
        let group = Arc::new(GroupFlush::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let call = |group: Arc<GroupFlush>, flushes: Arc<AtomicUsize>, gate: Arc<Mutex<_>>| {
            std::thread::spawn(move || {
                group.flush(|| {
                    // The first flush holds until the test releases it.
                    if flushes.fetch_add(1, Ordering::SeqCst) == 0 {
                        let gate: std::sync::MutexGuard<'_, std::sync::mpsc::Receiver<()>> =
                            gate.lock().unwrap();
                        gate.recv().unwrap();
                    }
                    Ok(())
                })
            })
        };
        let first = call(group.clone(), flushes.clone(), gate.clone());
        while flushes.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let later: Vec<_> =
            (0..15).map(|_| call(group.clone(), flushes.clone(), gate.clone())).collect();
        while group.state.lock().unwrap().waiting < 15 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        for t in later {
            t.join().unwrap().unwrap();
        }
        // Fifteen callers wrote while the first flush ran: one more flush covers them all.
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_flush_does_not_block_later_commits() {
        let group = GroupFlush::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.flush(|| panic!("sled assertion"))
        }));
        assert!(panicked.is_err());
        let flushes = AtomicUsize::new(0);
        group
            .flush(|| {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);
    }
}
