//! A crossbeam channel whose one receiving thread sleeps in `thread::park` instead of in
//! the channel's own wait, rung by every send.
//!
//! Why: crossbeam's blocking receive on an empty channel spins, then calls `sched_yield`
//! four times, then sleeps. A servant's `overlay` thread and its `nsend-` threads each
//! go idle several times per chat line, and on a machine running hundreds of servants
//! there is always another thread ready, so each yield is a context switch: `perf` on an
//! overlay servant among 50 found a quarter of its time in `sched_yield` and switching,
//! 12 context switches per line. Parked, a thread sleeps at once and costs one switch
//! when rung; a ring to a thread that is not asleep is one atomic operation.
//!
//! The queue stays crossbeam's (bounded, `try_send` for a full queue, a blocking `send`
//! that waits for room); only the receiver's sleep changes. A waiter is for one thread:
//! the first that receives on it.

use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendError, Sender, TryRecvError, TrySendError,
};

/// The receiving thread, once it has received for the first time.
#[derive(Default)]
struct Door(OnceLock<Thread>);

impl Door {
    fn ring(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// The sending side; clones ring the same receiver. The last one dropped rings too, so
/// the receiver sees the channel closed.
pub struct Bell<T> {
    tx: Option<Sender<T>>,
    door: Arc<Door>,
}

/// The receiving side.
pub struct Waiter<T> {
    rx: Receiver<T>,
    door: Arc<Door>,
}

/// A channel of `cap` items.
pub fn bounded<T>(cap: usize) -> (Bell<T>, Waiter<T>) {
    let (tx, rx) = crossbeam_channel::bounded(cap);
    let door = Arc::new(Door::default());
    (
        Bell {
            tx: Some(tx),
            door: Arc::clone(&door),
        },
        Waiter { rx, door },
    )
}

impl<T> Bell<T> {
    fn tx(&self) -> &Sender<T> {
        self.tx.as_ref().expect("taken only when dropped")
    }

    /// Waits for room when the queue is full.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.tx().send(item)?;
        self.door.ring();
        Ok(())
    }

    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx().try_send(item)?;
        self.door.ring();
        Ok(())
    }
}

impl<T> Clone for Bell<T> {
    fn clone(&self) -> Self {
        Bell {
            tx: self.tx.clone(),
            door: Arc::clone(&self.door),
        }
    }
}

impl<T> Drop for Bell<T> {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.door.ring();
    }
}

impl<T> Waiter<T> {
    /// The next item, waiting at most `wait`.
    pub fn recv_timeout(&self, wait: Duration) -> Result<T, RecvTimeoutError> {
        let me = self.door.0.get_or_init(thread::current);
        debug_assert_eq!(
            me.id(),
            thread::current().id(),
            "a waiter is for one thread"
        );
        let deadline = Instant::now() + wait;
        loop {
            match self.rx.try_recv() {
                Ok(item) => return Ok(item),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            // Returns at once when rung since the last look; may also return early.
            thread::park_timeout(deadline - now);
        }
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_receiver_is_rung_by_each_send_and_sees_the_last_sender_go() {
        let (bell, waiter) = bounded::<u32>(4);
        let far = bell.clone();
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match waiter.recv_timeout(Duration::from_secs(10)) {
                    Ok(v) => got.push(v),
                    Err(RecvTimeoutError::Disconnected) => return got,
                    Err(RecvTimeoutError::Timeout) => panic!("not rung"),
                }
            }
        });
        for i in 0..100 {
            far.send(i).unwrap();
        }
        drop(far);
        thread::sleep(Duration::from_millis(50));
        bell.send(100).unwrap();
        drop(bell);
        assert_eq!(t.join().unwrap(), (0..=100).collect::<Vec<_>>());
    }

    #[test]
    fn a_receiver_that_nobody_rings_times_out() {
        let (_bell, waiter) = bounded::<u32>(1);
        let t0 = Instant::now();
        assert_eq!(
            waiter.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }
}
