//! What waits to be written to one client of the connection manager.
//!
//! Every change to the list goes to every listed client, so in a join storm of a thousand
//! servants the registry queues half a million lines, under its lock. Waking a client's
//! writer thread for each of them (a futex call, then a thread switch) is what made the
//! storm slow: on two cores the joins queued up behind the wake-ups. So an outbox is a
//! queue behind a `Mutex` with a `Condvar`, and a change is queued without waking anyone
//! (`push_change`): the manager's `publish` thread wakes each writer once the changes of
//! a moment have gathered (`nudge`), and the writer sends them in one write. Answers to
//! the client's own requests (`push`) wake the writer at once.
//!
//! An answer to a client whose writer is idle with nothing queued is written by the
//! client's own reading thread instead (`push_answer`, `direct_done`): handing it to the
//! writer cost a wake-up and a thread switch per request, most of a round trip's CPU.
//! While that write is under way the writer holds back, so whatever is queued meanwhile
//! follows the answer, as it would have.
//!
//! An outbox is bounded in bytes, not lines: an answer may be a whole list of thousands
//! of servants. A client that lets its outbox fill is not reading; the registry drops it,
//! and it reconnects and asks for the list, which is cheaper than buffering without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes counted for each queued line besides its text (its `Arc` and queue slot).
const LINE_OVERHEAD: usize = 32;

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The client is not reading: its outbox holds its limit already.
    Full,
    /// The connection is closing (or its writer failed).
    Closed,
}

/// One client's queue of lines, shared by whoever queues (the client's own thread, the
/// registry) and its writer thread.
pub struct Outbox {
    state: Mutex<State>,
    ready: Condvar,
    limit: usize,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Arc<str>>,
    bytes: usize,
    closed: bool,
    /// The writer sleeps in `take`: a new line must wake it.
    waiting: bool,
    /// Changes are queued that nobody woke the writer for yet.
    nudge_due: bool,
    /// A line that must go out now (an answer) is queued.
    urgent: bool,
    /// The reading thread is writing an answer itself: the writer waits.
    direct: bool,
}

/// What became of an answer (`push_answer`).
#[derive(Debug)]
pub enum Answer {
    /// Write it yourself now, then call `direct_done`.
    Direct(Arc<str>),
    /// Queued for the writer.
    Queued,
}

impl Outbox {
    /// An outbox that holds up to `limit` bytes.
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one line (without its `\n`) and wakes the writer. Never blocks.
    pub fn push(&self, line: Arc<str>) -> Result<(), Refused> {
        let mut st = self.queue(line)?;
        st.urgent = true;
        self.wake(&mut st);
        Ok(())
    }

    /// An answer to the client's own request: handed back to be written by the caller when
    /// the writer is idle and nothing is queued (then `direct_done` must follow), queued
    /// otherwise. Never blocks.
    pub fn push_answer(&self, line: Arc<str>) -> Result<Answer, Refused> {
        {
            let mut st = self.lock();
            if st.closed {
                return Err(Refused::Closed);
            }
            if st.lines.is_empty() && st.waiting && !st.direct {
                st.direct = true;
                return Ok(Answer::Direct(line));
            }
        }
        self.push(line).map(|()| Answer::Queued)
    }

    /// Claims the writing of the next answer for the caller, as `push_answer` does, when
    /// the writer is idle and nothing is queued (then `direct_done` or `direct_give_back`
    /// must follow); false otherwise.
    pub fn claim_direct(&self) -> bool {
        let mut st = self.lock();
        let free = !st.closed && st.lines.is_empty() && st.waiting && !st.direct;
        if free {
            st.direct = true;
        }
        free
    }

    /// The answer handed back by `push_answer` could not be written at once after all (the
    /// socket is full): the writer writes it, ahead of what was queued meanwhile.
    pub fn direct_give_back(&self, line: Arc<str>) {
        let mut st = self.lock();
        st.direct = false;
        st.bytes += line.len() + LINE_OVERHEAD;
        st.lines.push_front(line);
        st.urgent = true;
        self.wake(&mut st);
    }

    /// The answer handed back by `push_answer` is written (`ok`) or could not be (the
    /// outbox closes); the writer takes over what was queued meanwhile.
    pub fn direct_done(&self, ok: bool) {
        let mut st = self.lock();
        st.direct = false;
        if !ok {
            st.closed = true;
        }
        if !st.lines.is_empty() || st.closed {
            st.urgent = true;
            self.wake(&mut st);
        }
    }

    /// Queues a change without waking the writer. True when the writer needs a `nudge`
    /// for it (the first change since the last nudge).
    pub fn push_change(&self, line: Arc<str>) -> Result<bool, Refused> {
        let mut st = self.queue(line)?;
        Ok(!std::mem::replace(&mut st.nudge_due, true))
    }

    /// Wakes the writer for the changes queued since the last nudge.
    pub fn nudge(&self) {
        let mut st = self.lock();
        st.nudge_due = false;
        self.wake(&mut st);
    }

