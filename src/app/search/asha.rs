//! Asynchronous successive halving (ASHA) as a pure state machine: which trainings to run, and why a trial stopped.
//!
//! Rungs sit at `min_epochs·η^k` epochs below the maximum, and the maximum is the last. Every trial trains to the
//! first rung; from each rung, a trial goes on to the next once it is in the best 1/η of the trials that have
//! reported there — as soon as it is, with no barrier (Li et al., "A System for Massively Parallel Hyperparameter
//! Tuning", 2020).
//!
//! Decisions must not depend on which training happens to finish first, or `--jobs 3` would prune other trials than
//! `--jobs 1` and a resumed search other trials than an uninterrupted one. So results are *read* in a fixed order:
//! at each rung, in the order trials arrived there (rung 0: trial order; later rungs: the order they were promoted
//! in). A result that comes in early waits until those before it at its rung are in. A trial's promotion therefore
//! depends only on the metrics, never on timing, while workers still run whatever is decided as soon as it is.

use crate::runs::manifest::{Fate, Promotion};

/// The epochs of every rung: `min·η^k` below `max`, then `max`.
pub fn rungs(min: u32, eta: u32, max: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut r = u64::from(min.max(1));
    while r < u64::from(max) {
        out.push(r as u32);
        r *= u64::from(eta.max(2));
    }
    out.push(max);
    out
}

/// What a training reported at a rung.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Result {
    /// The metric, oriented so that lower is better.
    pub score: f64,
    /// Early stopping (`patience`) ended the training before the rung's epochs: it cannot go on.
    pub stopped_early: bool,
}

/// A training to run: trial `trial` to rung `rung`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrialRung {
    pub trial: usize,
    pub rung: usize,
}

/// The search's state.
#[derive(Debug, Clone)]
pub struct Asha {
    pub rungs: Vec<u32>,
    eta: usize,
    /// Per rung: the trials in arrival order, and their results as they come in.
    arrivals: Vec<Vec<(usize, Option<Result>)>>,
    /// Per rung: how many of the first arrivals have been read, and how many have been promoted.
    read: Vec<usize>,
    promoted: Vec<Vec<usize>>,
    /// Jobs handed out and not yet reported.
    dispatched: std::collections::HashSet<TrialRung>,
    pub promotions: Vec<Promotion>,
}

impl Asha {
    pub fn new(trials: usize, rungs: Vec<u32>, eta: u32) -> Self {
        let n = rungs.len();
        let mut arrivals = vec![Vec::new(); n];
        arrivals[0] = (0..trials).map(|t| (t, None)).collect();
        Self {
            rungs,
            eta: eta.max(2) as usize,
            arrivals,
            read: vec![0; n],
            promoted: vec![Vec::new(); n],
            dispatched: Default::default(),
            promotions: Vec::new(),
        }
    }

    /// The next job a free worker should take: a decided training not yet handed out, from the highest rung down
    /// (finish promising trials first), earliest arrival first. `None` when there is nothing to do right now.
    pub fn next_job(&mut self) -> Option<TrialRung> {
        for rung in (0..self.rungs.len()).rev() {
            if let Some(&(trial, _)) = self.arrivals[rung].iter().find(|(t, r)| {
                r.is_none() && !self.dispatched.contains(&TrialRung { trial: *t, rung })
            }) {
                let job = TrialRung { trial, rung };
                self.dispatched.insert(job);
                return Some(job);
            }
        }
        None
    }

    /// Whether every training there will be has reported.
    pub fn finished(&self) -> bool {
        self.dispatched.is_empty() && self.arrivals.iter().flatten().all(|(_, r)| r.is_some())
    }

    /// Records what `job` reported, then reads every rung as far as its results are in, in arrival order,
    /// promoting as it goes.
    pub fn report(&mut self, job: TrialRung, result: Result) {
        self.dispatched.remove(&job);
        if let Some(slot) = self.arrivals[job.rung]
            .iter_mut()
            .find(|(t, _)| *t == job.trial)
        {
            slot.1 = Some(result);
        }
        // A promotion at one rung adds an arrival above it, which may be readable already: read bottom up.
        for rung in 0..self.rungs.len() - 1 {
            while self.read[rung] < self.arrivals[rung].len()
                && self.arrivals[rung][self.read[rung]].1.is_some()
            {
                self.read[rung] += 1;
                self.promote(rung);
            }
        }
    }

