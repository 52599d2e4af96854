//! The simulator's agenda: the events still to happen, taken in order of
//! time and, at one instant, in the order they were scheduled.
//!
//! Almost every event falls within a few seconds of now (network delays,
//! watch deliveries, the workers' timers), so those wait in a ring of
//! per-millisecond queues: scheduling and taking one costs a push and a pop
//! on a queue, and a bitmap finds the next busy millisecond. Events further
//! ahead (the fault schedule, long pauses) wait in a heap; the next event is
//! the earlier of the two heads. The events themselves wait in a slab and
//! are moved once in and once out (a command can carry a whole publication).

use super::process::Ev;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Milliseconds covered by the ring (a power of two, a multiple of 64).
const RING: u64 = 4096;
const WORDS: usize = (RING / 64) as usize;

/// The pending events.
pub(super) struct Agenda {
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
    /// No event is earlier than this (the time of the last one taken); the
    /// ring holds the events of `[base, base + RING)`.
    base: u64,
    /// Per millisecond (time modulo `RING`): (sequence, slab index), in
    /// sequence order.
    ring: Vec<VecDeque<(u64, u32)>>,
    /// Which queues of the ring are not empty.
    busy: [u64; WORDS],
    /// Events at `base + RING` or later: (time, sequence, slab index).
    later: BinaryHeap<Reverse<(u64, u64, u32)>>,
}

impl Default for Agenda {
    fn default() -> Self {
        Agenda {
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
            base: 0,
            ring: (0..RING).map(|_| VecDeque::new()).collect(),
            busy: [0; WORDS],
            later: BinaryHeap::new(),
        }
    }
}

impl Agenda {
    /// Schedules `ev` at `at`, after everything already scheduled at `at`.
    /// `at` is never before the last event taken.
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
        if at >= self.base && at - self.base < RING {
            let bucket = (at % RING) as usize;
            self.ring[bucket].push_back((self.seq, index));
            self.busy[bucket / 64] |= 1 << (bucket % 64);
        } else {
            self.later.push(Reverse((at, self.seq, index)));
        }
    }

    /// The next event and its time.
    pub(super) fn pop(&mut self) -> Option<(u64, Ev)> {
        let near = self.next_busy().and_then(|(at, bucket)| {
            self.ring[bucket]
                .front()
                .map(|&(seq, index)| (at, seq, index, bucket))
        });
        let far = self.later.peek().map(|Reverse(head)| *head);
        let near_first = match (near, far) {
            (Some((at, seq, ..)), Some((f_at, f_seq, _))) => (at, seq) < (f_at, f_seq),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let (at, index) = match near {
            Some((at, _, index, bucket)) if near_first => {
                let queue = &mut self.ring[bucket];
                queue.pop_front();
                if queue.is_empty() {
                    self.busy[bucket / 64] &= !(1 << (bucket % 64));
                }
                (at, index)
            }
            _ => {
                let Reverse((at, _, index)) = self.later.pop()?;
                (at, index)
            }
        };
        self.base = at;
        let ev = self.slab.get_mut(index as usize).and_then(Option::take);
        self.free.push(index);
        ev.map(|ev| (at, ev))
    }

    /// The first busy millisecond of the ring from `base` on: its time and
    /// its queue.
    fn next_busy(&self) -> Option<(u64, usize)> {
        let start = (self.base % RING) as usize;
        let (first_word, first_bit) = (start / 64, start % 64);
        // The first word from the start bit, every other word, then the
        // first word's bits before the start (the ring wrapped).
        let masked = self.busy[first_word] & (u64::MAX << first_bit);
        let found = if masked != 0 {
            Some(first_word * 64 + masked.trailing_zeros() as usize)
        } else {
            (1..=WORDS).find_map(|step| {
                let w = (first_word + step) % WORDS;
                let bits = if step == WORDS {
                    self.busy[w] & !(u64::MAX << first_bit)
                } else {
                    self.busy[w]
                };
                (bits != 0).then(|| w * 64 + bits.trailing_zeros() as usize)
            })
        }?;
        let offset = (found + RING as usize - start) % RING as usize;
        Some((self.base + offset as u64, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(slot: usize) -> Ev {
        Ev::Spawn {
            slot,
            preferred: None,
        }
    }

    fn slot(ev: &Ev) -> usize {
        match ev {
            Ev::Spawn { slot, .. } => *slot,
            _ => usize::MAX,
        }
    }

    /// Events come out by time, then in the order they were scheduled,
    /// whether they wait in the ring or beyond it, and across its wrap.
    #[test]
    fn events_come_out_in_time_then_schedule_order() {
        let mut agenda = Agenda::default();
        let mut expected = Vec::new();
        let mut rng = crate::sim::Rng::new(7);
        let mut now = 0;
        let mut n = 0;
        for round in 0..2_000 {
            for _ in 0..rng.range(0, 3) {
                let ahead = match rng.range(0, 9) {
                    0 => 0,
                    1 => rng.range(RING - 2, RING + 2),
                    2 => rng.range(RING, 3 * RING),
                    _ => rng.range(1, 40),
                };
                agenda.push(now + ahead, spawn(n));
                expected.push((now + ahead, n));
                n += 1;
            }
            if round % 3 != 0
                && let Some((at, ev)) = agenda.pop()
            {
                expected.sort();
                let want = expected.remove(0);
                assert_eq!((at, slot(&ev)), want);
                assert!(at >= now);
                now = at;
            }
        }
        expected.sort();
        for want in expected {
            let (at, ev) = agenda.pop().unwrap();
            assert_eq!((at, slot(&ev)), want);
        }
        assert!(agenda.pop().is_none());
    }
}
