//! An interpolated, modified Kneser–Ney n-gram model over token ids: the floor a neural model has to beat.
//!
//! **Counting.** [`Counts::fit`] stores every n-gram of orders 1..=N that occurs inside a training sequence (none
//! spans two) as a trie: the n-gram `i` of order n is n-gram `parent[i]` of order n−1 followed by `word[i]`. Each
//! keeps its raw count and its *continuation count*: the number of distinct tokens seen right before it, plus one
//! when it also opens a sequence (a sequence start counts as one more distinct left context, as `<s>` does in
//! KenLM). Time and memory are linear in tokens × N: one hash look-up per token and order.
//!
//! **Probabilities** (Chen & Goodman 1998, "interpolated modified Kneser–Ney"). For order n with context `h` (the
//! n−1 tokens before `w`) and counts `a` (raw counts at the model's highest order, continuation counts below it):
//!
//! ```text
//! p_n(w | h) = max(a(hw) − D_n(a(hw)), 0) / a(h·)  +  γ_n(h) · p_{n−1}(w | h')
//! γ_n(h)     = (D_n1 · N1(h·) + D_n2 · N2(h·) + D_n3+ · N3+(h·)) / a(h·)
//! p_0(w)     = 1 / V
//! ```
//!
//! where `h'` drops the oldest token of `h`, `a(h·)` sums `a` over the tokens seen after `h`, and `N1`, `N2`, `N3+`
//! count those seen once, twice, three times or more. A context never seen passes `p_{n−1}` through unchanged. The
//! three discounts of each order come from its count-of-counts `n1..n4`: `Y = n1 / (n1 + 2 n2)`, `D1 = 1 − 2Y n2/n1`,
//! `D2 = 2 − 3Y n3/n2`, `D3+ = 3 − 4Y n4/n3`. Where a corpus is too small for that estimate (a count-of-count is 0,
//! or a discount falls outside `(0, k)`), the order uses one discount for all three: `Y`, clamped to [0.05, 0.95]
//! (0.5 when `Y` is undefined) — plain interpolated Kneser–Ney.
//!
//! [`Model::probabilities`] scores every order 1..=N at once: the order-k model is levels 1..k−1 with continuation
//! counts and level k with raw counts, so one pass over the held-out tokens gives the floor at every order.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The largest order a model may have.
pub const MAX_ORDER: usize = 10;

/// One order's n-grams (see the module comment), in the order they were first seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// The n-gram of the order below that this one extends (0 for unigrams: the empty context).
    pub parent: Vec<u32>,
    pub word: Vec<u32>,
    /// Occurrences in the training sequences.
    pub count: Vec<u32>,
    /// Distinct tokens seen right before it, plus one when it opens a sequence.
    pub continuation: Vec<u32>,
}

impl Level {
    pub fn len(&self) -> usize {
        self.word.len()
    }

    pub fn is_empty(&self) -> bool {
        self.word.is_empty()
    }
}

/// Every n-gram of orders 1..=`order` of some training sequences: what a model is built from, and what the cache
/// stores (plain vectors: a deterministic encoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub order: usize,
    /// Tokens in the vocabulary (ids are below it).
    pub vocab: usize,
    /// `levels[n - 1]` holds the n-grams.
    pub levels: Vec<Level>,
    /// Tokens counted.
    pub tokens: u64,
}

/// A trie key: an n-gram as its parent n-gram's index and its last token.
fn key(parent: u32, word: u32) -> u64 {
    (u64::from(parent) << 32) | u64::from(word)
}

