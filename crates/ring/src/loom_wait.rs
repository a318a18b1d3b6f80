//! Loom model of the wait list alone (the ring-level models are in `tests/loom.rs`): a wake
//! requested while a reader holds the list's lock must be served by that reader.

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::task::{Wake, Waker};

use loom::thread;

use crate::sync::Arc;
use crate::wait::WaitList;

#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

#[test]
fn a_notify_during_a_registration_still_wakes_every_earlier_waker() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound.get_or_insert(3);
    b.check(|| {
        let list = Arc::new(WaitList::new());
        let early = StdArc::new(Count::default());
        list.register(&Waker::from(early.clone()), None);
        let other = list.clone();
        let t = thread::spawn(move || {
            // Another reader registering (so holding the lock) and withdrawing.
            let late = Waker::from(StdArc::new(Count::default()));
            let reg = other.register(&late, None);
            other.cancel(reg);
        });
        list.notify(&mut Vec::new());
        t.join().unwrap();
        assert_eq!(early.0.load(StdOrdering::SeqCst), 1);
    });
}
