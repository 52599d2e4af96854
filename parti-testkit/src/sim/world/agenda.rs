//! The simulator's agenda: the events still to happen, taken in order of
//! time and, at one instant, in the order they were scheduled.
//!
//! The ordering heap holds only (time, sequence, slot) triples; the events
//! themselves wait in a slab and are moved once in and once out, however
//! often the heap reorders. (An event can be large: a command carries a
//! whole publication.)

use super::process::Ev;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The pending events.
#[derive(Default)]
pub(super) struct Agenda {
    order: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
}

impl Agenda {
    /// Schedules `ev` at `at`, after everything already scheduled at `at`.
    pub(super) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(ev);
                i
            }
            None => {
                self.slab.push(Some(ev));
                // The slab never holds more events than are pending at once
                // (a few per process), far below u32::MAX.
                u32::try_from(self.slab.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.order.push(Reverse((at, self.seq, index)));
    }

    /// The next event and its time.
    pub(super) fn pop(&mut self) -> Option<(u64, Ev)> {
        loop {
            let Reverse((at, _, index)) = self.order.pop()?;
            if let Some(ev) = self.slab.get_mut(index as usize).and_then(Option::take) {
                self.free.push(index);
                return Some((at, ev));
            }
        }
    }
}
