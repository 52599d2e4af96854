//! The checks of one generated case that need the strategy: determinism,
//! order independence, movement on a join or leave, and the fixed point.

use super::cases::Mix;
use super::measures::*;
use super::*;
use parti_core::{AssignmentInput, AssignmentStrategy, Partition, Placement, WorkerId, WorkerSpec};

/// A membership change.
#[derive(Clone, Copy)]
pub(super) enum Change<'a> {
    Joined(&'a WorkerId),
    Left(&'a WorkerId),
}

pub(super) struct Checker<'s, S: ?Sized> {
    pub(super) strategy: &'s S,
    pub(super) contract: &'s Contract,
    pub(super) case: String,
}

impl<S: AssignmentStrategy + ?Sized> Checker<'_, S> {
    pub(super) fn fail(&self, check: &'static str, detail: impl Into<String>) -> ContractViolation {
        ContractViolation {
            check,
            detail: detail.into(),
            case: self.case.clone(),
        }
    }

    /// Calls the strategy and checks completeness, determinism and balance.
    pub(super) fn assign(
        &self,
        input: &AssignmentInput<'_>,
    ) -> Result<Placement, ContractViolation> {
        let first = match call(self.strategy, input) {
            Err(panic) => return Err(self.fail("no panic", panic)),
            Ok(Err(e)) => return Err(self.fail("valid input accepted", format!("refused: {e}"))),
            Ok(Ok(p)) => p,
        };
        check_placement(input, &first).map_err(|d| self.fail("completeness", d))?;
        match call(self.strategy, input) {
            Ok(Ok(second)) if second == first => {}
            _ => return Err(self.fail("determinism", "a second call with the same input differs")),
        }
        check_balance(input, &first, self.contract.balance).map_err(|d| self.fail("balance", d))?;
        Ok(first)
    }

    pub(super) fn order_independence(
        &self,
        input: &AssignmentInput<'_>,
        placement: &Placement,
        rng: &mut Mix,
    ) -> Result<(), ContractViolation> {
        let mut wperm: Vec<usize> = (0..input.workers.len()).collect();
        let mut pperm: Vec<usize> = (0..input.partitions.len()).collect();
        rng.shuffle(&mut wperm);
        rng.shuffle(&mut pperm);
        let mut new_index = vec![0u32; wperm.len()];
        for (new, &old) in wperm.iter().enumerate() {
            new_index[old] = new as u32;
        }
        let workers: Vec<WorkerSpec> = wperm.iter().map(|&i| input.workers[i].clone()).collect();
        let partitions: Vec<Partition> =
            pperm.iter().map(|&i| input.partitions[i].clone()).collect();
        let previous: Vec<Option<u32>> = if input.has_previous() {
            pperm
                .iter()
                .map(|&i| input.previous[i].map(|o| new_index[o as usize]))
                .collect()
        } else {
            Vec::new()
        };
        let permuted = AssignmentInput {
            workers: &workers,
            partitions: &partitions,
            previous: &previous,
        };
        let other = self.assign(&permuted)?;
        let a = by_keys(input, placement);
        let b = by_keys(&permuted, &other);
        match a.iter().find(|(k, id)| b.get(*k) != Some(id)) {
            Some((k, id)) => Err(self.fail(
                "order independence",
                format!(
                    "partition {k:?} goes to {id} or {:?} depending on input order",
                    b.get(k)
                ),
            )),
            None => Ok(()),
        }
    }

    pub(super) fn movement(
        &self,
        (before, a): (&AssignmentInput<'_>, &Placement),
        (after, b): (&AssignmentInput<'_>, &Placement),
        change: Change<'_>,
    ) -> Result<(), ContractViolation> {
        let (scenario, joined, left) = match change {
            Change::Joined(id) => ("one worker joined", Some(id), None),
            Change::Left(id) => ("one worker left", None, Some(id)),
        };
        let parts = before.partitions;
        let (w, total) = effective_weights(parts);
        let w_max = w.iter().copied().fold(0.0, f64::max);
        let mut moved = 0.0;
        let mut optimum = 0.0;
        for i in 0..parts.len() {
            let from = &before.workers[a.owners[i] as usize].id;
            let to = &after.workers[b.owners[i] as usize].id;
            if Some(from) == left {
                optimum += w[i];
            }
            if from != to {
                moved += w[i];
                match self.contract.movement {
                    Movement::Consistent if joined.is_some() && Some(to) != joined => {
                        return Err(self.fail(
                            "movement",
                            format!(
                                "{scenario}: {:?} moved from {from} to {to}, not to the newcomer",
                                parts[i].keys
                            ),
                        ));
                    }
                    Movement::Consistent if left.is_some() && Some(from) != left => {
                        return Err(self.fail(
                            "movement",
                            format!(
                                "{scenario}: {:?} moved from {from} to {to}, though {from} stayed",
                                parts[i].keys
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if let Some(id) = joined {
            let cap: f64 = after
                .workers
                .iter()
                .map(|x| x.effective_capacity() as f64)
                .sum();
            let mine = after
                .workers
                .iter()
                .find(|x| &x.id == id)
                .map_or(1.0, |x| x.effective_capacity() as f64);
            optimum = total * mine / cap;
        }
        if let Movement::Bounded {
            factor,
            slack,
            fine_grained,
        } = self.contract.movement
        {
            let s_min = |input: &AssignmentInput<'_>| {
                let cap: f64 = input
                    .workers
                    .iter()
                    .map(|x| x.effective_capacity() as f64)
                    .sum();
                input
                    .workers
                    .iter()
                    .map(|x| total * x.effective_capacity() as f64 / cap)
                    .fold(f64::INFINITY, f64::min)
            };
            if w_max > fine_grained * s_min(before).min(s_min(after)) {
                return Ok(());
            }
            let bound = factor * optimum + slack * w_max + 1e-9 * total;
            if moved > bound {
                return Err(self.fail(
                    "movement",
                    format!("{scenario}: moved weight {moved} > {factor} × optimum {optimum:.1} + {slack} × {w_max}"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn fixed_point(
        &self,
        input: &AssignmentInput<'_>,
        placement: &Placement,
    ) -> Result<(), ContractViolation> {
        let required = match self.contract.fixed_point {
            FixedPoint::Never => false,
            FixedPoint::Always => true,
            FixedPoint::WhenBalanced { epsilon } => loads(input, placement)
                .iter()
                .all(|&(l, s)| l <= s * (1.0 + epsilon) && l >= s * (1.0 - epsilon)),
        };
        if !required {
            return Ok(());
        }
        let previous: Vec<Option<u32>> = placement.owners.iter().map(|&o| Some(o)).collect();
        let again = AssignmentInput {
            workers: input.workers,
            partitions: input.partitions,
            previous: &previous,
        };
        let b = self.assign(&again)?;
        match b
            .owners
            .iter()
            .zip(&placement.owners)
            .position(|(x, y)| x != y)
        {
            Some(i) => Err(self.fail(
                "fixed point",
                format!(
                    "given its own placement back, it moved {:?}",
                    input.partitions[i].keys
                ),
            )),
            None => Ok(()),
        }
    }
}
