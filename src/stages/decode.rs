//! Decoding a parameter table with serde while finding every key it refuses, not only the first.
//!
//! serde stops at the first bad key, so a user who mistyped two would fix one, run again, and only then meet the
//! other. Here each refused key is set aside and the rest decoded again, until serde accepts what is left or
//! refuses something no single key holds (a missing parameter). Tables are a handful of keys, so the retries cost
//! nothing a user could notice.

use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// `value` decoded as `P`, or every error serde gives on the way: one per refused key, in the table's order, then a
/// missing parameter's if there is one (not for a key already refused, which would say the same twice).
pub fn decode_all<P: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
) -> Result<P, Vec<toml::de::Error>> {
    let span = value.span();
    let mut table = match value.into_inner() {
        DeValue::Table(table) => table,
        other => {
            return P::deserialize(Spanned::new(span, other).into_deserializer())
                .map_err(|e| vec![e]);
        }
    };
    let mut errors = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    loop {
        let attempt = Spanned::new(span.clone(), DeValue::Table(table.clone()));
        let e = match P::deserialize(attempt.into_deserializer()) {
            Ok(p) if errors.is_empty() => return Ok(p),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        let Some(key) = refused_key(&table, &e) else {
            let repeats =
                missing_field(e.message()).is_some_and(|f| refused.iter().any(|r| r == f));
            if !repeats {
                errors.push(e);
            }
            return Err(errors);
        };
        table.remove(key.as_str());
        refused.push(key);
        errors.push(e);
    }
}

/// The key whose name or value the error points into, or `None` when it points at no one key (the whole table).
fn refused_key(table: &DeTable, e: &toml::de::Error) -> Option<String> {
    let span = e.span()?;
    let inside = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    table
        .iter()
        .find(|(k, v)| inside(k.span()) || inside(v.span()))
        .map(|(k, _)| k.get_ref().to_string())
}

/// `missing field `path`` → `path`.
fn missing_field(message: &str) -> Option<&str> {
    message.split_once("missing field `")?.1.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        path: String,
        #[serde(default)]
        hidden: u32,
        #[serde(default)]
        optimizer: Optimizer,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(rename_all = "lowercase")]
    enum Optimizer {
        #[default]
        Adam,
        Sgd,
    }

    fn errors(text: &str) -> Vec<String> {
        let table = DeTable::parse(text).unwrap();
        let value = Spanned::new(0..text.len(), DeValue::Table(table.into_inner()));
        match decode_all::<P>(value) {
            Ok(_) => Vec::new(),
            Err(es) => es.iter().map(|e| e.message().to_string()).collect(),
        }
    }

    #[test]
    fn every_refused_key_is_reported_in_the_order_written() {
        let found =
            errors("path = \"x\"\nhidden = \"many\"\noptimizer = \"adamx\"\nlearning_rat = 0.1\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("invalid type"), "{found:?}");
        assert!(found[1].contains("unknown variant `adamx`"), "{found:?}");
        assert!(
            found[2].contains("unknown field `learning_rat`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_parameter_is_reported_beside_the_refused_keys_but_not_twice() {
        let found = errors("hidden = -1\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].contains("missing field `path`"), "{found:?}");
        let found = errors("path = 3\n");
        assert_eq!(
            found.len(),
            1,
            "a refused `path` is not also missing: {found:?}"
        );
    }

    #[test]
    fn a_good_table_decodes() {
        assert!(errors("path = \"x\"\nhidden = 4\noptimizer = \"sgd\"\n").is_empty());
    }
}
