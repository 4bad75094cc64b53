//! Bounds of real-valued stage parameters, declared once: the schema states them (`#[schemars(transform = …)]`
//! applies a [`Real`] to the field's schema) and each stage's `check` enforces the same [`Real`], in words made from
//! it. `table.rs`'s probing test still checks both sides at and beyond every bound.

use schemars::Schema;

use super::stage::ParamProblem;

/// An interval of real numbers: its lower end closed or open, an upper end (closed or open) or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Real {
    lo: f64,
    lo_open: bool,
    hi: Option<(f64, bool)>,
}

impl Real {
    /// `lo` or more.
    pub const fn at_least(lo: f64) -> Self {
        Self {
            lo,
            lo_open: false,
            hi: None,
        }
    }

    /// More than `lo`.
    pub const fn above(lo: f64) -> Self {
        Self {
            lo,
            lo_open: true,
            hi: None,
        }
    }

    /// The same, up to `hi` included.
    pub const fn at_most(self, hi: f64) -> Self {
        Self {
            hi: Some((hi, false)),
            ..self
        }
    }

    /// The same, below `hi`.
    pub const fn below(self, hi: f64) -> Self {
        Self {
            hi: Some((hi, true)),
            ..self
        }
    }

    pub fn contains(&self, v: f64) -> bool {
        let above_lo = if self.lo_open {
            v > self.lo
        } else {
            v >= self.lo
        };
        let below_hi = match self.hi {
            None => v.is_finite(),
            Some((hi, true)) => v < hi,
            Some((hi, false)) => v <= hi,
        };
        above_lo && below_hi
    }

    /// The interval in words: `0 or more`, `above 0`, `at least 0 and below 1`, `above 0 and at most 1`.
    pub fn words(&self) -> String {
        let lo = num(self.lo);
        match (self.lo_open, self.hi) {
            (false, None) => format!("{lo} or more"),
            (true, None) => format!("above {lo}"),
            (open, Some((hi, hi_open))) => format!(
                "{} {lo} and {} {}",
                if open { "above" } else { "at least" },
                if hi_open { "below" } else { "at most" },
                num(hi)
            ),
        }
    }

    /// A problem with `key = v` when `v` is outside.
    pub fn check(&self, key: &'static str, v: f64) -> Option<ParamProblem> {
        (!self.contains(v))
            .then(|| ParamProblem::new(key, format!("must be {}, got {v}", self.words())))
    }
}

/// `0.0020833333333333333` as `1/480`: the bounds people write as fractions.
fn num(v: f64) -> String {
    if v > 0.0 && v < 1.0 && (1.0 / v).fract() == 0.0 {
        format!("1/{}", 1.0 / v)
    } else {
        v.to_string()
    }
}

impl Real {
    /// What `#[schemars(transform = …)]` applies to the field's schema: the interval's ends, each as JSON Schema
    /// writes it (`minimum` or `exclusiveMinimum`, `maximum` or `exclusiveMaximum`).
    pub fn in_schema(self) -> impl FnMut(&mut Schema) {
        move |schema| {
            let lo_key = if self.lo_open {
                "exclusiveMinimum"
            } else {
                "minimum"
            };
            schema.insert(lo_key.into(), self.lo.into());
            if let Some((hi, open)) = self.hi {
                let hi_key = if open { "exclusiveMaximum" } else { "maximum" };
                schema.insert(hi_key.into(), hi.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_interval_holds_its_ends_and_says_them() {
        let unit = Real::above(0.0).at_most(1.0);
        assert!(
            !unit.contains(0.0)
                && unit.contains(1e-9)
                && unit.contains(1.0)
                && !unit.contains(1.0001)
        );
        assert_eq!(unit.words(), "above 0 and at most 1");
        let dropout = Real::at_least(0.0).below(1.0);
        assert!(dropout.contains(0.0) && !dropout.contains(1.0) && !dropout.contains(-0.1));
        assert_eq!(dropout.words(), "at least 0 and below 1");
        let positive = Real::above(0.0);
        assert!(
            !positive.contains(f64::INFINITY)
                && !positive.contains(f64::NAN)
                && positive.contains(1e300)
        );
        assert_eq!(Real::at_least(0.0).words(), "0 or more");
        assert_eq!(
            Real::at_least(1.0 / 480.0).at_most(64.0).words(),
            "at least 1/480 and at most 64"
        );
        let mut schema = schemars::json_schema!({ "type": "number" });
        dropout.in_schema()(&mut schema);
        assert_eq!(schema.get("minimum"), Some(&0.0.into()));
        assert_eq!(schema.get("exclusiveMaximum"), Some(&1.0.into()));
        assert_eq!(
            dropout.check("dropout", 1.5).unwrap().problem.to_string(),
            ParamProblem::new("dropout", "must be at least 0 and below 1, got 1.5")
                .problem
                .to_string()
        );
    }
}
