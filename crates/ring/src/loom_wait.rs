//! Loom models of the wait list alone (the ring-level models are in `tests/loom.rs`): a wake
//! racing a registration must reach the reader, now or at the next notify.

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::task::{Wake, Waker};

use loom::thread;

use crate::sync::Arc;
use crate::wait::{WaitList, WaitNode};

#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound.get_or_insert(3);
    b.check(f);
}

/// A reader re-registering while the writer drains the list (its node still on it) is woken by
/// that drain or stays listed for the next.
#[test]
fn a_registration_racing_a_notify_is_never_lost() {
    model(|| {
        let list = Arc::new(WaitList::new());
        let node = Arc::new(WaitNode::new());
        let count = StdArc::new(Count::default());
        let waker = Waker::from(count.clone());
        list.register(&node, &waker);
        let (l2, n2, w2) = (list.clone(), node.clone(), waker.clone());
        let t = thread::spawn(move || l2.register(&n2, &w2));
        list.notify();
        t.join().unwrap();
        let after_first = count.0.load(StdOrdering::SeqCst);
        assert!(after_first >= 1, "the first registration was not woken");
        // Whatever the race left registered is woken by the next notify: after it, the waker
        // is out of the node and the node off the list.
        list.notify();
        assert!(node.waker_is_empty_for_test());
        assert_eq!(Arc::strong_count(&node), 1); // `n2` went with the thread, the list let go
    });
}

/// Two readers registering while the writer notifies: both are woken.
#[test]
fn two_readers_registering_during_a_notify_are_both_woken() {
    model(|| {
        let list = Arc::new(WaitList::new());
        let counts: Vec<StdArc<Count>> = (0..2).map(|_| StdArc::default()).collect();
        let handles: Vec<_> = counts
            .iter()
            .map(|c| {
                let list = list.clone();
                let waker = Waker::from(c.clone());
                thread::spawn(move || {
                    let node = Arc::new(WaitNode::new());
                    list.register(&node, &waker);
                })
            })
            .collect();
        list.notify();
        for h in handles {
            h.join().unwrap();
        }
        list.notify();
        for c in &counts {
            assert_eq!(c.0.load(StdOrdering::SeqCst), 1);
        }
    });
}