impl Counts {
    /// Counts the n-grams of orders 1..=`order` inside each sequence (ids below `vocab`).
    pub fn fit<'a>(
        sequences: impl IntoIterator<Item = &'a [u32]>,
        order: usize,
        vocab: usize,
    ) -> Self {
        assert!((1..=MAX_ORDER).contains(&order), "order {order}");
        let mut levels = vec![Level::default(); order];
        let mut index: Vec<FxHashMap<u64, u32>> = vec![FxHashMap::default(); order];
        let mut opens: Vec<Vec<bool>> = vec![Vec::new(); order];
        let mut tokens = 0u64;
        // The n-grams starting at the position after this one, by order: the suffixes of the ones starting here.
        let mut next_chain: Vec<u32> = Vec::with_capacity(order);
        let mut chain: Vec<u32> = Vec::with_capacity(order);
        for seq in sequences {
            tokens += seq.len() as u64;
            next_chain.clear();
            // Right to left, so the n-grams one position on are known when an n-gram is first seen here.
            for i in (0..seq.len()).rev() {
                chain.clear();
                let mut parent = 0u32;
                for n in 1..=order.min(seq.len() - i) {
                    let word = seq[i + n - 1];
                    let level = &mut levels[n - 1];
                    let len = level.len() as u32;
                    let node = *index[n - 1].entry(key(parent, word)).or_insert(len);
                    if node == len {
                        level.parent.push(parent);
                        level.word.push(word);
                        level.count.push(0);
                        level.continuation.push(0);
                        opens[n - 1].push(false);
                        // A new n-gram of order n ≥ 2 is a new left context of its suffix (order n − 1).
                        if n >= 2 {
                            levels[n - 2].continuation[next_chain[n - 2] as usize] += 1;
                        }
                    }
                    levels[n - 1].count[node as usize] += 1;
                    if i == 0 {
                        opens[n - 1][node as usize] = true;
                    }
                    chain.push(node);
                    parent = node;
                }
                std::mem::swap(&mut chain, &mut next_chain);
            }
        }
        for (level, opens) in levels.iter_mut().zip(&opens) {
            for (c, &open) in level.continuation.iter_mut().zip(opens) {
                *c += u32::from(open);
            }
        }
        Counts {
            order,
            vocab,
            levels,
            tokens,
        }
    }

    /// Checks what [`Model::new`] indexes by: an order within 1..=[`MAX_ORDER`], one level per order, every parent
    /// an n-gram of the order below, every token in the vocabulary, and no n-gram twice. Counts read back from a
    /// cache are used only once this passes.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_ORDER).contains(&self.order) || self.levels.len() != self.order {
            return Err(format!(
                "an n-gram model of order {} with {} levels",
                self.order,
                self.levels.len()
            ));
        }
        let mut below = 1usize;
        for (n, level) in self.levels.iter().enumerate() {
            let len = level.len();
            if level.parent.len() != len
                || level.count.len() != len
                || level.continuation.len() != len
            {
                return Err(format!("the {}-grams' columns differ in length", n + 1));
            }
            let mut seen = FxHashMap::default();
            for i in 0..len {
                let (parent, word) = (level.parent[i], level.word[i]);
                if parent as usize >= below || word as usize >= self.vocab || level.count[i] == 0 {
                    return Err(format!("{}-gram {i} is out of range", n + 1));
                }
                if seen.insert(key(parent, word), ()).is_some() {
                    return Err(format!("{}-gram {i} is listed twice", n + 1));
                }
            }
            below = len;
        }
        Ok(())
    }

    /// The n-grams of each order.
    pub fn sizes(&self) -> Vec<usize> {
        self.levels.iter().map(Level::len).collect()
    }
}

/// Statistics of one context: the sum of its followers' counts and how many were seen once, twice, 3+ times.
#[derive(Debug, Clone, Copy, Default)]
struct Context {
    total: u64,
    n: [u32; 3],
}

/// The three discounts of one order and one kind of count.
pub type Discounts = [f64; 3];

/// Chen & Goodman's discounts from the count-of-counts, or one fallback discount (see the module comment).
fn discounts(counts: &[u32]) -> Discounts {
    let mut of = [0u64; 5];
    for &c in counts {
        if (1..=4).contains(&c) {
            of[c as usize] += 1;
        }
    }
    let [_, n1, n2, n3, n4] = of.map(|n| n as f64);
    let y = n1 / (n1 + 2.0 * n2);
    let d = [
        1.0 - 2.0 * y * n2 / n1,
        2.0 - 3.0 * y * n3 / n2,
        3.0 - 4.0 * y * n4 / n3,
    ];
    let valid = d
        .iter()
        .enumerate()
        .all(|(k, &d)| d.is_finite() && d > 0.0 && d < (k + 1) as f64);
    if valid {
        d
    } else {
        let one = if y.is_finite() {
            y.clamp(0.05, 0.95)
        } else {
            0.5
        };
        [one; 3]
    }
}

/// One order of a built model: where each n-gram is, and each n-gram's statistics as a context of the order above.
#[derive(Debug)]
struct Built {
    index: FxHashMap<u64, u32>,
    /// As a context when the order above is a model's highest (raw counts) or not (continuation counts).
    raw: Vec<Context>,
    cont: Vec<Context>,
    /// Discounts of this order's counts: raw (as a model's highest order) and continuation.
    d_raw: Discounts,
    d_cont: Discounts,
}

/// A Kneser–Ney model ready to score: [`Counts`] indexed.
#[derive(Debug)]
pub struct Model {
    counts: Counts,
    levels: Vec<Built>,
    /// The empty context, as above.
    root_raw: Context,
    root_cont: Context,
}

fn add(ctx: &mut Context, a: u32) {
    ctx.total += u64::from(a);
    if a > 0 {
        ctx.n[(a.min(3) - 1) as usize] += 1;
    }
}