    fn queue(&self, line: Arc<str>) -> Result<MutexGuard<'_, State>, Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        let size = line.len() + LINE_OVERHEAD;
        // An empty outbox takes any one line, however long: a whole list must get through.
        if !st.lines.is_empty() && st.bytes + size > self.limit {
            return Err(Refused::Full);
        }
        st.bytes += size;
        st.lines.push_back(line);
        Ok(st)
    }

    fn wake(&self, st: &mut State) {
        if st.waiting {
            st.waiting = false;
            self.ready.notify_one();
        }
    }

    /// No more lines will be queued: the writer writes what is queued, then ends. Also
    /// called by the writer when the connection fails, so that queueing fails from then on.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.wake(&mut st);
    }

    /// For the writer: waits for lines and moves all of them into `into` (oldest first).
    /// Changes alone do not end the wait until they are nudged. False once the outbox is
    /// closed and empty.
    pub fn take(&self, into: &mut Vec<Arc<str>>) -> bool {
        let mut st = self.lock();
        while st.direct || st.lines.is_empty() || (st.nudge_due && !st.urgent && !st.closed) {
            if st.closed && !st.direct && st.lines.is_empty() {
                return false;
            }
            st.waiting = true;
            st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        into.extend(st.lines.drain(..));
        st.bytes = 0;
        st.nudge_due = false;
        st.urgent = false;
        true
    }

    /// Moves what is queued now into `into` (oldest first), without waiting.
    #[cfg(test)]
    pub fn take_now(&self, into: &mut Vec<Arc<str>>) {
        let mut st = self.lock();
        into.extend(st.lines.drain(..));
        st.bytes = 0;
        st.nudge_due = false;
        st.urgent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn bounded_in_bytes_but_one_line_always_fits() {
        let o = Outbox::new(100);
        let big: Arc<str> = Arc::from("x".repeat(500));
        assert_eq!(
            o.push(Arc::clone(&big)),
            Ok(()),
            "an empty outbox takes a whole list"
        );
        assert_eq!(o.push(Arc::from("y")), Err(Refused::Full));
        let mut got = Vec::new();
        o.take_now(&mut got);
        assert_eq!(got.len(), 1);
        assert_eq!(o.push(Arc::from("y")), Ok(()));
        o.close();
        assert_eq!(o.push(Arc::from("z")), Err(Refused::Closed));
        got.clear();
        assert!(
            o.take(&mut got),
            "what was queued before closing is still written"
        );
        assert!(!o.take(&mut got));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn changes_wait_for_a_nudge() {
        let o = Arc::new(Outbox::new(1 << 20));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let o = Arc::clone(&o);
            thread::spawn(move || {
                let mut got = Vec::new();
                while o.take(&mut got) {
                    tx.send(got.len()).unwrap();
                    got.clear();
                }
            })
        };
        assert_eq!(o.push_change(Arc::from("<join 1>")), Ok(true));
        assert_eq!(
            o.push_change(Arc::from("<join 2>")),
            Ok(false),
            "one nudge is due"
        );
        let quiet = rx.recv_timeout(std::time::Duration::from_millis(100));
        assert!(quiet.is_err(), "changes alone do not wake the writer");
        o.nudge();
        assert_eq!(rx.recv().unwrap(), 2, "both changes in one go");
        o.push_change(Arc::from("<join 3>")).unwrap();
        o.push(Arc::from("<peers>")).unwrap();
        assert_eq!(rx.recv().unwrap(), 2, "an answer wakes the writer at once");
        o.close();
        writer.join().unwrap();
    }

    #[test]
    fn an_answer_to_an_idle_writer_is_written_by_the_asker_and_what_follows_waits() {
        let o = Arc::new(Outbox::new(1 << 20));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let o = Arc::clone(&o);
            thread::spawn(move || {
                let mut got = Vec::new();
                while o.take(&mut got) {
                    tx.send(got.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                        .unwrap();
                    got.clear();
                }
            })
        };
        // Wait for the writer to sleep.
        while !o.lock().waiting {
            thread::yield_now();
        }
        let Ok(Answer::Direct(line)) = o.push_answer(Arc::from("<peers>")) else {
            panic!("an idle writer: the asker writes");
        };
        assert_eq!(&*line, "<peers>");
        // A push meanwhile waits for the direct write to be done.
        o.push(Arc::from("<join>")).unwrap();
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        o.direct_done(true);
        assert_eq!(rx.recv().unwrap(), vec!["<join>"]);
        // A busy outbox queues the answer.
        o.push_change(Arc::from("<leave>")).unwrap();
        assert!(matches!(
            o.push_answer(Arc::from("<peers>")),
            Ok(Answer::Queued)
        ));
        assert_eq!(rx.recv().unwrap(), vec!["<leave>", "<peers>"]);
        o.close();
        writer.join().unwrap();
    }

    #[test]
    fn a_waiting_writer_is_woken_and_closing_ends_it() {
        let o = Arc::new(Outbox::new(1 << 20));
        let writer = {
            let o = Arc::clone(&o);
            thread::spawn(move || {
                let mut all = Vec::new();
                while o.take(&mut all) {}
                all
            })
        };
        for i in 0..1000 {
            o.push(Arc::from(i.to_string())).unwrap();
        }
        o.close();
        let all = writer.join().unwrap();
        let want: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(all.iter().map(|s| s.to_string()).collect::<Vec<_>>(), want);
    }
}