    /// With the first `read` arrivals of `rung` in: promote the best not yet promoted until the best 1/η of them
    /// all have been.
    fn promote(&mut self, rung: usize) {
        let reported = self.read[rung];
        let quota = reported / self.eta;
        while self.promoted[rung].len() < quota {
            // A trial that stopped early counts as reported but takes no place among those that can go on.
            let ranked: Vec<(usize, Result)> = self
                .ranked(rung, reported)
                .into_iter()
                .filter(|(_, r)| !r.stopped_early)
                .collect();
            let next = ranked
                .iter()
                .enumerate()
                .find(|(_, (t, _))| !self.promoted[rung].contains(t));
            let Some((rank, &(trial, _))) = next else {
                break;
            };
            // Only trials within the quota go on; one ranked below it waits for more reports.
            if rank >= quota {
                break;
            }
            self.promoted[rung].push(trial);
            self.arrivals[rung + 1].push((trial, None));
            self.promotions.push(Promotion {
                trial,
                rung: rung + 1,
                epochs: self.rungs[rung + 1],
                rank: rank + 1,
                reported,
            });
        }
    }

    /// The first `n` arrivals of `rung`, best first; ties go to the earlier arrival.
    fn ranked(&self, rung: usize, n: usize) -> Vec<(usize, Result)> {
        let mut ranked: Vec<(usize, usize, Result)> = self.arrivals[rung][..n]
            .iter()
            .enumerate()
            .filter_map(|(i, (t, r))| r.map(|r| (i, *t, r)))
            .collect();
        ranked.sort_by(|a, b| a.2.score.total_cmp(&b.2.score).then(a.0.cmp(&b.0)));
        ranked.into_iter().map(|(_, t, r)| (t, r)).collect()
    }

    /// Every promotion, by rung and then in the order they were decided there: the same for any number of workers
    /// and any finishing order (the log itself is in the order they happened).
    pub fn decisions(&self) -> Vec<Promotion> {
        let mut d = self.promotions.clone();
        d.sort_by_key(|p| (p.rung, p.reported, p.rank));
        d
    }

    /// The highest rung `trial` reached, and its result there.
    pub fn last(&self, trial: usize) -> Option<(usize, Result)> {
        (0..self.rungs.len()).rev().find_map(|rung| {
            self.arrivals[rung]
                .iter()
                .find(|(t, _)| *t == trial)
                .and_then(|(_, r)| r.map(|r| (rung, r)))
        })
    }