/// `max(a − D(a), 0) / a(h·) + γ(h) · lower`, or `lower` for a context never seen.
fn interpolate(ctx: &Context, a: u32, d: &Discounts, lower: f64) -> f64 {
    if ctx.total == 0 {
        return lower;
    }
    let total = ctx.total as f64;
    let own = match a {
        0 => 0.0,
        a => (f64::from(a) - d[(a.min(3) - 1) as usize]).max(0.0),
    };
    let gamma =
        (d[0] * f64::from(ctx.n[0]) + d[1] * f64::from(ctx.n[1]) + d[2] * f64::from(ctx.n[2]))
            / total;
    own / total + gamma * lower
}

impl Model {
    /// Indexes validated counts (see [`Counts::validate`]).
    pub fn new(counts: Counts) -> Self {
        let mut levels: Vec<Built> = Vec::with_capacity(counts.order);
        let (mut root_raw, mut root_cont) = (Context::default(), Context::default());
        for level in &counts.levels {
            let len = level.len();
            let mut index = FxHashMap::with_capacity_and_hasher(len, Default::default());
            for i in 0..len {
                index.insert(key(level.parent[i], level.word[i]), i as u32);
                let (raw, cont) = match levels.last_mut() {
                    Some(below) => {
                        let p = level.parent[i] as usize;
                        (&mut below.raw[p], &mut below.cont[p])
                    }
                    None => (&mut root_raw, &mut root_cont),
                };
                add(raw, level.count[i]);
                add(cont, level.continuation[i]);
            }
            levels.push(Built {
                index,
                raw: vec![Context::default(); len],
                cont: vec![Context::default(); len],
                d_raw: discounts(&level.count),
                d_cont: discounts(&level.continuation),
            });
        }
        Model {
            counts,
            levels,
            root_raw,
            root_cont,
        }
    }