    /// How `trial` ended, once the search has finished.
    pub fn fate(&self, trial: usize) -> Option<Fate> {
        let (rung, result) = self.last(trial)?;
        let epochs = self.rungs[rung];
        if rung == self.rungs.len() - 1 {
            return Some(Fate::Complete { epochs });
        }
        if result.stopped_early {
            return Some(Fate::StoppedEarly { epochs });
        }
        let all = self.arrivals[rung].len();
        let ranked = self.ranked(rung, all);
        let rank = ranked.iter().position(|(t, _)| *t == trial)? + 1;
        Some(Fate::Pruned {
            epochs,
            rank,
            of: all,
            kept: self.promoted[rung].len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(score: f64) -> Result {
        Result {
            score,
            stopped_early: false,
        }
    }

    /// Runs a search to the end with `jobs` workers, finishing the running jobs in the order `pick` chooses (by
    /// index into the running list), scores from `score(trial, rung)`. Returns every fate and the jobs run.
    fn simulate(
        trials: usize,
        rungs: Vec<u32>,
        jobs: usize,
        score: impl Fn(usize, usize) -> f64,
        mut pick: impl FnMut(usize) -> usize,
    ) -> (Vec<Fate>, Vec<TrialRung>, Vec<Promotion>) {
        let mut asha = Asha::new(trials, rungs, 3);
        let mut running: Vec<TrialRung> = Vec::new();
        let mut ran = Vec::new();
        loop {
            while running.len() < jobs {
                match asha.next_job() {
                    Some(j) => running.push(j),
                    None => break,
                }
            }
            if running.is_empty() {
                break;
            }
            let j = running.remove(pick(running.len()) % running.len());
            ran.push(j);
            asha.report(j, ok(score(j.trial, j.rung)));
        }
        assert!(asha.finished());
        let fates = (0..trials).map(|t| asha.fate(t).unwrap()).collect();
        (fates, ran, asha.decisions())
    }

    #[test]
    fn rungs_grow_by_the_reduction_up_to_the_maximum() {
        assert_eq!(rungs(1, 3, 9), [1, 3, 9]);
        assert_eq!(rungs(1, 3, 10), [1, 3, 9, 10]);
        assert_eq!(rungs(2, 2, 16), [2, 4, 8, 16]);
        assert_eq!(rungs(5, 3, 5), [5]);
        assert_eq!(rungs(1, 4, 3), [1, 3]);
    }

    #[test]
    fn nine_trials_keep_the_best_third_at_each_rung() {
        // Trial t scores t at every rung: trial 0 is the best.
        let (fates, ran, promotions) = simulate(9, rungs(1, 3, 9), 1, |t, _| t as f64, |_| 0);
        assert_eq!(fates[0], Fate::Complete { epochs: 9 });
        let complete = fates
            .iter()
            .filter(|f| matches!(f, Fate::Complete { .. }))
            .count();
        assert_eq!(complete, 1);
        // With one worker: trials 0, 1, 2 train a rung; 0 is in the best third of three and goes on at once, to
        // rung 1, before trial 3 starts.
        assert_eq!(
            ran[..4],
            [
                TrialRung { trial: 0, rung: 0 },
                TrialRung { trial: 1, rung: 0 },
                TrialRung { trial: 2, rung: 0 },
                TrialRung { trial: 0, rung: 1 }
            ]
        );
        assert_eq!(promotions.len(), 3 + 1);
        // Trial 8 is last of nine at the first rung, of which three went on.
        assert_eq!(
            fates[8],
            Fate::Pruned {
                epochs: 1,
                rank: 9,
                of: 9,
                kept: 3
            }
        );
        // 9 trainings to the first rung, 3 on to the second, 1 to the end.
        assert_eq!(ran.len(), 9 + 3 + 1);
    }

    #[test]
    fn a_trial_below_the_quota_waits_and_goes_on_once_enough_worse_ones_report() {
        // Trial 0 is second best overall; when it reports first, nothing goes on (1 / 3 rounds to 0); after trial 1
        // (the best) and 2, trial 1 goes on; trial 0 only when six have reported.
        let scores = [2.0, 1.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0];
        let (_, _, promotions) = simulate(9, rungs(1, 3, 9), 1, |t, _| scores[t], |_| 0);
        let first: Vec<(usize, usize)> = promotions
            .iter()
            .filter(|p| p.rung == 1)
            .map(|p| (p.trial, p.reported))
            .collect();
        assert_eq!(first, [(1, 3), (0, 6), (8, 9)]);
    }

    #[test]
    fn ties_go_to_the_earlier_trial() {
        let (fates, _, promotions) = simulate(3, rungs(1, 3, 3), 1, |_, _| 1.0, |_| 0);
        assert_eq!(promotions[0].trial, 0);
        assert_eq!(fates[0], Fate::Complete { epochs: 3 });
        assert!(matches!(fates[1], Fate::Pruned { rank: 2, .. }));
    }

    #[test]
    fn decisions_do_not_depend_on_the_workers_or_the_finishing_order() {
        let score = |t: usize, r: usize| ((t * 7919 + r * 104729) % 97) as f64;
        let (one, ran_one, p_one) = simulate(27, rungs(1, 3, 27), 1, score, |_| 0);
        let mut state = 12345u64;
        let mut random = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        for jobs in [2, 3, 8] {
            let (many, ran_many, p_many) = simulate(27, rungs(1, 3, 27), jobs, score, &mut random);
            assert_eq!(one, many, "{jobs} workers");
            assert_eq!(p_one, p_many, "{jobs} workers");
            // The same trainings, none twice.
            let mut a = ran_one.clone();
            let mut b = ran_many.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            b.dedup();
            assert_eq!(a.len(), b.len());
        }
    }

    #[test]
    fn a_trial_that_stopped_early_is_ranked_but_never_goes_on() {
        let mut asha = Asha::new(3, rungs(1, 3, 3), 3);
        for t in 0..3 {
            let job = asha.next_job().unwrap();
            assert_eq!(job, TrialRung { trial: t, rung: 0 });
            asha.report(
                job,
                Result {
                    score: t as f64,
                    stopped_early: t == 0,
                },
            );
        }
        // Trial 0 is best but stopped: trial 1 goes on.
        assert_eq!(asha.next_job(), Some(TrialRung { trial: 1, rung: 1 }));
        asha.report(TrialRung { trial: 1, rung: 1 }, ok(0.5));
        assert_eq!(asha.fate(0), Some(Fate::StoppedEarly { epochs: 1 }));
        assert_eq!(asha.fate(1), Some(Fate::Complete { epochs: 3 }));
    }
}