    pub fn order(&self) -> usize {
        self.counts.order
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The counts it was built from, for storing.
    pub fn into_counts(self) -> Counts {
        self.counts
    }

    /// The bytes the model holds, from its containers' capacities: the counts, the trie's hash index (hashbrown: a
    /// power-of-two number of buckets for capacity × 8/7, each a 16-byte entry and a control byte) and the context
    /// statistics. What fitting and scoring hold at their peak, give or take the index's growth by doubling.
    pub fn heap_bytes(&self) -> usize {
        let counts: usize = self
            .counts
            .levels
            .iter()
            .map(|l| {
                4 * (l.parent.capacity()
                    + l.word.capacity()
                    + l.count.capacity()
                    + l.continuation.capacity())
            })
            .sum();
        let built: usize = self
            .levels
            .iter()
            .map(|b| {
                let buckets = (b.index.capacity() * 8 / 7 + 1).next_power_of_two();
                buckets * 17
                    + std::mem::size_of::<Context>() * (b.raw.capacity() + b.cont.capacity())
            })
            .sum();
        counts + built
    }

    /// The discounts of each order as the model's highest (raw counts).
    pub fn discounts(&self) -> Vec<Discounts> {
        self.levels.iter().map(|l| l.d_raw).collect()
    }

    /// The n-gram index of `words` (an n-gram of order `words.len()`), if it was seen; the empty n-gram is 0.
    fn find(&self, words: &[u32]) -> Option<u32> {
        let mut node = 0u32;
        for (n, &w) in words.iter().enumerate() {
            node = *self.levels[n].index.get(&key(node, w))?;
        }
        Some(node)
    }

    /// The contexts of `history`'s last 0, 1, … tokens that were seen, shortest first (at most `order − 1` tokens).
    fn contexts(&self, history: &[u32]) -> Vec<u32> {
        let longest = history.len().min(self.order() - 1);
        let mut found = vec![0u32];
        for k in 1..=longest {
            match self.find(&history[history.len() - k..]) {
                Some(node) => found.push(node),
                // A longer context contains this one: none of them was seen either.
                None => break,
            }
        }
        found
    }

    /// `p(w | history)` under the models of every order 1..=N: `out[k − 1]` is the order-k model's.
    pub fn probabilities(&self, history: &[u32], w: u32, out: &mut [f64]) {
        self.probabilities_in(&self.contexts(history), w, out);
    }

    /// [`Model::probabilities`] with the history's contexts already found.
    fn probabilities_in(&self, contexts: &[u32], w: u32, out: &mut [f64]) {
        let mut lower = 1.0 / self.counts.vocab as f64;
        for n in 1..=self.order() {
            let Some(&ctx) = contexts.get(n - 1) else {
                // The order-n context was never seen: every order from n on is the lower orders' estimate.
                out[n - 1..].iter_mut().for_each(|p| *p = lower);
                return;
            };
            let (level, counts) = (&self.levels[n - 1], &self.counts.levels[n - 1]);
            let (raw, cont) = if n == 1 {
                (&self.root_raw, &self.root_cont)
            } else {
                let below = &self.levels[n - 2];
                (&below.raw[ctx as usize], &below.cont[ctx as usize])
            };
            let node = level.index.get(&key(ctx, w)).map(|&i| i as usize);
            let a_raw = node.map_or(0, |i| counts.count[i]);
            let a_cont = node.map_or(0, |i| counts.continuation[i]);
            out[n - 1] = interpolate(raw, a_raw, &level.d_raw, lower);
            lower = interpolate(cont, a_cont, &level.d_cont, lower);
        }
    }

    /// The order-`order` model's probability of every token after `history` (they sum to 1).
    pub fn distribution(&self, history: &[u32]) -> Vec<f64> {
        let order = self.order();
        let contexts = self.contexts(history);
        let mut out = vec![0.0; order];
        (0..self.counts.vocab as u32)
            .map(|w| {
                self.probabilities_in(&contexts, w, &mut out);
                out[order - 1]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(seqs: &[&[u32]], order: usize, vocab: usize) -> (Counts, Model) {
        let counts = Counts::fit(seqs.iter().copied(), order, vocab);
        counts.validate().unwrap();
        let model = Model::new(counts.clone());
        (counts, model)
    }

    #[test]
    fn counts_and_continuations_are_kneser_neys() {
        // a b a b c, order 2.
        let (counts, _) = model(&[&[0, 1, 0, 1, 2]], 2, 3);
        let uni = &counts.levels[0];
        let of = |w: u32| uni.word.iter().position(|&x| x == w).unwrap();
        assert_eq!(uni.count[of(0)], 2);
        assert_eq!(uni.count[of(1)], 2);
        // `a`: preceded by b, and opens the sequence; `b`: preceded by a only; `c`: by b.
        assert_eq!(uni.continuation[of(0)], 2);
        assert_eq!(uni.continuation[of(1)], 1);
        assert_eq!(uni.continuation[of(2)], 1);
        // Bigrams: ab (2), ba (1), bc (1).
        assert_eq!(counts.sizes(), vec![3, 3]);
        assert_eq!(counts.levels[1].count.iter().sum::<u32>(), 4);
        assert_eq!(counts.tokens, 5);
    }

    #[test]
    fn every_orders_distribution_sums_to_one() {
        let seqs: Vec<Vec<u32>> = (0..20u32)
            .map(|s| (0..60u32).map(|i| (i * 7 + s * s + i / 3) % 9).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let (_, m) = model(&refs, 4, 11);
        let mut out = vec![0.0; 4];
        for history in [&[][..], &[1, 2, 3], &[8, 8, 8], &[10, 10], &[0, 7, 5, 3]] {
            let mut sums = vec![0.0; 4];
            for w in 0..11 {
                m.probabilities(history, w, &mut out);
                for (s, p) in sums.iter_mut().zip(&out) {
                    assert!(*p > 0.0, "p({w} | {history:?}) = {p}");
                    *s += p;
                }
            }
            for s in sums {
                assert!((s - 1.0).abs() < 1e-9, "{history:?}: {s}");
            }
        }
        let d = m.distribution(&[1, 2, 3]);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_longer_context_predicts_a_deterministic_sequence_better() {
        // A cycle of 5 tokens: after 2 tokens of context the next one is certain.
        let seq: Vec<u32> = (0..400).map(|i| [0, 1, 0, 2, 3][i % 5]).collect();
        let (_, m) = model(&[&seq], 3, 4);
        let mut out = vec![0.0; 3];
        m.probabilities(&[3, 0], 1, &mut out);
        assert!(out[2] > 0.95 && out[1] < 0.6 && out[0] < 0.5, "{out:?}");
    }

    #[test]
    fn discounts_fall_back_on_tiny_counts() {
        assert_eq!(discounts(&[1, 1, 1]), [0.95; 3]);
        assert_eq!(discounts(&[]), [0.5; 3]);
        let d = discounts(&[1, 1, 1, 1, 2, 2, 3, 4, 5]);
        // n1 = 4, n2 = 2, n3 = 1, n4 = 1: Y = 0.5, D1 = 0.5, D2 = 1.25, D3+ = 1.
        assert!(
            (d[0] - 0.5).abs() < 1e-12 && (d[1] - 1.25).abs() < 1e-12 && (d[2] - 1.0).abs() < 1e-12
        );
    }

    #[test]
    fn crafted_counts_are_refused() {
        let (mut counts, _) = model(&[&[0, 1, 2]], 2, 3);
        counts.levels[1].parent[0] = 7;
        assert!(counts.validate().is_err());
        let (mut counts, _) = model(&[&[0, 1, 2]], 2, 3);
        counts.levels[0].word[0] = 3;
        assert!(counts.validate().is_err());
        let (mut counts, _) = model(&[&[0, 1, 2]], 2, 3);
        counts.levels.pop();
        assert!(counts.validate().is_err());
    }
}
